"""CSV and JSON-lines device streams: converted, checked, and every bad row accounted for."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vitaltwin.data import Record
from vitaltwin.interop._records import Records
from vitaltwin.interop.streams import (
    _OPTIONAL,
    StreamError,
    _columnar,
    _convert,
    convert_records,
    convert_stream,
)


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


def _one_by_one(records: list[object], source: str, received: datetime) -> Record:
    """What the per-record path alone makes of ``records`` (the reference)."""
    acc = Records(source, received)
    _convert(acc, ((i, r if isinstance(r, dict) else f"not a JSON object ({type(r).__name__})")
                   for i, r in enumerate(records, start=1)))  # fmt: skip
    return acc.converted()


def test_columnar_records_match_the_per_record_path() -> None:
    """Parsed records (an API request, an MQTT message) convert column by column where no
    per-record decision is needed; on batches mixing good records with every kind of bad one,
    the result (observations in the order sent, quarantine with reasons, counts) is the per-record
    path's, and most good records took the columnar path."""
    now = datetime(2026, 12, 4, 7, tzinfo=UTC)
    good: dict[str, list[object]] = {
        "patient_id": ["p1", "p2", "p3"],
        "time": [now.isoformat(), "2026-12-04T06:59:59Z", "2026-12-04T07:00:00+01:00"],
        "code": ["HR", "SPO2", "8867-4", "ABP-M", "76534-7"],
        "value": [80.0, 97, 60.5],
        "unit": ["/min", "%", "mm[Hg]", "bpm"],
        "device": [None, "mon-1", "", 5],
        "comparator": [None, "=", "<"],
        "status": [None, "final", "entered-in-error"],
        "method": [None, "invasive-arterial", "non-invasive-cuff", "ecg"],
    }
    bad: dict[str, list[object]] = {
        "patient_id": ["", None, 7, [1]],
        "time": ["bad", None, 1.7e9, "2026-12-04T07:00:00", "2026-12-04T09:00:00Z", {"a": 1}],
        "code": ["nope", None, 3, [1], "hr"],
        "value": [1e9, float("nan"), "80", True, None, -5.0, 10**400],
        "unit": ["mmHg", "kPa", "", None, "furlong", 1],
        "device": [{"a": 1}, 1.5],
        "comparator": ["bad", ""],
        "status": ["superseded", "x", ""],
        "method": ["bad", "", 3],
    }
    rng = random.Random(2026)
    fast = 0
    for _ in range(200):
        records: list[object] = []
        for _ in range(rng.randint(0, 120)):
            if rng.random() < 0.02:
                records.append(rng.choice([[1], "x", None, 3.0]))
                continue
            r: dict[str, object] = {}
            for k in good:
                if (k in _OPTIONAL and rng.random() < 0.6) or rng.random() < 0.01:
                    continue
                r[k] = rng.choice(bad[k] if rng.random() < 0.04 else good[k])
            records.append(r)
        got = convert_records(records, "api", now)
        ref = _one_by_one(records, "api", now)
        for name in ("observations", "quarantine", "patients"):
            assert getattr(got, name).equals(getattr(ref, name)), name
        assert got.values_read == ref.values_read == len(records)
        fast += _columnar(records, Records("api", now))[1].size
    assert fast > 2000  # of about 12,000 records, many with a code and unit that do not match
