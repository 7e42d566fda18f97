"""ADT events change the record and keep its history: A08 updates demographics (every version
kept), A03 ends the encounter, A02 moves it, A11 cancels it, A13 reopens it, A40 merges two
patients; on both stores."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from vitaltwin.interop.hl7v2 import convert_text
from vitaltwin.store import Store

PV1 = "PV1|1|I|{loc}|||{prior}|||||||||||||{visit}|||||||||||||||||||||||||{admit}|{disch}\r"


def adt(
    event: str,
    cid: str,
    sex: str = "F",
    admit: str = "",
    disch: str = "",
    loc: str = "ICU^1^1",
    prior: str = "",
    visit: str = "V77",
    pid: str = "PAT9",
    evn: str = "",
    extra: str = "",
) -> str:
    return (
        f"MSH|^~\\&|ADT|H|VT|H|20261120100000+0000||ADT^{event}|{cid}|P|2.5\r"
        + (f"EVN|{event}|{evn}\r" if evn else "")
        + f"PID|1||{pid}^^^H^MR||Roe^Ann||19500101|{sex}\r"
        + extra
        + PV1.format(loc=loc, prior=prior, visit=visit, admit=admit, disch=disch)
    )


def ingest(store: Store, text: str, source: str = "a") -> None:
    got = store.ingest_record(convert_text(text, source))
    assert got.read == got.stored + got.quarantined + got.duplicates


def test_a08_updates_demographics_and_a03_ends_the_encounter(store: Store) -> None:
    ingest(store, adt("A01", "A1", "F", admit="20261118080000+0000"))
    enc = store.encounters("PAT9").to_pylist()
    assert len(enc) == 1 and enc[0]["end_time"] is None and enc[0]["status"] == "in-progress"
    ingest(store, adt("A08", "A2", "M"))
    pat = store.patients("PAT9").to_pylist()
    assert pat[0]["sex"] == "male" and pat[0]["birth_date"] == date(1950, 1, 1)
    ingest(store, adt("A03", "A3", "M", disch="20261120100000+0000"))
    enc = store.encounters("PAT9").to_pylist()
    assert len(enc) == 1 and enc[0]["end_time"].day == 20 and enc[0]["status"] == "finished"
    assert enc[0]["start_time"].day == 18  # the admission the A03 did not repeat is kept
    assert store.count("patients") == 1


def test_every_demographic_version_is_kept_in_order(store: Store) -> None:
    ingest(store, adt("A01", "A1", "F", evn="20261118080000+0000"))
    ingest(store, adt("A08", "A2", "M", evn="20261119080000+0000"))
    ingest(store, adt("A08", "A3", "F", evn="20261119090000+0000"))
    assert store.patients("PAT9").column("sex").to_pylist() == ["female"]
    events = store.patient_events("PAT9").to_pylist()
    assert [(e["event"], e["sex"]) for e in events] == [
        ("A01", "female"),
        ("A08", "male"),
        ("A08", "female"),
    ]
    assert events[1]["event_time"] == datetime(2026, 11, 19, 8, tzinfo=UTC)  # EVN-2
    ingest(store, adt("A08", "A3", "F", evn="20261119090000+0000"))  # the same message again
    assert store.patient_events("PAT9").num_rows == 3


def test_a02_transfers_and_keeps_where_the_patient_was(store: Store) -> None:
    ingest(store, adt("A01", "A1", admit="20261118080000+0000", loc="ED^4"))
    ingest(store, adt("A02", "A2", loc="ICU^3^B", prior="ED^4"))
    enc = store.encounters("PAT9").to_pylist()
    assert enc[0]["location"] == "ICU^3^B" and enc[0]["status"] == "in-progress"
    assert enc[0]["start_time"].day == 18
    moves = store.patient_events("PAT9").to_pylist()
    assert [(m["event"], m["location"], m["prior_location"]) for m in moves] == [
        ("A01", "ED^4", None),
        ("A02", "ICU^3^B", "ED^4"),
    ]


def test_a11_cancels_the_admission(store: Store) -> None:
    ingest(store, adt("A01", "A1", admit="20261118080000+0000"))
    ingest(store, adt("A11", "A2"))
    assert store.encounters("PAT9").num_rows == 0  # the twin and risk never see it
    gone = store.encounters("PAT9", current=False).to_pylist()
    assert gone[0]["status"] == "cancelled" and gone[0]["start_time"].day == 18


@pytest.mark.parametrize("one_file", [False, True])
def test_a13_cancels_the_discharge(store: Store, one_file: bool) -> None:
    messages = [
        adt("A01", "A1", admit="20261118080000+0000"),
        adt("A03", "A2", disch="20261120100000+0000"),
        adt("A13", "A3"),
    ]
    if one_file:
        ingest(store, "".join(messages))
    else:
        for m in messages:
            ingest(store, m)
    enc = store.encounters("PAT9").to_pylist()
    assert enc[0]["end_time"] is None and enc[0]["status"] == "in-progress"
    assert enc[0]["start_time"].day == 18


def test_a_change_to_an_unnamed_stay_is_quarantined_not_guessed(store: Store) -> None:
    ingest(store, adt("A03", "A1", disch="20261120100000+0000", visit=""))
    q = store.table("quarantine").to_pylist()
    assert q[0]["field"] == "PV1-19" and "which stay" in q[0]["reason"]
    assert store.encounters("PAT9").num_rows == 0
    assert store.patient_events("PAT9").column("event").to_pylist() == ["A03"]


def test_a40_merges_the_prior_patient_into_the_surviving_one(store: Store) -> None:
    oru = (
        "MSH|^~\\&|MON|ICU|VT|H|20261122083000+0000||ORU^R01|O1|P|2.5\r"
        "PID|1||TMP1^^^H^MR\r"
        "OBX|1|NM|8867-4^HR^LN||88|/min|||||F|||20261122083000+0000\r"
    )
    ingest(store, adt("A01", "A0", pid="TMP1", visit="V1", admit="20261122080000+0000"))
    ingest(store, oru, "o")
    ingest(store, adt("A01", "A1", pid="PAT9", visit="V2", admit="20261118080000+0000"))
    merge = adt("A40", "A2", pid="PAT9", visit="", extra="MRG|TMP1^^^H^MR\r")
    ingest(store, merge)
    obs = store.observations("PAT9").to_pylist()
    assert [(o["patient_id"], o["value"]) for o in obs] == [("PAT9", 88.0)]
    assert sorted(store.encounters("PAT9").column("encounter_id").to_pylist()) == ["V1", "V2"]
    assert store.patients().column("patient_id").to_pylist() == ["PAT9"]
    retired = store.patients("TMP1", current=False).to_pylist()[0]
    assert retired["merged_into"] == "PAT9"
    assert store.observations().column("patient_id").to_pylist() == ["PAT9"]
    # a merge without MRG-1 is quarantined with its reason
    ingest(store, adt("A40", "A3", pid="PAT9", visit=""))
    assert "MRG-1" in store.table("quarantine").column("field").to_pylist()
    # merges chain: PAT9 merged on into PAT10 takes TMP1's rows along
    ingest(store, adt("A40", "A4", pid="PAT10", visit="", extra="MRG|PAT9\r"))
    assert store.observations("PAT10").column("patient_id").to_pylist() == ["PAT10"]
    assert store.merged() == {"TMP1": "PAT10", "PAT9": "PAT10"}
