"""Online risk in the service: a registered risk model scores every patient's hours as their data
arrive, keeps the history with the model's name and version, explains the latest score with its
top contributing factors (LightGBM's SHAP values, :meth:`vitaltwin.risk.RiskModel.top_factors`)
and hands each new score to the alerts, which abstain (``indeterminate``) when the model flags
the hour as outside what it was trained on.

A patient is scored from their ICU admission: the patient record's ``icu_admission_time``, else
the start of their current ICU encounter; a patient with neither is not scored, and the API
says so, rather than guessing an admission.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from vitaltwin.risk import NAME_BY_LOINC, Scorer, build_cohort, raw_features
from vitaltwin.service._patients import PatientWorker
from vitaltwin.store import Store

OnScore = Callable[[str, datetime, float, bool, str, dict[str, Any]], None]


class RiskMonitor(PatientWorker):
    """Scores patients' hours with a registered model as data arrive (see the module
    docstring)."""

    name = "risk"

    def __init__(
        self,
        store: Store,
        lock: threading.Lock,
        scorer: Scorer,
        on_score: OnScore | None = None,
        top_k: int = 5,
    ) -> None:
        super().__init__()
        self.store, self.lock, self.scorer = store, lock, scorer
        self.on_score, self.top_k = on_score, top_k
        # the score history and its latest score's top factors, replaced together in one
        # assignment: the API reads them from other threads while a patient is rescored
        self.scored: dict[str, tuple[pd.DataFrame, list[tuple[str, float]]]] = {}
        self.unscored: dict[str, str] = {}  # why a patient is not scored (not a failure)

    @property
    def version(self) -> str:
        return f"{self.scorer.name} v{self.scorer.version}"

    def _admission(self, pid: str, patients: pd.DataFrame) -> datetime | None:
        if len(patients) and pd.notna(patients["icu_admission_time"].iloc[0]):
            return pd.Timestamp(patients["icu_admission_time"].iloc[0]).to_pydatetime()
        with self.lock:
            enc = self.store.encounters(pid).to_pandas()
        icu = enc[enc["kind"].fillna("").str.upper().eq("ICU") & enc["start_time"].notna()]
        if icu.empty:
            return None
        return pd.Timestamp(icu["start_time"].iloc[-1]).to_pydatetime()

    def update(self, pid: str) -> int:
        """Score the patient's hours; returns how many hours are new since the last time."""
        with self.lock:
            obs = self.store.observations(pid, loinc=list(NAME_BY_LOINC)).to_pandas()
            patients = self.store.patients(pid).to_pandas()
        if obs.empty:
            return 0
        admitted = self._admission(pid, patients)
        if admitted is None:
            self.unscored[pid] = "no ICU admission time (patient record or ICU encounter)"
            return 0
        row = patients.iloc[:1].copy() if len(patients) else pd.DataFrame({"patient_id": [pid]})
        row["icu_admission_time"] = pd.Timestamp(admitted)
        cohort = build_cohort(obs[["patient_id", "effective_time", "loinc", "value"]], row, None)
        if cohort.grid.empty:
            return 0
        features = raw_features(cohort)
        scores = self.scorer.score(cohort, features)
        scores["time"] = [admitted + timedelta(hours=int(h) + 1) for h in scores["hour"]]
        before = len(self.scored[pid][0]) if pid in self.scored else 0
        factors = self.scorer.model.top_factors(features.iloc[[-1]], self.top_k)[0]
        self.scored[pid] = (scores, factors)
        self.unscored.pop(pid, None)
        last = scores.iloc[-1]
        if self.on_score is not None:
            self.on_score(
                pid,
                min(last["time"], pd.Timestamp(obs["effective_time"].max()).to_pydatetime()),
                float(last["probability"]),
                not bool(last["low_confidence"]),
                self.version,
                {"top_factors": factors, "hour": int(last["hour"])},
            )
        return max(0, len(scores) - before)

    def risk(self, pid: str) -> dict[str, Any]:
        """The patient's score history, the model that made it, the latest score's top factors
        (signed contributions on the logit scale: positive raises the risk)."""
        model = {
            "name": self.scorer.name,
            "version": self.scorer.version,
            "alias": self.scorer.alias,
            "task": self.scorer.model.task,
            "threshold": float(self.scorer.model.threshold_),
        }
        latest = self.scored.get(pid)
        if latest is None:
            why = self.errors.get(pid) or self.unscored.get(pid, "no data scored yet")
            return {"patient_id": pid, "model": model, "scored": False, "reason": why}
        h, factors = latest
        return {
            "patient_id": pid,
            "model": model,
            "scored": True,
            "history": [
                {
                    "hour": int(hour),
                    "time": time.isoformat(),
                    "probability": float(p),
                    "alert": bool(alert),
                    "low_confidence": bool(low),
                }
                for hour, time, p, alert, low in zip(
                    h["hour"].tolist(),
                    h["time"].tolist(),
                    h["probability"].tolist(),
                    h["alert"].tolist(),
                    h["low_confidence"].tolist(),
                    strict=True,
                )
            ],
            "top_factors": [{"feature": f, "contribution": c} for f, c in factors],
        }
