"""Patient profiles and how they set a model's baseline parameters.

Size: total blood volume from Nadler et al. 1962 [nadler1962]; every parameter is then scaled
by its physical dimension with k = BV / BV_ref (volumes and compliances times k; elastances,
resistances and per-volume exponents divided by k). Pressures, heart rate and timing are left
unchanged, so a larger patient has the same pressures with proportionally larger volumes and
flows — cardiac output then scales with blood volume, as cardiac index does with body size.

Age: large-artery distensibility falls with age. Compliance is scaled by (PWV_ref / PWV(age))^2
(Bramwell–Hill [bramwellhill1922]) with PWV(age) interpolated in the mean carotid-femoral
pulse wave velocity of the normal-values population of the Reference Values for Arterial
Stiffness' Collaboration 2010 [rvasc2010]: <30 y 6.2, 30-39 6.5, 40-49 7.2, 50-59 8.3,
60-69 10.3, >=70 10.9 m/s (taken at decade mid-points 25, 35, ..., 75 y). The highest heart
rate the reflexes can drive is the age-predicted maximum of Tanaka et al. 2001 [tanaka2001].
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vitaltwin.model import Model
from vitaltwin.physiology.circulation import VOLUME_STATES

_PWV_AGE_Y = np.array([25.0, 35.0, 45.0, 55.0, 65.0, 75.0])
_PWV_M_S = np.array([6.2, 6.5, 7.2, 8.3, 10.3, 10.9])

_SCALE_UP_UNITS = {"mL", "mL/mm[Hg]"}
_SCALE_DOWN_UNITS = {"mm[Hg]/mL", "mm[Hg].s/mL", "/mL", "s/mL"}


class PatientProfile(BaseModel):
    """Who the patient is: the demographics that set baseline physiology."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    age_years: float = Field(40.0, ge=18.0, le=100.0, description="age in years (adults)")
    sex: Literal["male", "female"] = "male"
    weight_kg: float = Field(70.0, ge=30.0, le=250.0, description="body weight in kg")
    height_cm: float = Field(175.0, ge=120.0, le=230.0, description="height in cm")

    @property
    def blood_volume_ml(self) -> float:
        """Total blood volume by Nadler et al. 1962 [nadler1962]."""
        h = self.height_cm / 100.0
        if self.sex == "male":
            litres = 0.3669 * h**3 + 0.03219 * self.weight_kg + 0.6041
        else:
            litres = 0.3561 * h**3 + 0.03308 * self.weight_kg + 0.1833
        return 1000.0 * litres

    @property
    def bsa_m2(self) -> float:
        """Body-surface area by Mosteller 1987 [mosteller1987]."""
        return float(np.sqrt(self.height_cm * self.weight_kg / 3600.0))


REFERENCE_PATIENT = PatientProfile(age_years=40.0, sex="male", weight_kg=70.0, height_cm=175.0)
"""The reference adult the default parameters describe: male, 40 y, 70 kg, 175 cm."""


def pulse_wave_velocity_m_s(age_years: float) -> float:
    """Mean carotid-femoral PWV of healthy people at an age [rvasc2010] (interpolated)."""
    return float(np.interp(age_years, _PWV_AGE_Y, _PWV_M_S))


def size_factor(profile: PatientProfile) -> float:
    """Blood volume relative to the reference patient."""
    return profile.blood_volume_ml / REFERENCE_PATIENT.blood_volume_ml


def patient_parameters(model: Model, profile: PatientProfile) -> np.ndarray:
    """Baseline parameter vector of ``model`` for a patient profile (see module docstring)."""
    k = size_factor(profile)
    p = model.default_params()
    for i, spec in enumerate(model.parameters):
        if spec.unit in _SCALE_UP_UNITS:
            p[i] *= k
        elif spec.unit in _SCALE_DOWN_UNITS:
            p[i] /= k
    if "c_sa_ml_mmhg" in model.param_names:
        ratio = pulse_wave_velocity_m_s(REFERENCE_PATIENT.age_years) / pulse_wave_velocity_m_s(
            profile.age_years
        )
        p[model.param_index("c_sa_ml_mmhg")] *= ratio**2
    if "hr_max_bpm" in model.param_names:
        p[model.param_index("hr_max_bpm")] = max_heart_rate_bpm(profile.age_years)
    return p


def max_heart_rate_bpm(age_years: float) -> float:
    """Age-predicted maximal heart rate, 208 - 0.7 x age (Tanaka et al. 2001 [tanaka2001])."""
    return 208.0 - 0.7 * age_years


def initial_state(model: Model, profile: PatientProfile) -> np.ndarray:
    """Default initial state with volumes scaled so they add up to the patient's blood volume.

    Only the states listed in :data:`vitaltwin.physiology.circulation.VOLUME_STATES` hold
    blood; they are scaled together, and the distribution settles at the steady state.
    """
    x = model.default_state()
    idx = [model.state_index(n) for n in VOLUME_STATES if n in model.state_names]
    if idx:
        x[idx] *= profile.blood_volume_ml / x[idx].sum()
    return x
