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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vitaltwin.data import Record
from vitaltwin.data.schema import COMPARATORS, METHODS, OBSERVATIONS, STATUSES, UTC_TS
from vitaltwin.data.vocabulary import CODES, LOCAL_CODES, LOCAL_METHODS, UCUM_ALIASES, generic
from vitaltwin.interop._errors import ReadError
from vitaltwin.interop._records import FUTURE_TOLERANCE, Records, json_object

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
    plain, taken, rest = _columnar(records, acc)
    items = (
        (i, r if isinstance(r, dict) else f"not a JSON object ({type(r).__name__})")
        for i, r in ((int(i) + 1, records[i]) for i in rest)
    )
    _convert(acc, items)
    out = acc.converted()
    if plain.num_rows == 0:
        return out
    obs = pa.concat_tables([plain, out.observations])
    if out.observations.num_rows:  # back in the order sent
        lines = [int(p[5:]) for p in out.observations.column("position").to_pylist()]
        sent = np.concatenate([taken, np.asarray(lines) - 1])
        obs = obs.take(np.argsort(sent, kind="stable"))
    return Record(obs, out.quarantine, out.patients, out.labels, out.values_read + plain.num_rows)


_OPTIONAL = ("device", "comparator", "status", "method")


def _columnar(records: Sequence[object], acc: Records) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The records that need no per-record decision, converted column by column: a monitor
    gateway's batch (thousands of values in a few codes, canonical units and one or two times)
    costs a few list passes instead of one Python round per value. A record takes this path
    only when every check of :func:`_convert` is certain to pass for it (an object with keys of
    the expected types, a known code already in its canonical unit, a plausible finite number,
    an ISO 8601 time not in the future, valid optional fields); every other record is left, by
    index, to :func:`_convert`, which decides it and gives the reason (the two paths' output is
    the same record, tested on mixed batches). Returns (the table, the indices it holds, the
    indices left)."""
    n = len(records)
    empty: dict[str, Any] = {}
    recs = [r if type(r) is dict else empty for r in records]
    pid = [r.get("patient_id") for r in recs]
    raw_t = [r.get("time") for r in recs]
    label = [r.get("code") for r in recs]
    raw_v = [r.get("value") for r in recs]
    raw_u = [r.get("unit") for r in recs]
    ok = np.fromiter((type(p) is str and p != "" for p in pid), bool, n)
    # numbers only (not bool, not text); an int beyond a double's range is decided per record
    value = np.fromiter((v if type(v) is float or (type(v) is int and abs(v) < 1e300) else np.nan
                         for v in raw_v), float, n)  # fmt: skip
    ok &= np.isfinite(value)
    # few distinct codes, units and times per batch: each resolved once, then indexed
    late = acc.received + FUTURE_TOLERANCE
    key_t, t_idx = _factor(raw_t)
    parsed = [_time(k) if type(k) is str and k else None for k in key_t]
    ok &= np.asarray([t is not None and t <= late for t in parsed] + [False])[t_idx]
    key_l, l_idx = _factor(label)
    key_u, u_idx = _factor(raw_u)
    pairs, cu_idx = np.unique(l_idx * (len(key_u) + 1) + u_idx, return_inverse=True)
    low, high = np.full(len(pairs), np.inf), np.full(len(pairs), -np.inf)
    resolved: list[tuple[str, str, str | None]] = []
    for j, pair in enumerate(pairs.tolist()):
        resolved.append(("", "", None))
        li, ui = divmod(pair, len(key_u) + 1)
        if li == len(key_l) or ui == len(key_u):
            continue
        lab, unit = key_l[li], key_u[ui]
        if type(lab) is not str or type(unit) is not str or not unit:
            continue
        upper = lab.upper()
        code, stated = generic(LOCAL_CODES.get(upper, lab))
        entry = CODES.get(code)
        if entry is None or UCUM_ALIASES.get(unit.lower(), unit) != entry.unit:
            continue  # unknown code or a unit to convert: per record
        low[j], high[j] = entry.low, entry.high
        resolved[j] = (code, entry.unit, LOCAL_METHODS.get(upper) or stated)
    ok &= (low[cu_idx] <= value) & (value <= high[cu_idx])
    present = set().union(*recs)
    extra = {k: [r.get(k) for r in recs] for k in _OPTIONAL if k in present}
    if "comparator" in extra:
        ok &= np.fromiter((v is None or v in COMPARATORS for v in extra["comparator"]), bool, n)
    if "status" in extra:
        ok &= np.fromiter((v is None or (v in STATUSES and v != "superseded")
                           for v in extra["status"]), bool, n)  # fmt: skip
    if "method" in extra:
        ok &= np.fromiter((v is None or v in METHODS for v in extra["method"]), bool, n)
    if "device" in extra:
        ok &= np.fromiter((v is None or type(v) is str for v in extra["device"]), bool, n)
    take = np.flatnonzero(ok)
    rest = np.flatnonzero(~ok)
    if take.size == 0:
        return OBSERVATIONS.empty_table(), take, rest
    cu = cu_idx[take]
    codes = pa.array([c for c, _, _ in resolved]).take(cu)
    units = pa.array([u for _, u, _ in resolved]).take(cu)
    method = pa.array([m for _, _, m in resolved], pa.string()).take(cu)
    if "method" in extra:  # a stated method wins over the label's
        given = pa.array([extra["method"][i] for i in take], pa.string())
        method = pc.coalesce(given, method)
    times = pa.array(parsed, UTC_TS).take(t_idx[take])

    def col(k: str, default: str | None) -> pa.Array:
        if k not in extra:
            return pa.nulls(take.size, pa.string()) if default is None else pa.array(
                [default] * take.size, pa.string())  # fmt: skip
        return pa.array([extra[k][i] or default for i in take], pa.string())

    m = take.size
    table = pa.Table.from_arrays(
        [
            pa.array([pid[i] for i in take], pa.string()),
            times,
            codes,
            pa.array(value[take]),
            units,
            pa.array([acc.source] * m, pa.string()),
            pc.binary_join_element_wise("line ", pc.cast(pa.array(take + 1), pa.string()), ""),
            col("device", None),
            pa.array([acc.received] * m, UTC_TS),
            pa.nulls(m, pa.string()),
            col("comparator", "="),
            col("status", "final"),
            method,
        ],
        schema=OBSERVATIONS,
    )
    return table, take, rest


def _factor(values: list[Any]) -> tuple[list[Any], np.ndarray]:
    """(distinct values, each value's index into them; missing values index one past the end).
    Values equal as numbers (1, 1.0, True) share an entry: callers use only text entries."""
    try:
        idx, keys = pd.factorize(pd.Series(values, dtype=object))
    except TypeError:  # an unhashable value (a list, an object): not text, so missing
        idx, keys = pd.factorize(pd.Series([v if type(v) is str else None for v in values]))
    idx[idx < 0] = len(keys)
    return list(keys), idx


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
        except (TypeError, ValueError, OverflowError):  # an int beyond a double
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
        device = rec.get("device")
        if device is not None and type(device) not in (str, int):
            reject(line, "device", "device is not a string or a number", device)
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
            device=str(device) if device not in (None, "") else None,
            comparator=comparator,
            status=status,
            method=method,
        )
