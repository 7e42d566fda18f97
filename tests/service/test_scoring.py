"""Online risk in the service: a registered model scores a patient's hours as they arrive, with
its name and version, the latest score's top factors (SHAP) and an alert at the model's
threshold; a patient without an ICU admission is not scored, and the API says why."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from fastapi.testclient import TestClient

from vitaltwin.data.schema import PATIENTS
from vitaltwin.risk import RiskModel, Scorer, build_cohort, raw_features
from vitaltwin.service.access import Security
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.store import DuckDBStore

DEV = Security.development_mode()
"""Every caller may do everything (access rules: tests/service/test_security.py)."""

ADM = datetime(2026, 11, 20, 8, tzinfo=UTC)
CODES = {"8867-4": ("/min", 80, 3.0), "8310-5": ("Cel", 37, 0.15), "8478-0": ("mm[Hg]", 80, -2.5)}


def _rows(
    pid: str, hours: int, onset: int | None, rng: np.random.Generator
) -> list[dict[str, Any]]:
    out = []
    for h in range(hours):
        ramp = max(0.0, h - (onset - 8)) if onset is not None else 0.0
        t = ADM + timedelta(hours=h, minutes=10)
        for code, (unit, base, slope) in CODES.items():
            sd = 0.2 if code == "8310-5" else 4.0
            out.append(
                {
                    "patient_id": pid,
                    "time": t.isoformat(),
                    "code": code,
                    "value": base + slope * ramp + rng.normal(0, sd),
                    "unit": unit,
                }
            )
    return out  # fmt: skip


def _model() -> Scorer:
    rng = np.random.default_rng(0)
    obs, pats, labels = [], [], []
    for i in range(240):
        pid, hours = f"s{i}", int(rng.integers(20, 40))
        onset = int(rng.integers(12, hours)) if rng.random() < 0.35 else None
        for r in _rows(pid, hours, onset, rng):
            obs.append({"patient_id": pid, "effective_time": pd.Timestamp(r["time"]),
                        "loinc": r["code"], "value": r["value"]})  # fmt: skip
        pats.append({"patient_id": pid, "icu_admission_time": pd.Timestamp(ADM),
                     "sex": "male", "age_years": 60.0})  # fmt: skip
        labels += [
            {
                "patient_id": pid,
                "time": pd.Timestamp(ADM + timedelta(hours=h)),
                "label": "sepsis_physionet2019",
                "value": int(onset is not None and h >= onset - 6),
            }
            for h in range(hours)
        ]
    cohort = build_cohort(pd.DataFrame(obs), pd.DataFrame(pats), pd.DataFrame(labels))
    X = raw_features(cohort)
    model = RiskModel(
        learning_rate=0.1, max_rounds=200, early_stopping_rounds=20, min_data_in_leaf=50
    ).fit(X, cohort.grid["sepsis"].to_numpy(), cohort.grid["patient_id"].to_numpy())
    return Scorer(model, "sepsis_test", "3", "champion")  # fmt: skip


def test_a_patient_is_scored_explained_and_alerted_as_data_arrive(tmp_path: Path) -> None:
    scorer = _model()
    with DuckDBStore(tmp_path / "s") as store:
        row = {f.name: None for f in PATIENTS} | {
            "patient_id": "icu1", "icu_admission_time": ADM, "sex": "female",
            "age_years": 64.0, "source": "adt"}  # fmt: skip
        store.ingest(*_empty(), patients=pa.Table.from_pylist([row], schema=PATIENTS))
        app = create_app(store, MemoryBus(partitions=2), security=DEV, scorer=scorer, shadow=False)
        with TestClient(app) as client:
            septic = _rows("icu1", 30, 20, np.random.default_rng(7))
            client.post("/v1/observations", json=septic)
            client.post("/v1/observations", json=_rows("walkin", 3, None, np.random.default_rng(1)))
            deadline = time.monotonic() + 60
            while (
                not (r := client.get("/v1/patients/icu1/risk").json())["scored"]
                or len(r["history"]) < 30
            ):
                assert time.monotonic() < deadline, r
                time.sleep(0.1)
            assert r["model"]["name"] == "sepsis_test" and r["model"]["version"] == "3"
            p = [h["probability"] for h in r["history"]]
            assert p[-1] > p[5]  # the ramp before onset raises the score
            assert len(r["top_factors"]) == 5
            assert any(f["feature"].startswith(("HR", "Temp", "MAP")) for f in r["top_factors"])
            while not (al := client.get("/v1/alerts").json()["alerts"]):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert al[0]["rule"] == "sepsis risk" and al[0]["model_version"] == "sepsis_test v3"
            assert al[0]["details"]["top_factors"]
            while (
                "no data" in (walkin := client.get("/v1/patients/walkin/risk").json())["reason"]
            ):  # its message may still be on its way
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert walkin["scored"] is False and "ICU admission" in walkin["reason"]


def _empty() -> tuple[pa.Table, pa.Table, int]:
    from vitaltwin.data.schema import OBSERVATIONS, QUARANTINE

    return OBSERVATIONS.empty_table(), QUARANTINE.empty_table(), 0
