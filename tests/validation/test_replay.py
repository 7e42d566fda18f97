"""The replay study reads canonical tables: from a record or a store, with the same result."""

from __future__ import annotations

import dataclasses

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
