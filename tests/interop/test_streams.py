"""CSV and JSON-lines device streams: converted, checked, and every bad row accounted for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitaltwin.interop.streams import StreamError, convert_stream


def test_csv_stream_with_aliases_units_and_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "watch.csv"
    p.write_text(
        "patient_id,time,code,value,unit,device\n"
        "p1,2026-11-22T08:00:00+01:00,HR,88,bpm,watch-3\n"
        "p1,1795334400,TEMP,100.4,degF,watch-3\n"
        "p1,2026-11-22T08:00:02,HR,90,bpm,watch-3\n"  # no time zone
        "p1,2026-11-22T08:00:03Z,HR,500,bpm,watch-3\n"  # implausible
        "p1,2026-11-22T08:00:04Z,XYZ,1,1,watch-3\n"  # unknown code
        "p1,2026-11-22T08:00:05Z,HR,fast,bpm,watch-3\n"
    )
    c = convert_stream(p)
    rows = c.observations.to_pylist()
    assert [r["loinc"] for r in rows] == ["8867-4", "8310-5"]
    assert rows[0]["effective_time"].hour == 7 and rows[0]["device"] == "watch-3"
    assert rows[1]["value"] == pytest.approx(38.0)
    q = {r["position"]: r["reason"] for r in c.quarantine.to_pylist()}
    assert "time zone" in q["line 4"] and "plausible" in q["line 5"]
    assert "not a known LOINC" in q["line 6"] and "not a number" in q["line 7"]
    assert c.values_read == 6


def test_jsonl_stream_and_malformed_lines(tmp_path: Path) -> None:
    p = tmp_path / "monitor.jsonl"
    ok = {
        "patient_id": "p2",
        "time": "2026-11-22T08:00:00Z",
        "code": "59408-5",
        "value": 96,
        "unit": "%",
    }
    p.write_text(json.dumps(ok) + "\n{broken\n" + json.dumps({"patient_id": "p2"}) + "\n")
    c = convert_stream(p)
    assert c.observations.num_rows == 1
    reasons = [r["reason"] for r in c.quarantine.to_pylist()]
    assert any("not JSON" in r for r in reasons) and any("missing" in r for r in reasons)


def test_csv_without_required_columns_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(StreamError, match=r"x\.csv: header lacks columns"):
        convert_stream(p)
