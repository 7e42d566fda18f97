"""Arrow schemas of the canonical record.

Observations carry the patient, the effective time (timezone-aware UTC), the LOINC code, the
value in its UCUM unit, where it came from (``source``: file or message; ``position``: row or
segment within it), the device, when it was received, and quality flags; and three fields that
say what the value is:

* ``comparator``: ``=`` for an exact value, else ``<``, ``<=``, ``>``, ``>=`` (a censored result
  such as ``<0.5``: ``value`` is the bound, never an exact number it was not);
* ``status``: ``final``, ``preliminary``, ``corrected`` (a correction of an earlier result),
  ``entered-in-error`` (a retraction: the earlier result was wrong) as the source said, or
  ``superseded`` once a later version replaced it (see :mod:`vitaltwin.data.versions`);
* ``method``: how it was measured where the source says (:data:`METHODS`), e.g. invasive
  arterial vs cuff pressure. Anything that cannot
be stored as data goes to the quarantine with a reason and its location, so every input record
is accounted for: stored, quarantined, or counted as a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc

UTC_TS = pa.timestamp("us", tz="UTC")

OBSERVATIONS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("effective_time", UTC_TS, nullable=False),
        pa.field("loinc", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("unit", pa.string(), nullable=False),  # UCUM
        pa.field("source", pa.string(), nullable=False),
        pa.field("position", pa.string(), nullable=False),
        pa.field("device", pa.string()),
        pa.field("received_time", UTC_TS, nullable=False),
        pa.field("quality", pa.string()),
        pa.field("comparator", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("method", pa.string()),
    ]
)

COMPARATORS = ("=", "<", "<=", ">", ">=")
"""``=`` exact; the others: the true value lies beyond ``value`` (a censored result)."""

STATUSES = ("final", "preliminary", "corrected", "entered-in-error", "superseded")
"""Result statuses (see the module docstring); ``superseded`` is set by the store, never read."""

METHODS = ("invasive-arterial", "non-invasive-cuff", "ecg", "pulse-oximetry")
"""Measurement methods vitaltwin distinguishes (None: not stated)."""

OBSERVATION_DEFAULTS: dict[str, object] = {"comparator": "=", "status": "final", "method": None}
"""Values of the fields older records and sources without them get."""

QUARANTINE = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("position", pa.string(), nullable=False),
        pa.field("field", pa.string(), nullable=False),
        pa.field("raw_value", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("received_time", UTC_TS, nullable=False),
    ]
)

PATIENTS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("sex", pa.string()),  # "male" | "female" | None
        pa.field("age_years", pa.float64()),  # age at ICU admission, where the source states it
        pa.field("birth_date", pa.date32()),  # where the source gives one (FHIR, HL7 PID-7)
        pa.field("icu_admission_time", UTC_TS),
        pa.field("hospital_admission_time", UTC_TS),
        pa.field("icu_unit", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        # the surviving patient's key once this one was merged into it (HL7 ADT A40, FHIR
        # Patient.link replaced-by): the store then reads this patient's rows as that one's
        pa.field("merged_into", pa.string()),
    ]
)

LABELS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("time", UTC_TS, nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("value", pa.int8(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)


ENCOUNTERS = pa.schema(
    [
        pa.field("encounter_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("start_time", UTC_TS),
        pa.field("end_time", UTC_TS),
        pa.field("kind", pa.string()),  # e.g. inpatient, emergency, ICU
        pa.field("source", pa.string(), nullable=False),
        pa.field("status", pa.string()),  # ENCOUNTER_STATUSES; None: the source did not say
        pa.field("location", pa.string()),  # where the patient is now (HL7 PV1-3), as sent
    ]
)
"""Encounters hold the latest state of each visit; :data:`PATIENT_EVENTS` keeps how it got
there."""

ENCOUNTER_STATUSES = ("planned", "in-progress", "finished", "cancelled", "entered-in-error")
"""FHIR R4 Encounter.status codes the record uses: HL7 A01/A04/A13 -> in-progress, A03 ->
finished, A11 -> cancelled. An ``in-progress`` row carries no end time (a cancelled discharge
clears it); a ``cancelled`` encounter is left out of :meth:`Store.encounters` by default."""

PATIENT_EVENTS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),  # the HL7 ADT trigger, e.g. A08
        pa.field("event_time", UTC_TS),  # EVN-6 (occurred), else EVN-2 (recorded), else MSH-7
        pa.field("encounter_id", pa.string()),
        pa.field("location", pa.string()),  # PV1-3 after the event
        pa.field("prior_location", pa.string()),  # PV1-6 (a transfer's origin)
        pa.field("prior_patient_id", pa.string()),  # MRG-1 (a merge: this key is retired)
        pa.field("sex", pa.string()),  # the demographics as the event stated them
        pa.field("birth_date", pa.date32()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("position", pa.string(), nullable=False),
    ]
)
"""Every admission, transfer, discharge, update, cancellation and merge as it arrived, in
order: the versions of a patient's demographics and the history of a stay (the patients and
encounters tables keep only the latest state)."""

CONDITIONS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("code", pa.string(), nullable=False),  # system|code
        pa.field("display", pa.string()),
        pa.field("onset_time", UTC_TS),
        pa.field("source", pa.string(), nullable=False),
    ]
)

MEDICATIONS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("drug", pa.string(), nullable=False),  # system|code or text
        pa.field("start_time", UTC_TS, nullable=False),
        pa.field("end_time", UTC_TS),
        pa.field("dose", pa.float64()),
        pa.field("dose_unit", pa.string()),  # UCUM
        pa.field("rate", pa.float64()),
        pa.field("rate_unit", pa.string()),  # UCUM
        pa.field("source", pa.string(), nullable=False),
    ]
)


WAVEFORMS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("start_time", UTC_TS, nullable=False),
        pa.field("code", pa.string(), nullable=False),  # system|code of the signal
        pa.field("period_ms", pa.float64(), nullable=False),
        pa.field("origin", pa.float64(), nullable=False),
        pa.field("factor", pa.float64(), nullable=False),
        pa.field("unit", pa.string()),
        pa.field("dimensions", pa.int32(), nullable=False),
        pa.field("data", pa.string(), nullable=False),  # FHIR SampledData.data, kept as sent
        pa.field("source", pa.string(), nullable=False),
        pa.field("position", pa.string(), nullable=False),
    ]
)
"""Waveforms (FHIR SampledData) stored losslessly: value_i = origin + factor * data_i at
start_time + i * period_ms (``E``, ``L``, ``U`` in data mark error, below and above range)."""


def observations_table(columns: dict[str, Sequence[object] | pa.Array]) -> pa.Table:
    """An observations table typed by :data:`OBSERVATIONS`; required fields must be present
    (``comparator``, ``status`` and ``method`` default to :data:`OBSERVATION_DEFAULTS`)."""
    n = len(next(iter(columns.values()))) if columns else 0
    columns = {**{k: [v] * n for k, v in OBSERVATION_DEFAULTS.items()}, **columns}
    table = pa.table({f.name: columns[f.name] for f in OBSERVATIONS}, schema=OBSERVATIONS)
    for field in OBSERVATIONS:
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"observations: required field {field.name!r} has missing values")
    return table


def microseconds(times: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Timestamps of any unit (a table made from pandas holds nanoseconds) as int64
    microseconds since the epoch (UTC); finer digits are dropped."""
    return pc.cast(times, UTC_TS, safe=False).cast(pa.int64())


def conform_observations(table: pa.Table) -> pa.Table:
    """``table`` in the current :data:`OBSERVATIONS` schema: columns an older release did not
    write get :data:`OBSERVATION_DEFAULTS` (for Parquet exports and stores made before them)."""
    for name, value in OBSERVATION_DEFAULTS.items():
        if name not in table.column_names:
            field = OBSERVATIONS.field(name)
            table = table.append_column(field, pa.array([value] * table.num_rows, field.type))
    return table.select(OBSERVATIONS.names).cast(OBSERVATIONS)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: nullable columns an older release did not write are added as
    missing values (Parquet exports and stores made before them)."""
    for field in schema:
        if field.name not in table.column_names and field.nullable:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names).cast(schema)


def age_years(birth_date: date, at: datetime) -> float:
    """Age in years (mean Gregorian year, 365.2425 days) on the date of ``at``."""
    return (at.date() - birth_date).days / 365.2425


def parse_birth_date(text: str) -> date | None:
    """A full birth date from FHIR ``YYYY-MM-DD`` or HL7 v2 ``YYYYMMDD[hhmm...]``.

    Partial dates (a year, or a year and month, as de-identified sources give) return ``None``:
    the patient's age is then unknown rather than guessed."""
    digits = text.replace("-", "")[:8]
    if len(digits) < 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


@dataclass(frozen=True)
class Record:
    """The canonical record of one input, as every adapter returns it: Arrow tables in the
    schemas above; ``values_read`` counts the records that must end stored, quarantined or
    duplicate (observation values and quarantine entries)."""

    observations: pa.Table
    quarantine: pa.Table
    patients: pa.Table
    labels: pa.Table
    values_read: int
    encounters: pa.Table | None = None
    conditions: pa.Table | None = None
    medications: pa.Table | None = None
    waveforms: pa.Table | None = None
    patient_events: pa.Table | None = None

    def context(self) -> dict[str, pa.Table | None]:
        """The tables other than observations and quarantine, for ``Store.ingest``."""
        return {
            "patients": self.patients,
            "labels": self.labels,
            "encounters": self.encounters,
            "conditions": self.conditions,
            "medications": self.medications,
            "waveforms": self.waveforms,
            "patient_events": self.patient_events,
        }
