"""ADT events change the record: A08 updates demographics, A03 ends the encounter."""

from __future__ import annotations

from datetime import date

from vitaltwin.interop.hl7v2 import convert_text
from vitaltwin.store import Store

PV1 = "PV1|1|I|ICU^1^1||||||||||||||||V77|||||||||||||||||||||||||{admit}|{disch}\r"


def adt(event: str, cid: str, sex: str, admit: str = "", disch: str = "") -> str:
    return (
        f"MSH|^~\\&|ADT|H|VT|H|20261120100000+0000||ADT^{event}|{cid}|P|2.5\r"
        f"PID|1||PAT9^^^H^MR||Roe^Ann||19500101|{sex}\r" + PV1.format(admit=admit, disch=disch)
    )


def test_a08_updates_demographics_and_a03_ends_the_encounter(store: Store) -> None:
    store.ingest_record(convert_text(adt("A01", "A1", "F", admit="20261118080000+0000"), "a"))
    enc = store.encounters("PAT9").to_pylist()
    assert len(enc) == 1 and enc[0]["end_time"] is None
    store.ingest_record(convert_text(adt("A08", "A2", "M"), "a"))
    pat = store.patients("PAT9").to_pylist()
    assert pat[0]["sex"] == "male" and pat[0]["birth_date"] == date(1950, 1, 1)
    store.ingest_record(convert_text(adt("A03", "A3", "M", disch="20261120100000+0000"), "a"))
    enc = store.encounters("PAT9").to_pylist()
    assert len(enc) == 1 and enc[0]["end_time"].day == 20
    assert enc[0]["start_time"].day == 18  # the admission the A03 did not repeat is kept
    assert store.count("patients") == 1
