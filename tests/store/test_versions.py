"""Corrections, retractions and preliminary results are versions, not overwrites; censored values
keep their comparator. On both backends, from HL7 v2 and FHIR as the feeds send them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from vitaltwin.data.versions import resolve
from vitaltwin.interop.fhir import convert_file
from vitaltwin.interop.hl7v2 import convert_text
from vitaltwin.store import Store

MSH = "MSH|^~\\&|MON|ICU|VT|H|20261122083000+0000||ORU^R01|{cid}|P|2.5\r"
PID = "PID|1||PAT42^^^H^MR||Doe^Jane||19600101|F\r"


def obx(value: str, status: str, vtype: str = "NM", code: str = "8867-4^HR^LN") -> str:
    return f"OBX|1|{vtype}|{code}||{value}|/min|||||{status}|||20261122080000+0000\r"


def feed(store: Store, cid: str, *segments: str) -> None:
    store.ingest_record(convert_text(MSH.format(cid=cid) + PID + "".join(segments), cid))


def hr(store: Store, current: bool = True) -> list[tuple[float, str]]:
    t = store.observations("PAT42", loinc="8867-4", current=current)
    return sorted(zip(t["value"].to_pylist(), t["status"].to_pylist(), strict=True))


def test_a_correction_supersedes_the_wrong_value_and_both_stay_for_audit(store: Store) -> None:
    feed(store, "M1", obx("250", "F"))
    feed(store, "M2", obx("84", "C"))
    assert hr(store) == [(84.0, "corrected")]
    assert hr(store, current=False) == [(84.0, "corrected"), (250.0, "superseded")]


def test_w_retracts_and_final_replaces_preliminary(store: Store) -> None:
    feed(store, "M1", obx("90", "P"))
    feed(store, "M2", obx("92", "F"))
    assert hr(store) == [(92.0, "final")]
    feed(store, "M3", obx("92", "W"))
    assert hr(store) == []
    assert hr(store, current=False) == [
        (90.0, "superseded"),
        (92.0, "entered-in-error"),
    ]  # the retraction row and the retracted value are the same key: stored once


def test_a_correction_in_the_same_message_as_the_original(store: Store) -> None:
    feed(store, "M1", obx("250", "F"), obx("84", "C"))
    assert hr(store) == [(84.0, "corrected")]


def test_censored_values_keep_their_comparator_and_structures_are_not_numbers(
    store: Store,
) -> None:
    lact = "2524-7^Lactate^LN"
    rec = convert_text(
        MSH.format(cid="L1")
        + PID
        + obx("<^0.5", "F", "SN", lact).replace("/min", "mmol/L")
        + obx(">^15", "F", "SN", lact).replace("/min", "mmol/L").replace("0800", "0900")
        + obx("1^:^2", "F", "SN", "2160-0^Creatinine^LN"),
        "L1",
    )
    store.ingest_record(rec)
    t = store.observations("PAT42", loinc="2524-7").to_pandas()
    assert list(zip(t["comparator"], t["value"], strict=True)) == [("<", 0.5), (">", 15.0)]
    assert rec.quarantine["reason"].to_pylist() == ["SN value is a ratio, not one number"]


def test_fhir_amended_entered_in_error_and_comparator(store: Store, tmp_path: Path) -> None:
    def obs(status: str, value: float, comparator: str | None = None) -> dict[str, object]:
        q: dict[str, object] = {"value": value, "unit": "mmol/L", "code": "mmol/L"}
        if comparator:
            q["comparator"] = comparator
        return {
            "resourceType": "Observation",
            "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "2524-7"}]},
            "subject": {"reference": "Patient/PAT42"},
            "effectiveDateTime": "2026-11-22T08:00:00Z",
            "valueQuantity": q,
        }

    def send(*resources: dict[str, object]) -> None:
        path = tmp_path / "x.ndjson"
        path.write_text("\n".join(json.dumps(r) for r in resources))
        store.ingest_record(convert_file(path))

    send(obs("final", 6.1))
    send(obs("amended", 2.1))
    lac = store.observations("PAT42", loinc="2524-7")
    assert lac["value"].to_pylist() == [2.1] and lac["status"].to_pylist() == ["corrected"]
    send(obs("entered-in-error", 2.1))
    assert store.observations("PAT42", loinc="2524-7").num_rows == 0
    send(obs("final", 0.3, "<"))
    lac = store.observations("PAT42", loinc="2524-7")
    assert lac["comparator"].to_pylist() == ["<"] and lac["value"].to_pylist() == [0.3]


def test_resolution_rules() -> None:
    def run(*versions: tuple[float, str], stored: int = 0) -> list[str]:
        rows = pd.DataFrame(
            {
                "patient_id": "p",
                "loinc": "x",
                "effective_time": 0,
                "value": [v for v, _ in versions],
                "status": [s for _, s in versions],
            }
        )
        arriving = np.arange(len(rows)) >= stored
        return list(resolve(rows, arriving))

    # two monitors' final values both stay; a correction replaces both
    assert run((80, "final"), (82, "final")) == ["final", "final"]
    assert run((80, "final"), (82, "final"), (81, "corrected")) == [
        "superseded",
        "superseded",
        "corrected",
    ]
    # a retraction names its value; without a match it retracts every current value
    assert run((80, "final"), (82, "final"), (82, "entered-in-error")) == [
        "final",
        "entered-in-error",
        "entered-in-error",
    ]
    assert run((80, "final"), (99, "entered-in-error")) == ["entered-in-error"] * 2
    # stored rows are not re-applied: an old retraction does not retract again
    assert run((80, "final"), (82, "entered-in-error"), (85, "final"), stored=2) == [
        "final",
        "entered-in-error",
        "final",
    ]


def test_the_twin_and_the_cohort_see_current_exact_values_only(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from vitaltwin.data.versions import current
    from vitaltwin.interop import read_any
    from vitaltwin.physiology import PatientProfile
    from vitaltwin.twin import PatientTwin

    path = tmp_path / "monitor.csv"
    path.write_text(
        "patient_id,time,code,value,unit,comparator,status\n"
        "p1,2026-11-22T08:01:00Z,HR,250,/min,,final\n"
        "p1,2026-11-22T08:01:00Z,HR,84,/min,,corrected\n"
        "p1,2026-11-22T08:02:00Z,NBP-M,40,mm[Hg],<,final\n"
        "p1,2026-11-22T08:03:00Z,SPO2,95,%,,preliminary\n"
        "p1,2026-11-22T08:03:00Z,SPO2,95,%,,entered-in-error\n"
    )
    rec = read_any(path)
    now = current(rec.observations)
    assert now["value"].to_pylist() == [84.0, 40.0]  # the correction and the censored MAP
    twin = PatientTwin("p1", PatientProfile(), datetime(2026, 11, 22, 8, tzinfo=UTC), n_members=8)
    reports = twin.assimilate(rec.observations)
    # 250 superseded, MAP < 40 censored, SpO2 retracted: only the corrected HR is used
    assert [r.used for r in reports] == [("HR",)]
