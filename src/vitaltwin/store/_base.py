"""The store interface both backends implement, and the accounting that proves nothing is lost.

Observations are unique on (patient, effective time, LOINC code, value, unit, comparator): the same
measurement arriving twice — the same file ingested again, or the same value from two feeds — is
stored once and counted as a duplicate; quarantine entries are unique on their content (source,
position, field, raw value, reason), so that distinct bad records never merge even where
positions repeat (three OBX segments with set id 1, a rotated file reusing its path). Every
ingestion returns counts that add up to the records read: stored + quarantined +
duplicates (a mismatch raises).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vitaltwin.data.schema import (
    CONDITIONS,
    ENCOUNTERS,
    LABELS,
    MEDICATIONS,
    OBSERVATIONS,
    PATIENT_EVENTS,
    PATIENTS,
    QUARANTINE,
    WAVEFORMS,
    Record,
    conform,
    conform_observations,
)
from vitaltwin.data.versions import CORRECTIVE, IDENTITY, NOT_CURRENT, resolve
from vitaltwin.store._sealed import (
    PLAIN_STATES,
    PREFIX,
    SEALED,
    STATE_PREFIX,
    ColumnCipher,
    SealError,
)

TABLES = (
    "observations",
    "quarantine",
    "patients",
    "labels",
    "encounters",
    "conditions",
    "medications",
    "waveforms",
    "patient_events",
)
CONSENT_STATE = "research-consent"
"""The state key of the patients whose consent excludes research."""
OBS_KEY = ("patient_id", "effective_time", "loinc", "value", "unit", "comparator")
KEYS: dict[str, tuple[str, ...]] = {
    "observations": OBS_KEY,
    "quarantine": ("source", "position", "field", "raw_value", "reason"),
    "patients": ("patient_id",),
    "labels": ("patient_id", "time", "label"),
    "encounters": ("encounter_id",),
    "conditions": ("patient_id", "code", "source"),
    "medications": ("patient_id", "drug", "start_time"),
    "waveforms": ("patient_id", "start_time", "code"),
    "patient_events": ("patient_id", "event", "source", "position"),
}
UPDATED = ("patients", "encounters")
"""Tables whose rows are the latest state of their key (see :meth:`Store._update`)."""

SCHEMAS = {
    "observations": OBSERVATIONS,
    "quarantine": QUARANTINE,
    "patients": PATIENTS,
    "labels": LABELS,
    "encounters": ENCOUNTERS,
    "conditions": CONDITIONS,
    "medications": MEDICATIONS,
    "waveforms": WAVEFORMS,
    "patient_events": PATIENT_EVENTS,
}
NOT_CURRENT_ENCOUNTER = ("cancelled", "entered-in-error")
STORED = {
    t: pa.schema(
        [pa.field(f.name, pa.string(), f.nullable) if f.name in SEALED[t] else f for f in s]
    )
    for t, s in SCHEMAS.items()
}
"""Each table as the backends keep it: the :data:`SEALED` columns as text (sealed, or in clear
while the store is not encrypted; a birth date as ``YYYY-MM-DD``)."""


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"time {t.isoformat()} has no time zone (vitaltwin reads UTC instants)")
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time {t.isoformat()} is outside years 1-9999 in UTC") from None


def _match(column: str, value: str | Sequence[str] | None) -> list[tuple[str, str, object]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [(column, "=", value)]
    return [(column, "in", [str(v) for v in value])]


def _bound(
    column: str, start: datetime | None, end: datetime | None
) -> list[tuple[str, str, object]]:
    out: list[tuple[str, str, object]] = []
    if start is not None:
        out.append((column, ">=", _utc(start)))
    if end is not None:
        out.append((column, "<", _utc(end)))
    return out


def _reorder(rows: pa.Table, order: Sequence[str], sealed: Sequence[str]) -> pa.Table:
    """Rows the database ordered by ``order`` with some of its columns sealed, in the order of
    their clear values: a stable sort by the columns up to the last sealed one keeps the
    database's order among equal values (a patient's rows stay in time order)."""
    last = max((i for i, c in enumerate(order) if c in sealed), default=-1)
    if last < 0 or rows.num_rows < 2:
        return rows
    return rows.take(pc.sort_indices(rows, [(c, "ascending") for c in order[: last + 1]]))


class StoreInUseError(RuntimeError):
    """The store is held by another process; the message names the holder and what to do."""


def unique_rows(
    data: pa.Table, key: tuple[str, ...], keep: Literal["first", "last"] = "first"
) -> pa.Table:
    """The first (or last) row of each key within a batch (order kept)."""
    repeated = data.select(list(key)).to_pandas().duplicated(keep=keep).to_numpy()
    return data.filter(pa.array(~repeated)) if repeated.any() else data


@dataclass(frozen=True)
class IngestCounts:
    """What became of the records read; ``read == stored + quarantined + duplicates``."""

    read: int
    stored: int
    quarantined: int
    duplicates: int

    def __add__(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(
            self.read + other.read,
            self.stored + other.stored,
            self.quarantined + other.quarantined,
            self.duplicates + other.duplicates,
        )


class Store(ABC):
    """One interface, two backends (DuckDB embedded, PostgreSQL)."""

    _cipher: ColumnCipher | None = None  # sealed columns (encrypt_with)

    @abstractmethod
    def _db_insert(self, table: str, data: pa.Table) -> int:
        """Insert the rows of ``data`` (in :data:`STORED` form) whose key is not stored yet;
        return how many."""

    @abstractmethod
    def count(self, table: str) -> int:
        """Rows in one of :data:`TABLES`."""

    @abstractmethod
    def _db_select(
        self, table: str, where: list[tuple[str, str, object]], order: tuple[str, ...]
    ) -> pa.Table:
        """Rows of ``table`` meeting every ``(column, op, value)`` (op: ``=``, ``!=``, ``>=``,
        ``<``, ``in`` or ``not in`` with a list), ordered by ``order``, as stored
        (:data:`STORED`)."""

    @abstractmethod
    def _db_distinct(self, table: str, column: str) -> list[str]:
        """The distinct non-null values of a column, as stored."""

    @abstractmethod
    def _db_rewrite(self, table: str, column: str, old: list[str], new: list[str]) -> None:
        """Replace, in one transaction, each stored value ``old[i]`` of ``column`` by
        ``new[i]``."""

    def _insert_new(self, table: str, data: pa.Table) -> int:
        """Insert the rows of canonical ``data`` whose key is not stored yet; return how
        many."""
        return self._db_insert(table, self._to_stored(table, data))

    def _select(
        self, table: str, where: list[tuple[str, str, object]], order: tuple[str, ...]
    ) -> pa.Table:
        """Rows of ``table`` meeting every ``(column, op, value)`` (see :meth:`_db_select`;
        sealed columns by equality only), ordered by ``order``, in the canonical schema."""
        cipher = self._cipher
        sealed = SEALED[table] if cipher is not None else ()
        stored_where = []
        for col, op, val in where:
            if col in sealed:
                assert cipher is not None
                if op in ("=", "!="):
                    val = cipher.seal(col, str(val))
                elif op in ("in", "not in"):
                    assert isinstance(val, list)
                    val = [cipher.seal(col, str(v)) for v in val]
                else:
                    raise ValueError(f"{table}.{col} is encrypted: it is compared by equality only")
            stored_where.append((col, op, val))
        rows = self._from_stored(table, self._db_select(table, stored_where, order))
        return _reorder(rows, order, sealed)

    def _to_stored(self, table: str, data: pa.Table) -> pa.Table:
        """Canonical rows (or some of their columns) as the backends keep them: sealed columns
        as text, encrypted when the store is."""
        for col in SEALED[table]:
            i = data.schema.get_field_index(col)
            if i < 0:
                continue
            values = data.column(i)
            if values.type != pa.string():
                values = pc.cast(values, pa.string())
            if self._cipher is not None:
                values = self._cipher.seal_column(col, values)
            data = data.set_column(i, STORED[table].field(col), values)
        return data

    def _from_stored(self, table: str, data: pa.Table) -> pa.Table:
        """Stored rows in the canonical schema (sealed columns opened)."""
        for col in SEALED[table]:
            i = data.schema.get_field_index(col)
            if i < 0:
                continue
            values = data.column(i)
            if self._cipher is not None:
                values = self._cipher.open_column(col, values)
            elif pc.any(pc.starts_with(values, PREFIX)).as_py():
                raise SealError(f"{table}.{col} is encrypted: open the store with its key")
            field = SCHEMAS[table].field(col)
            if field.type != pa.string():
                values = pc.cast(values, field.type)
            data = data.set_column(i, field, values)
        return data

    # -- the read API: what the twin, the risk models and the service read ---------------------

    def observations(
        self,
        patient_id: str | Sequence[str] | None = None,
        loinc: str | Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        received_since: datetime | None = None,
        current: bool = True,
    ) -> pa.Table:
        """Observations of one patient or several (``None``: all), optionally of some codes,
        effective in ``[start, end)``, received at or after ``received_since`` (what arrived
        since a service last looked); ordered by patient, time and code. Only current values
        unless ``current=False`` (then superseded and retracted versions too, for audit; see
        :mod:`vitaltwin.data.versions`)."""
        where = [*_match("loinc", loinc), *_bound("effective_time", start, end)]
        if current:
            where.append(("status", "not in", list(NOT_CURRENT)))
        if received_since is not None:
            where.append(("received_time", ">=", _utc(received_since)))
        return self._read(
            "observations", patient_id, where, ("patient_id", "effective_time", "loinc")
        )

    def patients(
        self, patient_id: str | Sequence[str] | None = None, current: bool = True
    ) -> pa.Table:
        """The patient table (one row per patient), optionally for some patients; without the
        patients merged into another (HL7 A40) unless ``current=False``."""
        rows = self._select("patients", _match("patient_id", patient_id), ("patient_id",))
        if current:
            rows = rows.filter(pc.is_null(rows.column("merged_into")))
        return rows

    def encounters(
        self, patient_id: str | Sequence[str] | None = None, current: bool = True
    ) -> pa.Table:
        """Encounters (visits, ICU stays) by start time; without cancelled ones (HL7 A11)
        unless ``current=False``."""
        rows = self._read("encounters", patient_id, [], ("patient_id", "start_time"))
        if current:
            gone = pc.is_in(rows.column("status"), pa.array(NOT_CURRENT_ENCOUNTER))
            rows = rows.filter(pc.invert(gone))  # a NULL status (not stated) is current
        return rows

    def patient_events(self, patient_id: str | Sequence[str] | None = None) -> pa.Table:
        """The ADT history (admissions, transfers, discharges, demographic updates with the
        demographics they stated, cancellations, merges) by time: the versions behind the
        patients and encounters tables."""
        return self._read("patient_events", patient_id, [], ("patient_id", "event_time"))

    def medications(
        self,
        patient_id: str | Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pa.Table:
        """Medication administrations starting in ``[start, end)``, by start time."""
        where = _bound("start_time", start, end)
        return self._read("medications", patient_id, where, ("patient_id", "start_time", "drug"))

    def labels(
        self, patient_id: str | Sequence[str] | None = None, label: str | None = None
    ) -> pa.Table:
        """Outcome labels (e.g. PhysioNet's sepsis label), by patient and time."""
        return self._read(
            "labels", patient_id, _match("label", label), ("patient_id", "time", "label")
        )

    def merged(self) -> dict[str, str]:
        """Retired patient key -> the key it now lives under (merges followed to the end)."""
        rows = self._select("patients", [("merged_into", "!=", "")], ("patient_id",))
        step = dict(
            zip(
                rows.column("patient_id").to_pylist(),
                rows.column("merged_into").to_pylist(),
                strict=True,
            )
        )
        final = {}
        for old in step:
            new, seen = step[old], {old}
            while new in step and new not in seen:  # A->B then B->C: A lives under C
                seen.add(new)
                new = step[new]
            final[old] = new
        return final

    def _read(
        self,
        table: str,
        patient_id: str | Sequence[str] | None,
        where: list[tuple[str, str, object]],
        order: tuple[str, ...],
    ) -> pa.Table:
        """Rows of a patient table, merged patients' rows under their surviving key: asking
        for a patient also finds what was stored under the keys merged into it."""
        links = self.merged()
        ids = [patient_id] if isinstance(patient_id, str) else patient_id
        if links and ids is not None:
            wanted = set(map(str, ids))
            ids = [*wanted, *(old for old, new in links.items() if new in wanted)]
        rows = self._select(table, [*_match("patient_id", ids), *where], order)
        if not links or rows.num_rows == 0:
            return rows
        pid = rows.column("patient_id")
        if not pc.any(pc.is_in(pid, pa.array(list(links)))).as_py():
            return rows
        i = rows.schema.get_field_index("patient_id")
        mapped = pa.array([links.get(p, p) for p in pid.to_pylist()], pa.string())
        rows = rows.set_column(i, rows.schema.field(i), mapped)
        if order:
            rows = rows.take(pc.sort_indices(rows, [(c, "ascending") for c in order]))
        return rows

    def table(self, table: str) -> pa.Table:
        """A whole table in its canonical schema (sealed columns opened), in key order."""
        rows = self._from_stored(table, self._db_table(table))
        return _reorder(rows, KEYS[table], SEALED[table] if self._cipher is not None else ())

    def batches(self, table: str, rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """A whole table in its canonical schema, ``rows`` at a time, in key order as stored
        (an encrypted store orders its sealed keys by their sealed form): memory stays bounded
        by the batch, whatever the table's size (exports stream through this)."""
        for batch in self._db_batches(table, rows):
            yield self._from_stored(table, pa.Table.from_batches([batch])).to_batches()[0]

    @abstractmethod
    def _db_table(self, table: str) -> pa.Table:
        """A whole table as stored, in key order."""

    @abstractmethod
    def _db_batches(self, table: str, rows: int) -> Iterator[pa.RecordBatch]:
        """A whole table as stored, ``rows`` at a time, in key order."""

    def encrypt_with(self, cipher: ColumnCipher | None) -> None:
        """Seal the columns in :data:`SEALED` and saved states with ``cipher`` from now on,
        and open them on reading (None: read and write them as they are). The store's values
        must already be sealed by this cipher (:meth:`reseal` makes them so); the envelope that
        keeps the data key is :func:`vitaltwin.governance.encrypt_store`'s."""
        self._cipher = cipher

    def reseal(self, cipher: ColumnCipher | None, previous: Sequence[ColumnCipher] = ()) -> int:
        """Make every sealed value and saved state sealed by ``cipher`` (None: in clear), and
        use ``cipher`` from now on: values in clear, or sealed by ``cipher`` or one of
        ``previous``, are opened and sealed again; each column is rewritten in one
        transaction. A run cut short is finished by running it again. Returns how many
        distinct values were rewritten. Stop the writers first (the service): a value written
        meanwhile under another key would not be found by equality."""
        openers = [c for c in (cipher, *previous) if c is not None]

        def plain(col: str, value: str) -> str:
            if not value.startswith(PREFIX):
                return value
            for c in openers:
                try:
                    opened = c.open(col, value)
                    assert opened is not None
                    return opened
                except SealError:
                    continue
            raise SealError(f"a sealed {col} value opens under none of the keys given")

        rewritten = 0
        for table in TABLES:
            for col in SEALED[table]:
                old, new = [], []
                for value in self._db_distinct(table, col):
                    now = plain(col, value)
                    sealed = cipher.seal(col, now) if cipher is not None else now
                    assert sealed is not None
                    if sealed != value:
                        old.append(value)
                        new.append(sealed)
                if old:
                    self._db_rewrite(table, col, old, new)
                    rewritten += len(old)
        for key in self._db_state_keys():
            saved = self._db_load_state(key)
            if key in PLAIN_STATES or saved is None:
                continue
            data, at = saved
            for c in openers:
                try:
                    data = c.open_state(key, data)
                    break
                except SealError:
                    continue
            if data.startswith(STATE_PREFIX):
                raise SealError(f"the saved state {key!r} opens under none of the keys given")
            self._db_save_state(key, cipher.seal_state(key, data) if cipher else data, at)
        self._cipher = cipher
        return rewritten

    def save_state(self, key: str, data: bytes) -> None:
        """Keep a service's state (e.g. the twins' checkpoint) under ``key``, replacing the
        previous one in one transaction: a reader finds the whole old state or the whole new
        (sealed whole when the store is encrypted)."""
        if self._cipher is not None and key not in PLAIN_STATES:
            data = self._cipher.seal_state(key, data)
        self._db_save_state(key, data, datetime.now(UTC))

    def load_state(self, key: str) -> tuple[bytes, datetime] | None:
        """The state kept under ``key`` and when it was saved (UTC), or None."""
        saved = self._db_load_state(key)
        if saved is None:
            return None
        data, at = saved
        if self._cipher is not None and key not in PLAIN_STATES:
            data = self._cipher.open_state(key, data)
        elif data.startswith(STATE_PREFIX) and key not in PLAIN_STATES:
            raise SealError(f"the saved state {key!r} is encrypted: open the store with its key")
        return data, at

    @abstractmethod
    def _db_save_state(self, key: str, data: bytes, at: datetime) -> None:
        """Keep ``data`` under ``key`` (saved at ``at``), replacing the previous one in one
        transaction."""

    @abstractmethod
    def _db_load_state(self, key: str) -> tuple[bytes, datetime] | None:
        """The bytes kept under ``key`` and when they were saved (UTC), or None."""

    @abstractmethod
    def _db_state_keys(self) -> list[str]:
        """The keys of the saved states."""

    def research_excluded(self) -> frozenset[str]:
        """Patients whose consent excludes research: left out of research exports and of the
        cohorts built from this store (:meth:`set_research_consent`)."""
        saved = self.load_state(CONSENT_STATE)
        if saved is None:
            return frozenset()
        return frozenset(json.loads(saved[0])["excluded"])

    def set_research_consent(self, patient_id: str, allowed: bool) -> None:
        """Record whether a patient's data may be used for research (default: yes)."""
        now = set(self.research_excluded())
        (now.discard if allowed else now.add)(patient_id)
        self.save_state(CONSENT_STATE, json.dumps({"excluded": sorted(now)}).encode())

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, for people (a folder, or a server and schema)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ingest(
        self,
        observations: pa.Table,
        quarantine: pa.Table,
        read: int,
        patients: pa.Table | None = None,
        labels: pa.Table | None = None,
        **context: pa.Table | None,
    ) -> IngestCounts:
        """Store a converted batch; returns the counts (raises if they do not add up)."""
        if observations.schema != OBSERVATIONS or quarantine.schema != QUARANTINE:
            raise TypeError("observations and quarantine must use the canonical schemas")
        # a quarantine entry is identified by its content (where, what and why), so distinct
        # bad records at the same place never merge; "no raw value" is stored as ""
        i = quarantine.schema.get_field_index("raw_value")
        raw = pc.fill_null(quarantine.column(i), "")
        quarantine = quarantine.set_column(i, QUARANTINE.field(i), raw)
        observations = self._apply_versions(observations)
        stored = self._insert_new("observations", observations)
        q_new = self._insert_new("quarantine", quarantine)
        dup = (observations.num_rows - stored) + (quarantine.num_rows - q_new)
        counts = IngestCounts(read, stored, q_new, dup)
        if counts.stored + counts.quarantined + counts.duplicates != read:
            raise RuntimeError(f"records unaccounted for: {counts}")
        extra = {"patients": patients, "labels": labels, **context}
        for name, table in extra.items():
            if name not in SCHEMAS or name in ("observations", "quarantine"):
                raise ValueError(f"no context table {name!r}")
            if table is None:
                continue
            if name in UPDATED:
                self._update(name, conform(table, SCHEMAS[name]))
            else:
                self._insert_new(name, conform(table, SCHEMAS[name]))
        return counts

    def _update(self, table: str, incoming: pa.Table) -> None:
        """Rows of ``table`` (patients, encounters) are the latest state of their key: a later
        row for a stored key fills in or changes the fields it states (an HL7 A08 updates the
        demographics, an A03 ends the encounter, an A02 moves it, an A11 cancels it, an A40
        retires a patient key) and keeps the others; an encounter stated ``in-progress`` (A13:
        the discharge was cancelled) loses its end time. Every version stays in
        ``patient_events``."""
        key = KEYS[table][0]
        incoming = unique_rows(incoming, (key,), keep="last")
        ids = pc.unique(incoming.column(key)).to_pylist()
        stored = self._select(table, [(key, "in", ids)], (key,))
        if stored.num_rows == 0:
            self._insert_new(table, incoming)
            return
        old = stored.to_pandas().set_index(key)
        new = incoming.to_pandas().set_index(key)
        both = new.index.intersection(old.index)
        merged = new.loc[both].combine_first(old.loc[both])[old.columns]
        if table == "encounters":  # an encounter in progress has no end (HL7 A13 reopens it)
            reopened = (new.loc[both, "status"] == "in-progress").to_numpy()
            merged.loc[reopened, "end_time"] = new.loc[both].loc[reopened, "end_time"]
        before = old.loc[both]
        same = (merged == before) | (merged.isna() & before.isna())
        changed = list(merged.index[~same.all(axis=1).to_numpy()])
        if changed:
            self._delete(table, key, changed)
            rows = merged.loc[changed].reset_index()
            self._insert_new(
                table, pa.Table.from_pandas(rows, SCHEMAS[table], preserve_index=False)
            )
        fresh = incoming.filter(pc.invert(pc.is_in(incoming.column(key), pa.array(list(both)))))
        self._insert_new(table, fresh)

    def _delete(self, table: str, column: str, values: list[str]) -> None:
        """Delete the rows of ``table`` whose ``column`` is one of ``values``."""
        if self._cipher is not None and column in SEALED[table]:
            values = [str(self._cipher.seal(column, v)) for v in values]
        self._db_delete(table, column, values)

    @abstractmethod
    def _db_delete(self, table: str, column: str, values: list[str]) -> None:
        """Delete the rows of ``table`` whose ``column`` is one of ``values`` (as stored)."""

    def _apply_versions(self, incoming: pa.Table) -> pa.Table:
        """Apply the versions ``incoming`` brings (corrections, retractions, final after
        preliminary) to the stored rows of the same results, and resolve the batch's own
        versions; returns ``incoming`` with its statuses resolved. Only results that can change
        are read back, so a batch of final values costs one query for stored preliminaries."""
        status = incoming.column("status")
        stored_prelim = self._select(
            "observations",
            [*_match("patient_id", pc.unique(incoming.column("patient_id")).to_pylist()),
             ("status", "=", "preliminary")],
            ("received_time",),
        ) if incoming.num_rows else None  # fmt: skip
        corrective = pc.is_in(status, pa.array(CORRECTIVE))
        if not pc.any(corrective).as_py() and (stored_prelim is None or not stored_prelim.num_rows):
            return incoming
        ident = list(IDENTITY)
        inc = incoming.select([*OBS_KEY, "status"]).to_pandas()
        touched = inc.loc[corrective.to_numpy(zero_copy_only=False), ident]
        if stored_prelim is not None and stored_prelim.num_rows:
            touched = pd.concat([touched, stored_prelim.select(ident).to_pandas()])
        touched = touched.drop_duplicates()
        stored = self._select(
            "observations",
            [*_match("patient_id", touched["patient_id"].unique().tolist()),
             *_match("loinc", touched["loinc"].unique().tolist())],
            ("received_time",),
        ).select([*OBS_KEY, "status"]).to_pandas()  # fmt: skip
        stored = stored.merge(touched, on=ident)
        mine = inc.reset_index().merge(touched, on=ident)  # this batch's rows of those results
        known = mine.merge(stored[list(OBS_KEY)], on=list(OBS_KEY), how="left", indicator=True)
        # a row already stored is a duplicate and changes nothing, except a retraction: it
        # names the stored value it retracts (and is itself not stored again)
        fresh = (known["_merge"] == "left_only") | (known["status"] == "entered-in-error")
        arriving_rows = mine[fresh.to_numpy()]
        rows = pd.concat([stored, arriving_rows.drop(columns="index")], ignore_index=True)
        arriving = np.r_[np.zeros(len(stored), bool), np.ones(len(arriving_rows), bool)]
        resolved = resolve(rows, arriving)
        before = rows["status"].to_numpy(dtype=object)
        changed = (~arriving) & (resolved != before)
        if changed.any():
            upd = rows.loc[changed, list(OBS_KEY)].assign(status=resolved[changed])
            self._set_status(pa.Table.from_pandas(upd, preserve_index=False))
        statuses = status.to_numpy(zero_copy_only=False).astype(object)
        statuses[arriving_rows["index"].to_numpy()] = resolved[arriving]
        i = incoming.schema.get_field_index("status")
        return incoming.set_column(i, OBSERVATIONS.field(i), pa.array(statuses, pa.string()))

    def _set_status(self, rows: pa.Table) -> None:
        """Set ``status`` of the stored observations matching each row's key (:data:`OBS_KEY`)."""
        self._db_set_status(self._to_stored("observations", rows))

    @abstractmethod
    def _db_set_status(self, rows: pa.Table) -> None:
        """:meth:`_set_status` with the keys as stored."""

    def ingest_record(self, record: Record) -> IngestCounts:
        """:meth:`ingest` of everything an adapter read (:class:`vitaltwin.data.Record`)."""
        return self.ingest(
            record.observations, record.quarantine, record.values_read, **record.context()
        )

    def export_parquet(self, directory: str | Path) -> dict[str, Path]:
        """Every table to ``directory/TABLE.parquet`` (canonical schemas)."""
        import pyarrow.parquet as pq

        out = Path(directory)
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths = {}
        for t in TABLES:
            paths[t] = out / f"{t}.parquet"
            paths[t].touch(mode=0o600)  # patient data: owner-only before a byte is written
            paths[t].chmod(0o600)
            pq.write_table(self.table(t), paths[t])
        return paths

    def import_parquet(self, directory: str | Path) -> IngestCounts:
        """Read tables written by :meth:`export_parquet` (idempotent like any ingestion)."""
        import pyarrow.parquet as pq

        d = Path(directory)
        obs = conform_observations(pq.read_table(d / "observations.parquet"))
        q = pq.read_table(d / "quarantine.parquet").cast(QUARANTINE)
        ctx = {
            t: pq.read_table(d / f"{t}.parquet")
            for t in TABLES[2:]
            if (d / f"{t}.parquet").exists()
        }
        return self.ingest(obs, q, obs.num_rows + q.num_rows, **ctx)
