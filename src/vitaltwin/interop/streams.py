"""CSV and JSON-lines streams from wearables and bedside monitors -> canonical record.

One record per row (CSV with a header) or per line (JSON lines), in long form:

    patient_id, time, code, value, unit[, device, comparator, status, method]

``time`` is ISO 8601 with a time zone, or Unix epoch seconds (UTC). ``code`` is a LOINC code
or a local label of :data:`vitaltwin.interop.hl7v2.LOCAL_CODES` (``HR``, ``SPO2``, ...);
``unit`` is UCUM (or a common alias such as ``bpm``, ``degF``, ``mg/dl``). Values are converted
to the code's canonical unit and checked against its plausibility range; every row that cannot
be stored is quarantined with its line number and the reason. The optional ``comparator``
(``<``, ``>=``, ...: a censored value), ``status`` (``preliminary``, ``corrected``,
``entered-in-error``) and ``method`` (:data:`vitaltwin.data.schema.METHODS`) default to an
exact, final value of unstated method.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vitaltwin.data import Record
from vitaltwin.data.schema import COMPARATORS, METHODS, STATUSES
from vitaltwin.data.vocabulary import CODES, LOCAL_CODES, LOCAL_METHODS, UCUM_ALIASES, generic
from vitaltwin.interop._errors import ReadError
from vitaltwin.interop._records import Records, json_object

REQUIRED = ("patient_id", "time", "code", "value", "unit")


class StreamError(ReadError):
    """A stream file that cannot be read at all (names the file and the problem)."""


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record or why it is not one), reading the file lazily."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            if path.suffix in (".jsonl", ".ndjson"):
                for i, line in enumerate(fh, start=1):
                    if line.strip():
                        yield i, json_object(line)
                return
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise StreamError(f"{path}: header lacks columns {missing}")
            for i, row in enumerate(reader, start=2):
                yield i, dict(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StreamError(f"{path}: cannot read ({exc})") from None


def _time(raw: object) -> datetime | None:
    if isinstance(raw, int | float) or (isinstance(raw, str) and raw.replace(".", "").isdigit()):
        try:
            return datetime.fromtimestamp(float(raw), tz=UTC)
        except (ValueError, OverflowError, OSError):  # beyond year 9999
            return None
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo is not None else None


def convert_stream(path: Path, received: datetime | None = None) -> Record:
    """Read and convert one CSV or JSON-lines stream file."""
    acc = Records(str(path), received or datetime.now(UTC))
    _convert(acc, _records(path))
    return acc.converted()


def convert_records(
    records: Sequence[object], source: str, received: datetime | None = None
) -> Record:
    """Convert records already parsed (an API request's JSON list, a device gateway's MQTT
    message) with the same rules as a stream file; positions count items from 1."""
    acc = Records(source, received or datetime.now(UTC))
    items = (
        (i, r if isinstance(r, dict) else f"not a JSON object ({type(r).__name__})")
        for i, r in enumerate(records, start=1)
    )
    _convert(acc, items)
    return acc.converted()


def stream_chunks(
    path: Path, rows: int = 100_000, received: datetime | None = None
) -> Iterator[Record]:
    """:func:`convert_stream` ``rows`` lines at a time (memory bounded by a chunk)."""
    when = received or datetime.now(UTC)
    items = _records(path)
    while chunk := list(itertools.islice(items, rows)):
        acc = Records(str(path), when)
        _convert(acc, chunk)
        yield acc.converted()


def _convert(acc: Records, items: Iterable[tuple[int, dict[str, Any] | str]]) -> None:
    def reject(line: int, fld: str, reason: str, raw: object = None) -> None:
        acc.bad(f"line {line}", fld, reason, raw)

    # a batch repeats a few codes, units and times: each is resolved once
    codes: dict[str, tuple[str, str | None, str | None]] = {}
    times: dict[object, datetime | None] = {}
    units: dict[str, str] = {}
    for line, rec in items:
        if isinstance(rec, str):
            reject(line, "line", rec)
            continue
        missing = [k for k in REQUIRED if rec.get(k) in (None, "")]
        if missing:
            reject(line, missing[0], f"missing {', '.join(missing)}")
            continue
        label = str(rec["code"])
        if label not in codes:
            upper = label.upper()
            codes[label] = (*generic(LOCAL_CODES.get(upper, label)), LOCAL_METHODS.get(upper))
        code, stated, local_method = codes[label]
        raw_time = rec["time"]
        key = raw_time if isinstance(raw_time, str | int | float) else repr(raw_time)
        if key not in times:
            times[key] = _time(raw_time)
        t = times[key]
        if t is None:
            reject(
                line, "time", "time is not ISO 8601 with a time zone or epoch seconds", rec["time"]
            )
            continue
        try:
            value = float(rec["value"])
        except (TypeError, ValueError):
            reject(line, "value", "value is not a number", rec["value"])
            continue
        unit = str(rec["unit"])
        if unit not in units:
            units[unit] = UCUM_ALIASES.get(unit.lower(), unit)
        unit = units[unit]
        if code not in CODES:
            reject(line, "code", f"code {rec['code']!r} is not a known LOINC code or label")
            continue
        comparator = str(rec.get("comparator") or "=")
        status = str(rec.get("status") or "final")
        method = rec.get("method") or local_method or stated
        if comparator not in COMPARATORS:
            reject(line, "comparator", "comparator is not =, <, <=, > or >=", comparator)
            continue
        if status not in STATUSES or status == "superseded":
            reject(
                line,
                "status",
                "status is not final, preliminary, corrected or entered-in-error",
                status,
            )
            continue
        if method is not None and method not in METHODS:
            reject(line, "method", f"method is not one of {', '.join(METHODS)}", method)
            continue
        got = acc.checked(code, value, unit, f"line {line}", "unit", "value")
        if got is None:
            continue
        value, canon = got
        acc.add(
            str(rec["patient_id"]),
            t,
            code,
            value,
            canon,
            f"line {line}",
            device=rec.get("device") or None,
            comparator=comparator,
            status=status,
            method=method,
        )
