"""The store's read API on both backends: what the twin, the risk models and the service read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vitaltwin.interop import read_any
from vitaltwin.risk import cohort_from_record, cohort_from_store
from vitaltwin.store import Store

PSV = Path(__file__).resolve().parents[1] / "fixtures" / "physionet"
ADMISSION = datetime(2000, 1, 1, tzinfo=UTC)  # the PhysioNet adapter's default


@pytest.fixture
def filled(store: Store) -> Store:
    for f in sorted(PSV.glob("*.psv")):
        store.ingest_record(read_any(f))
    return store


def test_observations_by_patient_code_and_time(filled: Store) -> None:
    everything = filled.observations()
    assert everything.num_rows == filled.count("observations")
    one = filled.observations("p000001")
    assert set(one.column("patient_id").to_pylist()) == {"p000001"}
    two = filled.observations(["p000001", "p000002"], loinc=["8867-4", "8478-0"])
    assert set(two.column("loinc").to_pylist()) == {"8867-4", "8478-0"}
    assert set(two.column("patient_id").to_pylist()) == {"p000001", "p000002"}
    t = two.column("effective_time").to_pylist()
    keys = list(zip(two.column("patient_id").to_pylist(), t, strict=True))
    assert keys == sorted(keys)  # by patient, then time
    window = filled.observations(
        "p000001", start=ADMISSION + timedelta(hours=2), end=ADMISSION + timedelta(hours=5)
    )
    hours = {
        (x - ADMISSION).total_seconds() / 3600 for x in window.column("effective_time").to_pylist()
    }
    assert window.num_rows > 0 and min(hours) >= 2 and max(hours) < 5
    assert filled.observations([]).num_rows == 0


def test_observations_received_since_an_instant(filled: Store) -> None:
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert filled.observations(received_since=later).num_rows == 0
    before = datetime(2020, 1, 1, tzinfo=UTC)
    assert filled.observations(received_since=before).num_rows == filled.count("observations")
    with pytest.raises(ValueError, match="time zone"):
        filled.observations(received_since=datetime(2020, 1, 1))


def test_patients_labels_and_the_cohort_from_the_store(filled: Store) -> None:
    pats = filled.patients()
    assert pats.column("patient_id").to_pylist() == ["p000001", "p000002", "p000009"]
    assert filled.patients("p000002").num_rows == 1
    labels = filled.labels("p000009", label="sepsis_physionet2019")
    assert labels.num_rows > 0 and set(labels.column("patient_id").to_pylist()) == {"p000009"}
    stays = filled.encounters()  # the PhysioNet adapter: one ICU encounter per stay
    assert stays.column("kind").to_pylist() == ["ICU"] * 3 and filled.medications().num_rows == 0
    assert filled.encounters("p000002").column("encounter_id").to_pylist() == ["p000002:icu"]
    # the risk cohort from the store is the cohort from the files
    from_store = cohort_from_store(filled)
    from_files = [cohort_from_record(read_any(f)) for f in sorted(PSV.glob("*.psv"))]
    assert len(from_store.grid) == sum(len(c.grid) for c in from_files)
    assert from_store.n_patients == 3
    # a patient whose consent excludes research is left out of the cohorts (training sets)
    filled.set_research_consent("p000002", allowed=False)
    assert filled.research_excluded() == {"p000002"}
    assert set(cohort_from_store(filled).grid["patient_id"]) == {"p000001", "p000009"}
    filled.set_research_consent("p000002", allowed=True)
    assert cohort_from_store(filled).n_patients == 3
