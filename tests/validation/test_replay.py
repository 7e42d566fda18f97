"""The replay study reads canonical tables: from a record or a store, with the same result."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vitaltwin.interop.physionet import VARIABLES, convert
from vitaltwin.store import Store
from vitaltwin.validation.replay import ReplayConfig, ReplayError, run_replay

pytestmark = pytest.mark.slow  # twins are tracked for every hour


def stays() -> pd.DataFrame:
    """Ten PhysioNet-layout stays of 12 to 40 hours with drifting vitals."""
    rng = np.random.default_rng(4)
    rows = []
    for k in range(10):
        hours = 12 + 4 * k
        for h in range(1, hours + 1):
            rows.append(
                {
                    "patient_id": f"p{k:03d}",
                    "ICULOS": h,
                    "HR": 85 + 0.3 * h + rng.normal(0, 3),
                    "MAP": 78 - 0.2 * h + rng.normal(0, 4),
                    "O2Sat": min(100.0, 96 + rng.normal(0, 1)),
                    "FiO2": 0.4 if h > 6 else np.nan,
                    "Age": 50 + k,
                    "Gender": k % 2,
                    "Unit1": 1,
                    "Unit2": 0,
                    "HospAdmTime": -3.0,
                    "SepsisLabel": 0,
                }
            )
    df = pd.DataFrame(rows)
    for v in VARIABLES:
        if v.name not in df:
            df[v.name] = np.nan
    return df


CFG = ReplayConfig(n_members=8, min_hours=24, max_hours=30)


def test_replay_of_a_record_and_of_the_store_it_was_ingested_in_agree(store: Store) -> None:
    record = convert(stays(), source="stays.psv")
    from_record = run_replay(record, CFG)
    assert from_record.patients == 7  # the stays of 24 h or more (ICU encounters)
    assert (from_record.table["n_hours"] > 0).all()
    assert np.isfinite(from_record.table[["twin_mae", "persistence_mae"]].to_numpy()).all()
    store.ingest_record(record)
    from_store = run_replay(store, CFG)
    pd.testing.assert_frame_equal(from_store.table, from_record.table)


def test_replay_without_icu_stays_says_so() -> None:
    record = convert(stays(), source="stays.psv")
    with pytest.raises(ReplayError, match="no encounters"):
        run_replay(dataclasses.replace(record, encounters=None), CFG)
    with pytest.raises(ReplayError, match="no ICU stay of 49 h"):
        run_replay(record, ReplayConfig(min_hours=49))
    with pytest.raises(ReplayError, match="both"):
        run_replay(record, ReplayConfig(min_hours=48))  # one patient: one half only


def _eicu_folder(d: Path, stays: int = 8, hours: int = 30) -> Path:
    """An eICU-layout folder: ``stays`` unit stays of ``hours`` hours with a cuff pressure
    every 30 minutes and nothing else charted (as the eICU demo: no HR, no SpO2)."""
    d.mkdir()
    rng = np.random.default_rng(7)
    patient = ["patientunitstayid,gender,age,hospitalid,unittype,hospitaladmittime24,"
               "hospitaladmitoffset,unitdischargeoffset,admissionweight"]  # fmt: skip
    vitals = ["vitalaperiodicid,patientunitstayid,observationoffset,noninvasivesystolic,"
              "noninvasivediastolic,noninvasivemean"]  # fmt: skip
    n = 0
    for s in range(1, stays + 1):
        patient.append(f"{s},{'Female' if s % 2 else 'Male'},{50 + s},73,MICU,08:00:00,0,"
                       f"{hours * 60},70")  # fmt: skip
        for minute in range(15, hours * 60, 30):
            m = 80 - 0.1 * minute / 60 + rng.normal(0, 4)
            n += 1
            vitals.append(f"{n},{s},{minute},{m + 35:.0f},{m - 15:.0f},{m:.0f}")
    for name, lines in (("patient", patient), ("vitalAperiodic", vitals)):
        with gzip.open(d / f"{name}.csv.gz", "wt") as fh:
            fh.write("\n".join(lines) + "\n")
    return d


def test_replay_of_an_eicu_folder_compares_what_it_charts(tmp_path: Path) -> None:
    res = run_replay(_eicu_folder(tmp_path / "eicu"), CFG)
    assert res.patients == 8
    assert res.absent == ("HR", "SpO2")  # cuff pressures only: no rows for what is not charted
    assert list(res.table.index) == ["MAP"]
    row = res.table.loc["MAP"]
    assert row["n_hours"] > 0
    cols = ["twin_mae", "boosting_mae", "boosting_with_twin_mae", "boosting_with_twin_now_mae"]
    assert np.isfinite(row[cols].to_numpy(float)).all()
    assert row["boosting_with_twin_gain_ci95_low"] <= row["boosting_with_twin_gain_ci95_high"]


def test_replay_of_a_folder_without_bedside_vitals_says_so(tmp_path: Path) -> None:
    (tmp_path / "hosp").mkdir()
    with pytest.raises(ReplayError, match="without eICU tables"):
        run_replay(tmp_path, CFG)
