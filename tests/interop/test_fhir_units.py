"""FHIR R4 in (validated with fhirclient) and unit normalization with pint."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitaltwin.cli import app
from vitaltwin.data.units import UnitError, to_canonical
from vitaltwin.interop.fhir import FhirError, convert_file
from vitaltwin.store import DuckDBStore

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir"


@pytest.mark.parametrize(
    ("value", "unit", "canonical", "loinc", "expected"),
    [
        (98.6, "[degF]", "Cel", None, 37.0),
        (13.3, "kPa", "mm[Hg]", None, 99.76),
        (40.0, "%", "1", None, 0.40),
        (5.5, "mmol/L", "mg/dL", "2345-7", 99.09),
        (18.0, "mg/dL", "mmol/L", "2524-7", 1.998),
        (88.4, "umol/L", "mg/dL", "2160-0", 1.0),
        (7.0, "10*9/L", "10*3/uL", None, 7.0),
    ],
)
def test_unit_conversions(
    value: float, unit: str, canonical: str, loinc: str | None, expected: float
) -> None:
    assert to_canonical(value, unit, canonical, loinc) == pytest.approx(expected, rel=1e-3)


def test_unknown_or_incompatible_units_are_named() -> None:
    with pytest.raises(UnitError, match="unknown unit 'furlong'"):
        to_canonical(1.0, "furlong", "Cel")
    with pytest.raises(UnitError, match="cannot convert 'mm\\[Hg\\]' to 'Cel'"):
        to_canonical(1.0, "mm[Hg]", "Cel")


def test_fhir_examples_are_stored_or_quarantined_with_reasons() -> None:
    got = {f.name: convert_file(f) for f in sorted(DATA.glob("*.json"))}
    bp = got["observation-example-bloodpressure-dar.json"]
    assert bp.observations.num_rows == 1  # systolic 107; diastolic absent
    assert "data absent: not-performed" in bp.quarantine.column("reason").to_pylist()
    assert bp.observations.column("quality").to_pylist() == [
        "effective time given as a date only (stored at 00:00 UTC)"
    ]
    sat = got["observation-example-satO2.json"]
    assert sat.observations.column("loinc").to_pylist() == ["2708-6"]  # two codes, counted once
    assert got["observation-example-bloodpressure-cancel.json"].quarantine.column(
        "reason"
    ).to_pylist() == ["status cancelled: no result to store"]
    ecg = got["observation-example-sample-data.json"]
    assert ecg.quarantine.num_rows == 0 and ecg.waveforms is not None
    leads = ecg.waveforms.to_pylist()
    assert len(leads) == 3 and all(w["period_ms"] == 10.0 for w in leads)
    assert all(len(w["data"].split()) > 100 for w in leads)
    (patient,) = got["patient-example.json"].patients.to_pylist()
    assert patient["sex"] == "male" and patient["birth_date"] == date(1974, 12, 25)
    for c in got.values():
        assert c.values_read == c.observations.num_rows + c.quarantine.num_rows


def test_invalid_fhir_is_quarantined_naming_the_field(tmp_path: Path) -> None:
    bad = {
        "resourceType": "Observation",
        "id": "hr1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/x"},
        "effectiveDateTime": "2024-01-01T10:00:00Z",
        "valueQuantity": {"value": "fast", "code": "/min"},
    }
    path = tmp_path / "bad.ndjson"
    good = dict(bad, id="hr2", valueQuantity={"value": 212, "unit": "/min", "code": "/min"})
    path.write_text(json.dumps(bad) + "\n" + json.dumps(good) + "\n{not json\n")
    c = convert_file(path)
    q = c.quarantine.to_pylist()
    assert c.observations.column("value").to_pylist() == [212.0]
    assert any("Observation/hr1" in r["position"] and "value" in r["reason"] for r in q)
    assert any(r["position"] == "line 3" and "not JSON" in r["reason"] for r in q)
    trunc = tmp_path / "trunc.json"
    trunc.write_text('{"resourceType": "Obs')
    with pytest.raises(FhirError, match=r"trunc\.json: not JSON"):
        convert_file(trunc)


@pytest.mark.skipif(not SHARED.exists(), reason="shared FHIR samples not present")
def test_every_shared_fhir_sample_is_ingested_or_rejected(tmp_path: Path) -> None:
    files = (
        sorted((SHARED / "r4-examples").glob("*.json"))
        + sorted((SHARED / "synthea").glob("*.json.gz"))[:5]
    )
    with DuckDBStore(tmp_path) as st:
        for f in files:
            c = convert_file(f)
            counts = st.ingest(c.observations, c.quarantine, c.values_read, **c.context())
            assert counts.stored + counts.quarantined + counts.duplicates == counts.read
        assert st.count("observations") > 1000  # the Synthea stays carry vital signs and labs
    result = CliRunner().invoke(
        app, ["ingest", str(SHARED / "r4-examples"), "--store", str(tmp_path / "cli")]
    )
    assert result.exit_code == 0, result.output
    assert "34 files read, 0 rejected" in " ".join(result.output.split())
