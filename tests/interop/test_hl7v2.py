"""HL7 v2: shared samples ingested or rejected with reasons; ORU values; MLLP ACK/NAK."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from vitaltwin.data import age_years, parse_birth_date
from vitaltwin.interop.hl7v2 import Hl7Error, convert_file, convert_text
from vitaltwin.store import DuckDBStore

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "hl7v2"

ORU = (
    "MSH|^~\\&|MON|ICU|VT|H|20261122083000||ORU^R01|MSG001|P|2.5\r"
    "PID|1||PAT42^^^H^MR||Doe^Jane||19600101|F\r"
    "OBR|1|||VITALS|||20261122083000+0100\r"
    "OBX|1|NM|8867-4^Heart rate^LN||112|/min|||||F|||20261122083000+0100\r"
    "OBX|2|NM|TEMP^Temperature^LOCAL||101.3|degF|||||F|||20261122083000+0100\r"
    "OBX|3|NM|SPO2^SpO2^LOCAL||130|%|||||F|||20261122083000+0100\r"
    "OBX|4|ST|NOTE^Comment^LOCAL||agitated||||||F\r"
)


def test_oru_values_are_mapped_converted_and_checked() -> None:
    c = convert_text(ORU, "test")
    rows = {r["loinc"]: r for r in c.observations.to_pylist()}
    assert rows["8867-4"]["value"] == 112.0
    assert rows["8310-5"]["value"] == pytest.approx(38.5, abs=0.01)  # 101.3 F, local code
    assert rows["8867-4"]["effective_time"].hour == 7  # +01:00 -> 07:30 UTC
    reasons = c.quarantine.column("reason").to_pylist()
    assert any("outside plausible range" in r for r in reasons)  # SpO2 130 %
    assert any("not numeric" in r for r in reasons)  # ST comment
    assert c.values_read == 4


def test_malformed_messages_are_rejected_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.hl7"
    p.write_text("EVN|A04|20060705000000\rPID|1||X\r")
    with pytest.raises(Hl7Error, match=r"bad\.hl7: does not start with MSH"):
        convert_file(p)


@pytest.mark.skipif(not SHARED.exists(), reason="shared HL7 v2 samples not present")
def test_every_shared_sample_is_ingested_or_rejected(tmp_path: Path) -> None:
    files = sorted(SHARED.rglob("*.hl7"))
    rejected, ok = [], []
    with DuckDBStore(tmp_path) as st:
        for f in files:
            try:
                c = convert_file(f)
            except Hl7Error as exc:
                assert f.name in str(exc)
                rejected.append(f)
                continue
            got = st.ingest(c.observations, c.quarantine, c.values_read, c.patients)
            assert got.read == got.stored + got.quarantined + got.duplicates
            ok.append(f)
    assert len(files) == 26 and len(rejected) == 6 and len(ok) == 20
    assert all(f.parent.name == "negative" for f in rejected)


def test_adt_admission_and_discharge_become_an_encounter() -> None:
    adt = (
        "MSH|^~\\&|ADT|H|VT|H|20261120100000||ADT^A03|A1|P|2.5\r"
        "PID|1||PAT9^^^H^MR||Roe^Ann||19500101|F\r"
        "PV1|1|I|ICU^1^1||||||||||||||||V123|||||||||||||||||||||||||20261118080000"
        "|20261120100000\r"
    )
    c = convert_text(adt, "adt")
    enc = c.encounters.to_pylist() if c.encounters is not None else []
    assert len(enc) == 1 and enc[0]["encounter_id"] == "V123"
    assert enc[0]["kind"] == "inpatient" and enc[0]["end_time"].day == 20
    patient = c.patients.to_pylist()[0]
    assert patient["sex"] == "female" and patient["birth_date"] == date(1950, 1, 1)
    # Age is derived from the birth date at the time asked, never guessed from a partial date.
    age = age_years(patient["birth_date"], datetime(2026, 1, 1, tzinfo=UTC))
    assert age == pytest.approx(76, abs=0.01)
    assert parse_birth_date("1950") is None and parse_birth_date("19500231") is None


def test_site_code_table_maps_local_codes(tmp_path: Path) -> None:
    from vitaltwin.interop.hl7v2 import load_code_table

    table = tmp_path / "codes.csv"
    table.write_text("local_code,loinc\ntt-0001-01,2093-3\n")
    codes = load_code_table(table)
    assert codes["TT-0001-01"] == "2093-3" and codes["HR"] == "8867-4"
    msg = ORU.replace("8867-4^Heart rate^LN", "tt-0001-01^Cholesterol^WinPath")
    c = convert_text(msg, "x", local_codes=codes)
    assert "2093-3" in c.observations.column("loinc").to_pylist()
    bad = tmp_path / "bad.csv"
    bad.write_text("local_code,loinc\nX,notloinc\n")
    with pytest.raises(Hl7Error, match="line 2"):
        load_code_table(bad)
