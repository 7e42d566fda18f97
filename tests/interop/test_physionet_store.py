"""PhysioNet 2019 -> canonical record -> DuckDB: mapping, nothing lost, idempotent, queries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from vitaltwin.cli import app
from vitaltwin.interop.physionet import DESCRIPTORS, VARIABLES, convert, read_psv
from vitaltwin.store import DuckDBStore, Store

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "physionet"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "physionet2019"


def test_all_40_variables_are_mapped_with_loinc_and_ucum() -> None:
    assert len(VARIABLES) + len(DESCRIPTORS) == 40
    codes = [v.loinc for v in VARIABLES]
    assert len(set(codes)) == len(codes)
    assert all(v.unit and v.low < v.high for v in VARIABLES)
    by = {v.name: v for v in VARIABLES}
    assert (by["HR"].loinc, by["HR"].unit) == ("8867-4", "/min")
    assert (by["Lactate"].loinc, by["Lactate"].unit) == ("2524-7", "mmol/L")


def test_psv_ingest_accounts_for_every_value_and_is_idempotent(
    store: Store, tmp_path: Path
) -> None:
    files = sorted(DATA.glob("*.psv"))
    first = None
    for f in files:
        c = convert(read_psv(f), source=f.name)
        cells = int(read_psv(f)[[v.name for v in VARIABLES]].notna().sum().sum())
        assert c.values_read == cells
        got = store.ingest(c.observations, c.quarantine, c.values_read, c.patients, c.labels)
        assert got.stored + got.quarantined + got.duplicates == got.read == cells
        first = got if first is None else first + got
        again = store.ingest(c.observations, c.quarantine, c.values_read, c.patients, c.labels)
        assert again.stored == 0 and again.quarantined == 0 and again.duplicates == cells
    assert first is not None and store.count("observations") == first.stored
    assert store.count("patients") == len(files)
    hr = store.observations("p000009", loinc="8867-4").to_pandas()
    assert len(hr) > 20 and hr["unit"].eq("/min").all()
    t = hr["effective_time"]
    assert t.is_monotonic_increasing and str(t.dt.tz) == "UTC"
    window = store.observations(
        "p000009",
        loinc="8867-4",
        start=datetime(2000, 1, 1, 5, tzinfo=UTC),
        end=datetime(2000, 1, 1, 10, tzinfo=UTC),
    )
    assert window.num_rows <= 5
    paths = store.export_parquet(tmp_path / "export")
    assert pq.read_table(paths["observations"]).num_rows == first.stored
    assert all(p.stat().st_mode & 0o077 == 0 for p in paths.values())  # owner-only
    # Parquet export -> import into a fresh store reads back identically.
    with DuckDBStore(tmp_path / "copy") as other:
        counts = other.import_parquet(tmp_path / "export")
        assert counts.stored == first.stored and counts.quarantined == first.quarantined
        assert other.table("observations").equals(store.table("observations"))
        assert other.table("labels").equals(store.table("labels"))


def test_mixed_batch_stores_only_new_keys(store: Store) -> None:
    """One batch with a patient already stored (half its rows new), a new patient, and rows
    repeated within the batch: each key is stored once and the counts still add up."""
    files = sorted(DATA.glob("*.psv"))[:2]
    a, b = (convert(read_psv(f), source=f.name) for f in files)
    half = a.observations.slice(0, a.observations.num_rows // 2)
    store.ingest(half, a.quarantine.slice(0, 0), half.num_rows)
    batch = pa.concat_tables([a.observations, b.observations, b.observations.slice(0, 7)])
    got = store.ingest(batch, a.quarantine.slice(0, 0), batch.num_rows)
    expected_new = a.observations.num_rows - half.num_rows + b.observations.num_rows
    assert got.stored == expected_new
    assert got.duplicates == half.num_rows + 7
    assert store.count("observations") == a.observations.num_rows + b.observations.num_rows


def test_implausible_values_are_quarantined_with_reason_and_location() -> None:
    df = read_psv(DATA / "p000001.psv")
    df.loc[3, "HR"] = 500.0
    df.loc[4, "O2Sat"] = 130.0
    df["Resp"] = df["Resp"].astype(object)
    df.loc[5, "Resp"] = "rapid"  # garbage in a numeric column
    c = convert(df, source="edited.psv")
    q = c.quarantine.to_pandas()
    assert set(q["field"]) >= {"HR", "O2Sat", "Resp"}
    assert q[q.field == "Resp"].iloc[0].reason == "Resp is not a number"
    assert q[q.field == "Resp"].iloc[0].raw_value == "rapid"
    hr = q[q.field == "HR"].iloc[0]
    assert hr.position == "p000001:row 3" and "outside plausible range" in hr.reason
    assert c.observations.num_rows + c.quarantine.num_rows == c.values_read


def test_naive_admission_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        convert(read_psv(DATA / "p000001.psv"), "x", admission=datetime(2000, 1, 1))


def test_cli_ingest_prints_counts_that_add_up(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", str(DATA), "--store", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "stored" in result.output and "quarantined" in result.output
    exp = CliRunner().invoke(
        app, ["export", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "e")]
    )
    assert exp.exit_code == 0, exp.output
    assert pq.read_table(tmp_path / "e" / "observations.parquet").num_rows > 0
    bad = CliRunner().invoke(app, ["ingest", str(tmp_path / "missing.psv")])
    assert bad.exit_code == 2 and "no such file" in " ".join(bad.output.split())


@pytest.mark.skipif(not SHARED.exists(), reason="shared PhysioNet set A not present")
def test_shared_set_a_sample_counts_add_up(store: Store) -> None:
    df = pd.read_parquet(SHARED / "training_setA.parquet")
    sub = df[df.patient_id.isin(df.patient_id.unique()[:300])]
    c = convert(sub, source="training_setA.parquet")
    got = store.ingest(c.observations, c.quarantine, c.values_read, c.patients, c.labels)
    present = int(sub[[v.name for v in VARIABLES]].notna().sum().sum())
    assert got.read == present == got.stored + got.quarantined + got.duplicates


def test_fhir_export_reads_back_identically(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(DATA), "--store", str(tmp_path / "a")]).exit_code == 0
    out = runner.invoke(
        app,
        [
            "export",
            "--format",
            "fhir",
            "--store",
            str(tmp_path / "a"),
            "--out",
            str(tmp_path / "f"),
        ],
    )
    assert out.exit_code == 0, out.output
    back = runner.invoke(app, ["ingest", str(tmp_path / "f"), "--store", str(tmp_path / "b")])
    assert back.exit_code == 0, back.output
    with DuckDBStore(tmp_path / "a") as a, DuckDBStore(tmp_path / "b") as b:
        for t in ("observations", "patients", "encounters"):  # PhysioNet has no others
            cols = [c for c in a.table(t).column_names if c not in ("source", "position")]
            cols = [c for c in cols if c != "received_time"]
            assert a.table(t).num_rows > 0
            assert a.table(t).select(cols).equals(b.table(t).select(cols)), t


def test_encounters_conditions_and_medications_are_stored(store: Store, tmp_path: Path) -> None:
    import json

    from vitaltwin.interop.fhir import convert_file

    subj = {"reference": "Patient/p7"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": "e1",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "IMP",
                    },
                    "subject": subj,
                    "period": {"start": "2026-11-20T10:00:00Z", "end": "2026-11-22T09:00:00Z"},
                }
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "c1",
                    "subject": subj,
                    "code": {
                        "coding": [
                            {
                                "system": "http://snomed.info/sct",
                                "code": "91302008",
                                "display": "Sepsis",
                            }
                        ]
                    },
                    "onsetDateTime": "2026-11-20T12:00:00Z",
                }
            },
            {
                "resource": {
                    "resourceType": "MedicationAdministration",
                    "id": "m1",
                    "status": "completed",
                    "subject": subj,
                    "medicationCodeableConcept": {"text": "norepinephrine"},
                    "effectivePeriod": {"start": "2026-11-20T13:00:00Z"},
                    "dosage": {
                        "rateQuantity": {
                            "value": 0.1,
                            "unit": "ug/kg/min",
                            "system": "http://unitsofmeasure.org",
                            "code": "ug/kg/min",
                        }
                    },
                }
            },
        ],
    }
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(bundle))
    c = convert_file(path)
    assert c.quarantine.num_rows == 0
    for _ in range(2):  # idempotent
        store.ingest(c.observations, c.quarantine, c.values_read, **c.context())
    assert store.count("encounters") == store.count("conditions") == 1
    med = store.table("medications").to_pylist()
    assert len(med) == 1 and med[0]["drug"] == "norepinephrine" and med[0]["rate"] == 0.1
    assert store.table("conditions").to_pylist()[0]["code"] == "http://snomed.info/sct|91302008"
    ecg = convert_file(
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "fhir"
        / "observation-example-sample-data.json"
    )
    store.ingest(ecg.observations, ecg.quarantine, ecg.values_read, **ecg.context())
    waves = store.table("waveforms").to_pylist()
    assert ecg.waveforms is not None
    sent = {w["code"]: w["data"] for w in ecg.waveforms.to_pylist()}
    assert len(waves) == 3 and all(w["data"] == sent[w["code"]] for w in waves)
