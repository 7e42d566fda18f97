"""Research exports: the shared Synthea bundles, stored and exported de-identified, hold none of
the source's identifiers (names, addresses, phone numbers, identifiers, birth and death dates;
every stored time moved); consent is respected; the re-identification risk is reported."""

from __future__ import annotations

import gzip
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vitaltwin.governance import (
    AGE_CAP,
    RULES,
    Deidentifier,
    export_research,
    k_anonymity,
    scrub,
    zip3,
)
from vitaltwin.interop import read_any
from vitaltwin.store import TABLES, DuckDBStore

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir" / "synthea"
KEY = bytes(range(32))


def _identifiers(patient: dict[str, Any]) -> set[str]:
    """What identifies a Synthea Patient resource: names, address, phones, identifiers, its
    id, birth and death dates (the strings a leak would contain)."""
    found: set[str] = {str(patient["id"]), str(patient.get("birthDate", ""))}
    if "deceasedDateTime" in patient:
        found.add(str(patient["deceasedDateTime"])[:10])
    for name in patient.get("name", []):
        found.update(name.get("given", []))
        found.add(name.get("family", ""))
    for addr in patient.get("address", []):
        found.update(addr.get("line", []))
        found.update({addr.get("city", ""), addr.get("postalCode", "")})
    found.update(t["value"] for t in patient.get("telecom", []))
    found.update(i["value"] for i in patient.get("identifier", []))
    for ext in patient.get("extension", []):
        if "valueString" in ext:
            found.add(ext["valueString"])  # mother's maiden name
        if "valueAddress" in ext:
            found.add(ext["valueAddress"].get("city", ""))
    return {s for s in found if len(s) >= 4}


def _strings(table: pa.Table) -> set[str]:
    out: set[str] = set()
    for col in table.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out.update(v for v in col.to_pylist() if v)
        elif pa.types.is_date(col.type) or pa.types.is_timestamp(col.type):
            out.update(v.isoformat() for v in col.to_pylist() if v)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not SYNTHEA.exists(), reason="shared Synthea bundles not present")
def test_a_research_export_of_the_synthea_bundles_holds_no_identifier(tmp_path: Path) -> None:
    bundles = sorted(SYNTHEA.glob("*.json.gz"))
    identifiers: set[str] = set()
    for f in bundles:
        doc = json.loads(gzip.decompress(f.read_bytes()))
        for e in doc["entry"]:
            if e["resource"]["resourceType"] == "Patient":
                identifiers |= _identifiers(e["resource"])
    assert len(identifiers) > 500
    deid = Deidentifier(KEY)
    with DuckDBStore(tmp_path / "store") as store:
        for f in bundles:
            store.ingest_record(read_any(f))
        pids = store.patients().column("patient_id").to_pylist()
        left_out = pids[0]
        store.set_research_consent(left_out, allowed=False)
        original = {t: store.table(t) for t in TABLES}
        done = export_research(store, tmp_path / "research", deid, batch_rows=7_000)
    files = {p.stem: pq.read_table(p) for p in (tmp_path / "research").glob("*.parquet")}
    assert set(files) == {t for t in TABLES if original[t].num_rows}
    # 1. no identifier of the source anywhere in the export: in no cell, whole or inside a
    # longer text (a path, a position, a reason), nor in the files' metadata
    pattern = re.compile(
        r"(?<![0-9A-Za-z])(?:"
        + "|".join(re.escape(i) for i in sorted(identifiers, key=len, reverse=True))
        + r")(?![0-9A-Za-z])"
    )
    for t, tab in files.items():
        found = pattern.findall("\n".join(_strings(tab)))
        assert not found, (t, sorted(set(found))[:5])
    for path in (tmp_path / "research").iterdir():
        if path.suffix == ".parquet":
            meta = str(pq.read_metadata(path).metadata) + str(pq.read_schema(path))
        else:
            meta = path.read_text()
        assert not pattern.findall(meta), path.name
        assert path.stat().st_mode & 0o077 == 0, path  # owner-only
    # 2. no birth date; ages capped at 90; every time moved by its patient's own whole days
    pats = files["patients"]
    assert "birth_date" not in pats.column_names
    assert pc.max(pats.column("age_years")).as_py() <= AGE_CAP
    assert pats.num_rows == len(pids) - 1
    obs_src, obs_out = original["observations"], files["observations"]
    kept = pc.invert(pc.equal(obs_src.column("patient_id"), left_out))
    obs_src = obs_src.filter(kept)
    assert obs_out.num_rows == obs_src.num_rows == done.rows["observations"]
    for src, out in zip(obs_src.slice(0, 5000).to_pylist(), obs_out.slice(0, 5000).to_pylist(),
                        strict=True):  # fmt: skip
        assert out["patient_id"] == deid.pseudonym(src["patient_id"])
        days = deid.shift_days(src["patient_id"])
        assert 1 <= days <= 365
        assert out["effective_time"] == src["effective_time"] - timedelta(days=days)
        assert out["value"] == src["value"] and out["loinc"] == src["loinc"]
    # 3. linkage survives: every table's patients are the export's patients
    ids = set(pats.column("patient_id").to_pylist())
    for t in ("observations", "encounters", "conditions", "medications"):
        assert set(files[t].column("patient_id").to_pylist()) <= ids, t
    assert deid.pseudonym(left_out) not in ids  # consent excludes research
    # 4. clinical codes kept (RxNorm codes are not "long numbers")
    assert all("|" in d for d in files["medications"].column("drug").to_pylist())
    # 5. the re-identification risk report
    report = json.loads((tmp_path / "research" / "reidentification-risk.json").read_text())
    assert report["excluded_patients"] == 1 and report["reidentification"]["patients"] == 99
    assert report["reidentification"]["k"] == done.risk.k >= 1
    assert report["date_shift_days"] == [1, 365]


def test_every_column_of_every_table_has_a_rule_and_unknown_ones_stop_the_export() -> None:
    from vitaltwin.data import schema

    for name in TABLES:
        canonical = getattr(schema, name.upper())
        assert set(canonical.names) == set(RULES[name]), name
    deid = Deidentifier(KEY)
    with pytest.raises(ValueError, match="no de-identification rule for column"):
        deid.table("patients", pa.table({"patient_id": ["p"], "ssn": ["999-20-2880"]}))


def test_pseudonyms_need_the_key_and_dates_keep_their_intervals() -> None:
    a, b = Deidentifier(KEY), Deidentifier(bytes(32))
    assert a.pseudonym("p1") == a.pseudonym("p1") != b.pseudonym("p1")
    assert a.pseudonym("p1", "patient") != a.pseudonym("p1", "device")
    t0 = datetime(2026, 1, 1, 8, 0, tzinfo=datetime.now().astimezone().tzinfo).astimezone()
    table = pa.table({
        "patient_id": ["p1", "p1", "p2"], "label": ["sepsis"] * 3, "value": pa.array([1, 0, 1],
        pa.int8()), "source": ["s"] * 3,
        "time": pa.array([t0, t0 + timedelta(hours=5), t0], pa.timestamp("us", "UTC")),
    })  # fmt: skip
    out = a.table("labels", table).to_pylist()
    assert out[1]["time"] - out[0]["time"] == timedelta(hours=5)
    assert out[0]["time"] == t0 - timedelta(days=a.shift_days("p1"))
    assert out[0]["time"].time() == t0.astimezone(out[0]["time"].tzinfo).time()  # time of day


def test_ages_from_birth_dates_and_the_very_old() -> None:
    deid = Deidentifier(KEY)
    adm = datetime.fromisoformat("2026-03-01T00:00:00+00:00")
    pats = pa.table({
        "patient_id": ["old", "young"], "sex": ["female", "male"],
        "age_years": pa.array([None, 40.0], pa.float64()),
        "birth_date": pa.array([date(1920, 6, 1), None], pa.date32()),
        "icu_admission_time": pa.array([adm, adm], pa.timestamp("us", "UTC")),
        "hospital_admission_time": pa.array([None, None], pa.timestamp("us", "UTC")),
        "icu_unit": ["MICU", "MICU"], "source": ["x", "x"], "merged_into": [None, None],
    })  # fmt: skip
    out = deid.table("patients", pats).to_pylist()
    assert [r["age_years"] for r in out] == [90.0, 40.0]  # 105 years old: "90 or older"
    risk = k_anonymity(deid.table("patients", pats))
    assert risk.k == 1 and risk.patients_below_threshold == 2 and risk.classes == 2


def test_free_text_and_zip_codes() -> None:
    text = ("call 555-670-8755 or mail j.doe@example.org, SSN 999-20-2880, seen 2019-07-13, "
            "MRN 12345678, said 'Mr. Greenfelder'")  # fmt: skip
    clean = scrub(text)
    assert clean is not None
    for s in ("555-670-8755", "j.doe@example.org", "999-20-2880", "2019-07-13", "12345678",
              "Greenfelder"):  # fmt: skip
        assert s not in clean
    assert zip3("02139-4307") == "021" and zip3("03601") == "000" and zip3("12") is None
