"""CSV and JSON-lines streams from wearables and bedside monitors -> canonical record.

One record per row (CSV with a header) or per line (JSON lines), in long form:

    patient_id, time, code, value, unit[, device]

``time`` is ISO 8601 with a time zone, or Unix epoch seconds (UTC). ``code`` is a LOINC code
or a local label of :data:`vitaltwin.interop.hl7v2.LOCAL_CODES` (``HR``, ``SPO2``, ...);
``unit`` is UCUM (or a common alias such as ``bpm``, ``degF``, ``mg/dl``). Values are converted
to the code's canonical unit and checked against its plausibility range; every row that cannot
be stored is quarantined with its line number and the reason.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from vitaltwin.data.schema import LABELS, PATIENTS, QUARANTINE, observations_table
from vitaltwin.data.units import UnitError, to_canonical
from vitaltwin.interop.fhir import CANONICAL
from vitaltwin.interop.hl7v2 import LOCAL_CODES, UCUM_ALIASES
from vitaltwin.interop.physionet import Converted

REQUIRED = ("patient_id", "time", "code", "value", "unit")


class StreamError(ValueError):
    """A stream file that cannot be read at all (names the file and the problem)."""


def _records(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StreamError(f"{path}: cannot read ({exc})") from None
    if path.suffix in (".jsonl", ".ndjson"):
        out: list[tuple[int, dict[str, Any] | str]] = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    out.append((i, rec if isinstance(rec, dict) else "not a JSON object"))
                except json.JSONDecodeError as exc:
                    out.append((i, f"not JSON ({exc.msg})"))
        return out
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise StreamError(f"{path}: header lacks columns {missing}")
    return [(i, dict(row)) for i, row in enumerate(reader, start=2)]


def _time(raw: object) -> datetime | None:
    if isinstance(raw, int | float) or (isinstance(raw, str) and raw.replace(".", "").isdigit()):
        return datetime.fromtimestamp(float(raw), tz=UTC)
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo is not None else None


def convert_stream(path: Path, received: datetime | None = None) -> Converted:
    """Read and convert one CSV or JSON-lines stream file."""
    received = received or datetime.now(UTC)
    source = str(path)
    obs: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []

    def reject(line: int, fld: str, reason: str, raw: object = None) -> None:
        bad.append(
            {
                "source": source,
                "position": f"line {line}",
                "field": fld,
                "raw_value": None if raw is None else str(raw)[:200],
                "reason": reason,
                "received_time": received,
            }
        )

    for line, rec in _records(path):
        if isinstance(rec, str):
            reject(line, "line", rec)
            continue
        missing = [k for k in REQUIRED if rec.get(k) in (None, "")]
        if missing:
            reject(line, missing[0], f"missing {', '.join(missing)}")
            continue
        code = str(rec["code"])
        code = LOCAL_CODES.get(code.upper(), code)
        t = _time(rec["time"])
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
        unit = UCUM_ALIASES.get(unit.lower(), unit)
        if code not in CANONICAL:
            reject(line, "code", f"code {rec['code']!r} is not a known LOINC code or label")
            continue
        canon, lo, hi = CANONICAL[code]
        try:
            value = to_canonical(value, unit, canon, code)
        except UnitError as exc:
            reject(line, "unit", str(exc), rec["unit"])
            continue
        if not lo <= value <= hi:
            reject(line, "value", f"outside plausible range [{lo:g}, {hi:g}] {canon}", rec["value"])
            continue
        obs.append(
            {
                "patient_id": str(rec["patient_id"]),
                "effective_time": t,
                "loinc": code,
                "value": value,
                "unit": canon,
                "position": f"line {line}",
                "device": rec.get("device") or None,
            }
        )
    df = pd.DataFrame(
        obs,
        columns=["patient_id", "effective_time", "loinc", "value", "unit", "position", "device"],
    )
    n = len(df)
    observations = observations_table(
        {
            "patient_id": df["patient_id"].tolist(),
            "effective_time": pd.to_datetime(df["effective_time"], utc=True),
            "loinc": df["loinc"].tolist(),
            "value": df["value"].astype(float).tolist(),
            "unit": df["unit"].tolist(),
            "source": [source] * n,
            "position": df["position"].tolist(),
            "device": df["device"].tolist(),
            "received_time": [received] * n,
            "quality": [None] * n,
        }
    )
    return Converted(
        observations,
        pa.Table.from_pylist(bad, schema=QUARANTINE),
        PATIENTS.empty_table(),
        LABELS.empty_table(),
        n + len(bad),
    )
