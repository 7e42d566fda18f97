"""Online scoring: one patient-hour at a time, as it arrives, exactly as the batch scores it.

A live service sees each patient's hours one by one. :class:`OnlineScorer` keeps every patient's
hourly grid so far; when an hour arrives it appends the row, builds the raw features of that
patient's grid (:func:`vitaltwin.risk.raw_features`, which uses only past rows) and scores the
new row. The features of the last row of a stay truncated at hour ``t`` are those of row ``t``
of the whole stay, so the online score equals the batch score of that row (tested). A model
with twin features needs the twin's live estimates and is refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from vitaltwin.risk._cohort import VARIABLE_NAMES, Cohort
from vitaltwin.risk._features import raw_features
from vitaltwin.risk._model import RiskModel, RiskModelError


@dataclass(frozen=True)
class HourScore:
    """The score of one patient-hour."""

    patient_id: str
    hour: int
    probability: float
    alert: bool
    low_confidence: bool


class OnlineScorer:
    """Scores patient-hours as they arrive (see the module docstring)."""

    def __init__(self, model: RiskModel) -> None:
        twin = [c for c in model.feature_names_ if c.startswith("twin_")]
        if twin:
            raise RiskModelError(
                f"online scoring needs the twin's live estimates for {len(twin)} twin features "
                f"(e.g. {twin[0]}); score a raw model, or compute them first"
            )
        self.model = model
        self._hours: dict[str, list[int]] = {}
        self._values: dict[str, list[list[float]]] = {}
        self._patients: dict[str, pd.DataFrame] = {}

    def admit(
        self,
        patient_id: str,
        *,
        sex: str | None,
        age_years: float,
        icu_admission_time: datetime,
        icu_unit: str | None = None,
        hosp_adm_h: float = float("nan"),
    ) -> None:
        """A patient arrives in the ICU (what the patient table holds about them)."""
        if icu_admission_time.tzinfo is None:
            raise RiskModelError(f"{patient_id}: icu_admission_time must be timezone-aware")
        row = {
            "sex": sex,
            "age_years": float(age_years),
            "icu_unit": icu_unit,
            "hosp_adm_h": float(hosp_adm_h),
            "icu_admission_time": pd.Timestamp(icu_admission_time),
        }
        self._patients[patient_id] = pd.DataFrame(
            [row], index=pd.Index([patient_id], name="patient_id")
        )
        self._hours[patient_id] = []
        self._values[patient_id] = []

    def score(self, patient_id: str, hour: int, values: Mapping[str, float]) -> HourScore:
        """Add hour ``hour`` (hours since ICU admission) of ``patient_id`` with the values
        measured in it (grid names, e.g. ``HR``, ``MAP``; absent: not measured) and score it.
        Hours must arrive in increasing order."""
        if patient_id not in self._patients:
            raise RiskModelError(f"{patient_id}: not admitted (call admit first)")
        hours = self._hours[patient_id]
        if hours and hour <= hours[-1]:
            raise RiskModelError(
                f"{patient_id}: hour {hour} arrived after hour {hours[-1]}; "
                "hours must arrive in order"
            )
        unknown = sorted(set(values) - set(VARIABLE_NAMES))
        if unknown:
            raise RiskModelError(f"{patient_id} hour {hour}: unknown variables {unknown}")
        hours.append(int(hour))
        self._values[patient_id].append([float(values.get(v, np.nan)) for v in VARIABLE_NAMES])
        grid = pd.DataFrame(self._values[patient_id], columns=list(VARIABLE_NAMES))
        grid.insert(0, "patient_id", patient_id)
        grid.insert(1, "hour", np.asarray(hours, dtype=np.int64))
        grid.insert(2, "sepsis", np.int64(-1))
        X = raw_features(Cohort(grid, self._patients[patient_id], "online")).iloc[[-1]]
        p = float(self.model.predict_proba(X)[0])
        return HourScore(
            patient_id,
            int(hour),
            p,
            bool(p >= self.model.threshold_),
            bool(self.model.low_confidence(X)[0]),
        )
