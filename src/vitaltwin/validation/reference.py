"""Published reference values the models are verified against, each with its source."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """An expected value of one beat index for a resting healthy adult.

    ``expected`` is compared with the model's periodic steady state by percentage error.
    """

    metric: str
    label: str
    unit: str
    expected: float
    source: str


RESTING_ADULT: tuple[Reference, ...] = (
    Reference("hr_bpm", "Heart rate", "/min", 72.0, "guyton"),
    Reference("sbp_mmhg", "Systolic arterial pressure", "mm[Hg]", 120.0, "guyton"),
    Reference("dbp_mmhg", "Diastolic arterial pressure", "mm[Hg]", 80.0, "guyton"),
    Reference(
        "map_mmhg",
        "Mean arterial pressure",
        "mm[Hg]",
        96.5,
        "meaney2000 (time-averaged MAP = DBP + 0.412 (SBP - DBP) at 120/80 mmHg [guyton])",
    ),
    Reference("co_l_min", "Cardiac output", "L/min", 5.0, "guyton"),
    Reference("sv_ml", "Stroke volume", "mL", 70.0, "guyton"),
    Reference("ef", "Ejection fraction", "1", 0.60, "guyton"),
    Reference("edv_ml", "LV end-diastolic volume", "mL", 120.0, "guyton"),
    Reference("esv_ml", "LV end-systolic volume", "mL", 50.0, "guyton"),
    Reference("cvp_mmhg", "Central venous pressure", "mm[Hg]", 4.0, "magder2006"),
    Reference("mpap_mmhg", "Mean pulmonary arterial pressure", "mm[Hg]", 14.0, "kovacs2009"),
)
"""Resting healthy adult (the reference patient: male, 40 y, 70 kg, 175 cm)."""
