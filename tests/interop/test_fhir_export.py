"""FHIR export: patient references resolve, every table round-trips, files are whole and private."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from vitaltwin.data.schema import observations_table
from vitaltwin.interop import read_any
from vitaltwin.interop.fhir import convert_file, patient_key
from vitaltwin.interop.fhir_export import (
    fhir_id,
    observation,
    observation_lines,
    patient,
    write_ndjson,
)
from vitaltwin.service import export_fhir
from vitaltwin.store import DuckDBStore

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir" / "synthea"
T = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
NOT_STORED = {"source", "position", "received_time"}  # where and when it arrived


def _bundle(tmp_path: Path, subject: str, patient_id: str = "p1") -> Path:
    doc = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1f0c3a52-9c1e-4e43-b2a4-7c5d6e0a9b11",
                "resource": {"resourceType": "Patient", "id": patient_id, "gender": "female"},
            },
            {
                "fullUrl": "urn:uuid:0d6b4c1e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": subject},
                    "effectiveDateTime": "2026-11-22T08:30:00Z",
                    "valueQuantity": {"value": 84, "unit": "/min", "code": "/min"},
                },
            },
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "subject",
    [
        "urn:uuid:1f0c3a52-9c1e-4e43-b2a4-7c5d6e0a9b11",  # bundle-internal, via fullUrl
        "Patient/p1",
        "Patient/p1/_history/3",
        "https://ehr.example.org/fhir/Patient/p1",
    ],
)
def test_every_form_of_patient_reference_joins_the_patient(tmp_path: Path, subject: str) -> None:
    rec = convert_file(_bundle(tmp_path, subject))
    assert rec.patients["patient_id"].to_pylist() == ["p1"]
    assert rec.observations["patient_id"].to_pylist() == ["p1"]


def test_a_subject_that_is_not_a_patient_is_quarantined(tmp_path: Path) -> None:
    rec = convert_file(_bundle(tmp_path, "Group/ward-3"))
    assert rec.observations.num_rows == 0
    assert rec.quarantine["reason"].to_pylist() == ["subject is not a Patient reference"]
    assert patient_key("urn:uuid:abc", {}) == "abc"  # outside a bundle: the id the uuid names


def _observations() -> pa.Table:
    rows = [
        ("p1", T, "8867-4", 84.0, "/min", None, None, "=", "final", None),
        ("p 2/\"x\"", T.replace(microsecond=250), "2524-7", 1 / 3, "mmol/L", "cuff", "flagged",
         "<", "corrected", None),
        ("p3", T, "9999-9", 1e-7, "1", None, None, ">=", "superseded", "invasive-arterial"),
        ("p3", T, "8478-0", 61.0, "mm[Hg]", None, None, "=", "entered-in-error", None),
        ("p3", T, "8478-0", 60.0, "mm[Hg]", None, None, "=", "preliminary", None),
    ]  # fmt: skip
    cols = list(zip(*rows, strict=True))
    n = len(rows)
    return observations_table(
        {
            "patient_id": cols[0],
            "effective_time": cols[1],
            "loinc": cols[2],
            "value": cols[3],
            "unit": cols[4],
            "source": ["t"] * n,
            "position": [str(i) for i in range(n)],
            "device": cols[5],
            "received_time": [T] * n,
            "quality": cols[6],
            "comparator": cols[7],
            "status": cols[8],
            "method": cols[9],
        }
    )


def test_column_wise_observations_equal_the_per_row_builder_and_validate() -> None:
    table = _observations()
    fast = [json.loads(line) for line in observation_lines(table.to_batches()[0])]
    slow = [observation(r) for r in table.to_pylist()]
    assert fast == slow
    for res in fast:
        FHIRElementFactory.instantiate("Observation", res)  # raises when invalid
    odd = table["patient_id"][1].as_py()
    assert fast[1]["subject"]["reference"] == "Patient/" + fhir_id(odd)
    assert fast[1]["effectiveDateTime"] == "2026-11-22T08:30:00.000250Z"


def test_patient_keys_that_are_not_fhir_ids_get_a_stable_id_and_come_back() -> None:
    key = "MRN 12345^^^HOSP"
    res = patient(
        {"patient_id": key, "sex": "male", "birth_date": date(1950, 1, 2), "age_years": 76.0}
    )
    FHIRElementFactory.instantiate("Patient", res)
    assert res["id"] == fhir_id(key) and res["id"].startswith("vt-")
    assert res["identifier"][0]["value"] == key
    assert fhir_id("abc-1.2") == "abc-1.2"


def test_an_interrupted_export_leaves_the_previous_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "Observation.ndjson"
    batch = _observations().to_batches()[0]
    assert write_ndjson(iter([batch]), "observations", path) == 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # patient data: the owner only
    before = path.read_text()

    def stopped() -> Iterator[pa.RecordBatch]:
        yield batch
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_ndjson(stopped(), "observations", path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["Observation.ndjson"]


def _frame(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
    cols = [c for c in df.columns if c not in NOT_STORED]
    out: pd.DataFrame = df[cols].sort_values(cols, na_position="first").reset_index(drop=True)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not SYNTHEA.exists(), reason="shared Synthea bundles not present")
def test_all_synthea_bundles_join_their_patients_and_round_trip(tmp_path: Path) -> None:
    bundles = sorted(SYNTHEA.glob("*.json.gz"))
    assert len(bundles) == 100
    with DuckDBStore(tmp_path / "a") as a, DuckDBStore(tmp_path / "b") as b:
        for f in bundles:
            a.ingest_record(read_any(f))
        keys = set(a.patients()["patient_id"].to_pylist())
        for t in ("observations", "encounters", "conditions", "medications"):
            assert set(a.table(t)["patient_id"].to_pylist()) <= keys, t
        written = export_fhir(a, tmp_path / "fhir", batch_rows=7_000)
        for path, _ in written.values():
            for line in path.read_text().splitlines()[:50]:
                res = json.loads(line)
                FHIRElementFactory.instantiate(res["resourceType"], res)
            b.ingest_record(read_any(path))
        assert b.count("quarantine") == 0
        for t in ("patients", "encounters", "conditions", "medications", "observations"):
            pd.testing.assert_frame_equal(_frame(a.table(t)), _frame(b.table(t)), obj=t)
        assert written["Observation"][1] == a.count("observations") > 70_000


def test_merges_encounter_status_and_location_come_in_and_go_back_out(tmp_path: Path) -> None:
    doc = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "new", "gender": "male"}},
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "old",
                    "active": False,
                    "link": [{"other": {"reference": "Patient/new"}, "type": "replaced-by"}],
                }
            },
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": "e1",
                    "status": "cancelled",
                    "class": {"code": "IMP"},
                    "subject": {"reference": "Patient/old"},
                    "period": {"start": "2026-11-20T10:00:00Z"},
                }
            },
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": "e2",
                    "status": "in-progress",
                    "class": {"code": "IMP"},
                    "subject": {"reference": "Patient/old"},
                    "location": [
                        {"location": {"display": "ED^4"}, "status": "completed"},
                        {"location": {"display": "ICU^3^B"}, "status": "active"},
                    ],
                }
            },
        ],
    }
    (tmp_path / "in.json").write_text(json.dumps(doc))
    with DuckDBStore(tmp_path / "a") as a, DuckDBStore(tmp_path / "b") as b:
        a.ingest_record(read_any(tmp_path / "in.json"))
        assert a.patients().column("patient_id").to_pylist() == ["new"]
        enc = a.encounters("new").to_pylist()  # the cancelled one is left out
        assert [(e["encounter_id"], e["patient_id"], e["location"]) for e in enc] == [
            ("e2", "new", "ICU^3^B")
        ]
        written = export_fhir(a, tmp_path / "fhir")
        for path, _ in written.values():
            b.ingest_record(read_any(path))
        for t in ("patients", "encounters"):
            pd.testing.assert_frame_equal(_frame(a.table(t)), _frame(b.table(t)), obj=t)
