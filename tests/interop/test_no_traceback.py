"""No traceback from any input: each reader either reads (quarantining what it cannot use) or
raises its own error naming the file (property-based, Hypothesis), and the defects found on real
feeds each leave a reason."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitaltwin.interop import ReadError, read_any
from vitaltwin.interop.hl7v2 import convert_text

SETTINGS = settings(
    max_examples=int(os.environ.get("VITALTWIN_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
MSH = "MSH|^~\\&|MON|ICU|VT|H|20261122083000{zone}||{type}|C1|P|2.5\r"
PID = "PID|1||P1^^^H^MR||Doe^J||19600101|F\r"


def _read(tmp_path: Path, name: str, data: bytes) -> None:
    """Read ``data`` as the file ``name``: the only exception allowed is the reader's own."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        rec = read_any(path)
    except ReadError as exc:
        assert str(path) in str(exc) or path.name in str(exc)
        return
    assert rec.values_read == rec.observations.num_rows + rec.quarantine.num_rows


hl7_text = st.lists(
    st.one_of(
        st.sampled_from(["MSH|", "PID|", "OBX|", "PV1|", "EVN|", "\r", "|", "^", "~", "\\&"]),
        st.sampled_from(["ORU^R01", "ADT^A01", "ADT^A08", "NM", "SN", "8867-4^HR^LN", "<^0.5"]),
        st.text(max_size=12),
        st.from_regex(r"\d{8,14}([+-]\d{4})?", fullmatch=True),
    ),
    max_size=40,
).map("".join)


@SETTINGS
@given(hl7_text)
def test_hl7_reader_never_raises_anything_but_its_error(tmp_path: Path, text: str) -> None:
    _read(tmp_path, "x.hl7", ("MSH|^~\\&|" + text).encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
fhir_like = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Observation", "Patient", "Bundle", "Encounter"])},
    optional={
        "status": st.sampled_from(["final", "amended", "entered-in-error", 3]),
        "subject": json_values | st.just({"reference": "urn:uuid:x"}),
        "effectiveDateTime": st.text(max_size=30) | st.just("2026-11-22T08:30:00Z"),
        "valueQuantity": json_values,
        "code": json_values,
        "entry": json_values,
        "component": json_values,
    },
)


@SETTINGS
@given(st.lists(fhir_like | json_values, max_size=6))
def test_fhir_ndjson_reader_never_raises_anything_but_its_error(
    tmp_path: Path, lines: list[object]
) -> None:
    _read(tmp_path, "x.ndjson", "\n".join(json.dumps(x) for x in lines).encode())


@SETTINGS
@given(fhir_like)
def test_fhir_json_reader_never_raises_anything_but_its_error(
    tmp_path: Path, res: dict[str, object]
) -> None:
    _read(tmp_path, "x.json", json.dumps(res).encode())


@SETTINGS
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "patient_id": st.text(max_size=5),
                "time": st.one_of(
                    st.integers(), st.floats(), st.text(max_size=25), st.just("99999999999999")
                ),
                "code": st.sampled_from(["HR", "8867-4", "SPO2", "x"]),
                "value": st.one_of(st.floats(), st.text(max_size=6)),
                "unit": st.sampled_from(["/min", "%", "bpm", ""]),
            }
        ),
        max_size=8,
    )
)
def test_stream_reader_never_raises_anything_but_its_error(
    tmp_path: Path, rows: list[dict[str, object]]
) -> None:
    _read(tmp_path, "x.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    frame = pd.DataFrame(rows, columns=["patient_id", "time", "code", "value", "unit"])
    _read(tmp_path, "x.csv", frame.to_csv(index=False).encode())


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_under_any_suffix_give_a_reason(tmp_path: Path, data: bytes) -> None:
    for name in ("x.hl7", "x.json", "x.ndjson", "x.csv", "x.psv", "x.parquet", "x.json.gz"):
        _read(tmp_path, name, data)


# -- the defects found on real feeds, one by one -------------------------------------------------


def _reasons(text: str, **kw: object) -> list[str]:
    rec = convert_text(text, "feed.hl7", received=datetime(2026, 11, 22, 12, tzinfo=UTC), **kw)  # type: ignore[arg-type]
    return [str(r) for r in rec.quarantine["reason"].to_pylist()]


def test_an_impossible_hl7_time_is_quarantined() -> None:
    msg = MSH.format(zone="", type="ORU^R01") + PID
    msg += "OBX|1|NM|8867-4^HR^LN||80|/min|||||F|||20261399250000\r"
    assert _reasons(msg) == ["observation time is not a valid HL7 time"]


def test_msh_alone_and_a_message_joined_by_spaces_leave_a_reason(tmp_path: Path) -> None:
    assert "not a parsable HL7 v2 message" in _reasons("MSH|")[0]
    spaced = MSH.format(zone="", type="ADT^A01").replace("\r", " ") + PID.replace("\r", " ")
    assert "without a PID segment" in _reasons(spaced)[0]
    # a bad message among good ones: the others are still read
    good = MSH.format(zone="", type="ADT^A01") + PID
    rec = convert_text(good + "MSH|\r" + good.replace("C1", "C2"), "feed.hl7")
    assert rec.patients.num_rows == 1 and rec.quarantine.num_rows == 1


def test_zone_less_times_use_the_zone_of_msh7_else_the_sender_zone() -> None:
    obx = "OBX|1|NM|8867-4^HR^LN||80|/min|||||F|||20261122083000\r"
    with_zone = convert_text(MSH.format(zone="+0100", type="ORU^R01") + PID + obx, "f")
    row = with_zone.observations.to_pylist()[0]
    assert row["effective_time"].hour == 7 and row["quality"] == "time zone from MSH-7"
    plain = convert_text(MSH.format(zone="", type="ORU^R01") + PID + obx, "f")
    row = plain.observations.to_pylist()[0]
    assert row["effective_time"].hour == 8 and row["quality"] == "time zone assumed (sender_tz)"


def test_future_times_and_non_finite_values_have_their_own_reasons(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_text(
        "patient_id,time,code,value,unit\n"
        "p1,2099-01-01T00:00:00Z,HR,80,/min\n"
        "p1,99999999999999,HR,80,/min\n"
        "p1,2026-11-22T08:00:00Z,HR,nan,/min\n"
        "p1,2026-11-22T08:00:00Z,HR,inf,/min\n"
        "p1,2026-11-22T08:00:00Z,HR,80,/min\n"
    )
    rec = read_any(path)
    reasons = rec.quarantine["reason"].to_pylist()
    assert "is in the future" in reasons[0]
    assert "epoch seconds" in reasons[1]
    assert reasons[2:] == ["value is not a finite number (NaN or infinity)"] * 2
    assert rec.observations.num_rows == 1


def test_a_parquet_without_a_column_and_a_folder_with_a_bad_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vitaltwin.cli import app

    pd.DataFrame({"patient_id": ["a"], "HR": [80.0]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(ReadError, match="missing column"):
        read_any(tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("patient_id,time,code,value,unit\np1,1764000000,HR,80,/min\n")
    out = CliRunner().invoke(app, ["ingest", str(tmp_path), "--store", str(tmp_path / "s")])
    said = " ".join(out.output.split())  # the terminal wraps long lines
    assert "a.parquet: missing column 'ICULOS'" in said
    assert "1 files read, 1 rejected" in said and "stored 1" in said
    assert out.exit_code == 1  # something was rejected: the exit status says so


def test_repeated_delimiters_are_a_reason_not_an_assertion(tmp_path: Path) -> None:
    """python-hl7 asserts on repeated encoding characters (found by the property test)."""
    for text in ("MSH|887|X\rPID|1\r", "FHS|^^~\\&\rMSH|^~\\&|A\r", "MSH|^~|&|A\r"):
        _read(tmp_path, "bad.hl7", text.encode())
    rec = convert_text("MSH|887|X\rPID|1\r", "m")
    assert "invalid delimiters" in rec.quarantine.column("reason")[0].as_py()
