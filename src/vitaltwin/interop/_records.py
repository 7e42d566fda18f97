"""What an adapter collects while reading one input: observations, quarantine entries and
patients, turned into canonical tables at the end (shared by the FHIR, HL7 v2 and stream
adapters)."""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from vitaltwin.data import Record
from vitaltwin.data.schema import LABELS, OBSERVATIONS, PATIENTS, QUARANTINE
from vitaltwin.data.units import UnitError, to_canonical
from vitaltwin.data.vocabulary import CODES


def json_object(line: str | bytes) -> dict[str, Any] | str:
    """One line of NDJSON / JSON lines as an object, or why it is not one (to quarantine).

    Parsed by orjson (strict RFC 8259, several times faster than the standard library; it
    reads integers beyond 64 bits as floats); a line orjson refuses is parsed again by the
    standard library, which decides: it also reads ``NaN``/``Infinity`` (quarantined later with
    their own reason), and its message names the column."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        value, error = _stdlib_json(line)
        if error:
            return error
    if not isinstance(value, dict):
        return f"not a JSON object ({type(value).__name__})"
    return value


def _stdlib_json(line: str | bytes) -> tuple[object, str]:
    """(value, "") or (None, why it is not JSON)."""
    try:
        return json.loads(line), ""
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = getattr(exc, "msg", "nested too deeply")
        return None, f"not JSON ({msg} at column {getattr(exc, 'colno', 1)})"
    except UnicodeDecodeError as exc:
        return None, f"not JSON (not UTF-8: {exc.reason} at byte {exc.start})"


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause CPython's cycle collector while a part is parsed and converted. Parsed JSON holds
    no reference cycles (reference counting frees it), but the many dicts it allocates trigger
    collections that each walk every live object: without this, reading 100,000 FHIR resources
    spends about a third of its time collecting nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


FUTURE_TOLERANCE = timedelta(minutes=5)
"""A value timed later than this after it was received is quarantined (clock error or a wrong
date); the tolerance covers clocks a few minutes apart."""


@dataclass
class Records:
    source: str
    received: datetime
    obs: list[tuple[Any, ...]] = field(default_factory=list)  # rows in OBSERVATIONS' order
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)

    def bad(self, position: str, fld: str, reason: str, raw: object = None) -> None:
        """Quarantine one record with the reason and where it was."""
        self.quarantine.append(
            {
                "source": self.source,
                "position": position,
                "field": fld,
                "raw_value": None if raw is None else str(raw)[:200],
                "reason": reason,
                "received_time": self.received,
            }
        )

    def add(
        self,
        patient_id: str,
        time: datetime,
        loinc: str,
        value: float,
        unit: str,
        position: str,
        quality: str | None = None,
        device: str | None = None,
        comparator: str = "=",
        status: str = "final",
        method: str | None = None,
    ) -> None:
        """One observation (already in its canonical unit, time in UTC); quarantined instead when
        timed beyond :data:`FUTURE_TOLERANCE` after it was received."""
        if time > self.received + FUTURE_TOLERANCE:
            self.bad(
                position,
                "effective_time",
                f"time {time.isoformat()} is in the future (received "
                f"{self.received.isoformat(timespec='seconds')}; tolerance "
                f"{FUTURE_TOLERANCE.total_seconds() / 60:g} min)",
                f"{value:g} {unit}",
            )
            return
        self.obs.append(
            (
                patient_id,
                time,
                loinc,
                float(value),
                unit,
                self.source,
                position,
                device,
                self.received,
                quality,
                comparator,
                status,
                method,
            )
        )

    def checked(
        self,
        code: str,
        value: float,
        unit: str,
        position: str,
        unit_field: str,
        value_field: str,
    ) -> tuple[float, str] | None:
        """``value`` in the code's canonical unit, plausibility-checked; ``None`` (and the record
        quarantined with the reason) when the unit is unknown or the value implausible. Codes
        without a canonical entry keep their value and unit."""
        if not math.isfinite(value):
            self.bad(position, value_field, "value is not a finite number (NaN or infinity)", value)
            return None
        entry = CODES.get(code)
        if entry is None:
            return value, unit
        canon = entry.unit
        try:
            converted = to_canonical(value, unit, canon, code)
        except UnitError as exc:
            self.bad(position, unit_field, str(exc), f"{value:g} {unit}")
            return None
        if not entry.plausible(converted):
            self.bad(
                position,
                value_field,
                f"outside plausible range {entry.range_text()}",
                f"{converted:g} {canon}",
            )
            return None
        return converted, canon

    def patient(self, patient_id: str, sex: str | None, birth_date: date | None = None) -> None:
        self.patients[patient_id] = {
            "patient_id": patient_id,
            "sex": sex,
            "age_years": None,
            "birth_date": birth_date,
            "icu_admission_time": None,
            "hospital_admission_time": None,
            "icu_unit": None,
            "source": self.source,
            "merged_into": None,
        }

    @property
    def read(self) -> int:
        """Records that must end stored, quarantined or duplicate."""
        return len(self.obs) + len(self.quarantine)

    def converted(self, **context: pa.Table) -> Record:
        """Everything collected, in the canonical schemas, with any context tables
        (encounters, conditions, medications, waveforms) the adapter built."""
        return Record(
            _columns(self.obs, OBSERVATIONS),
            pa.Table.from_pylist(self.quarantine, schema=QUARANTINE),
            pa.Table.from_pylist(list(self.patients.values()), schema=PATIENTS),
            LABELS.empty_table(),
            self.read,
            **context,
        )


def _columns(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """Rows (tuples in the schema's order) as a table, built column by column (several times
    faster than from dicts)."""
    if not rows:
        return schema.empty_table()
    columns = zip(*rows, strict=True)
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
        schema=schema,
    )


def quarantine_table(
    source: str,
    positions: list[str],
    field: str,
    raw: list[str],
    reasons: list[str],
    received: datetime,
) -> pa.Table:
    """Quarantine entries for many records of one source at once (the database readers)."""
    n = len(positions)
    return pa.table(
        {
            "source": [source] * n,
            "position": positions,
            "field": [field] * n,
            "raw_value": raw,
            "reason": reasons,
            "received_time": pa.array([received] * n, QUARANTINE.field("received_time").type),
        },
        schema=QUARANTINE,
    )


def rejection(
    source: str,
    position: str,
    fld: str,
    reason: str,
    raw: object = None,
    received: datetime | None = None,
) -> Record:
    """A record holding nothing but one quarantine entry: an input that could not be read at
    all, accounted for like any other."""  # fmt: skip
    acc = Records(source, received or datetime.now(UTC))
    acc.bad(position, fld, reason, raw)
    return acc.converted()
