"""The embedded store (the default): DuckDB in a local directory.

SQL here interpolates identifiers only (table and column names from the constants ``TABLES`` and
``KEYS``, and names of Arrow tables this module registers); every value is a parameter. Those
lines carry ``# nosec B608`` for bandit (``make security``), which cannot tell the two apart.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vitaltwin.store._base import KEYS, STORED, TABLES, Store, StoreInUseError
from vitaltwin.store._sealed import SEALED

log = logging.getLogger("vitaltwin.store")

DDL = """
CREATE TABLE IF NOT EXISTS observations (
    patient_id VARCHAR NOT NULL, effective_time TIMESTAMPTZ NOT NULL, loinc VARCHAR NOT NULL,
    value DOUBLE NOT NULL, unit VARCHAR NOT NULL, source VARCHAR NOT NULL,
    position VARCHAR NOT NULL, device VARCHAR, received_time TIMESTAMPTZ NOT NULL,
    quality VARCHAR, comparator VARCHAR NOT NULL DEFAULT '=',
    status VARCHAR NOT NULL DEFAULT 'final', method VARCHAR
);
CREATE TABLE IF NOT EXISTS quarantine (
    source VARCHAR NOT NULL, position VARCHAR NOT NULL, field VARCHAR NOT NULL,
    raw_value VARCHAR, reason VARCHAR NOT NULL, received_time TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS patients (
    patient_id VARCHAR NOT NULL, sex VARCHAR, age_years DOUBLE, birth_date VARCHAR,
    icu_admission_time TIMESTAMPTZ, hospital_admission_time TIMESTAMPTZ, icu_unit VARCHAR,
    source VARCHAR NOT NULL, merged_into VARCHAR
);
CREATE TABLE IF NOT EXISTS labels (
    patient_id VARCHAR NOT NULL, time TIMESTAMPTZ NOT NULL, label VARCHAR NOT NULL,
    value TINYINT NOT NULL, source VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS encounters (
    encounter_id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, start_time TIMESTAMPTZ,
    end_time TIMESTAMPTZ, kind VARCHAR, source VARCHAR NOT NULL, status VARCHAR, location VARCHAR
);
CREATE TABLE IF NOT EXISTS conditions (
    patient_id VARCHAR NOT NULL, code VARCHAR NOT NULL, display VARCHAR,
    onset_time TIMESTAMPTZ, source VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS medications (
    patient_id VARCHAR NOT NULL, drug VARCHAR NOT NULL, start_time TIMESTAMPTZ NOT NULL,
    end_time TIMESTAMPTZ, dose DOUBLE, dose_unit VARCHAR, rate DOUBLE, rate_unit VARCHAR,
    source VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS waveforms (
    patient_id VARCHAR NOT NULL, start_time TIMESTAMPTZ NOT NULL, code VARCHAR NOT NULL,
    period_ms DOUBLE NOT NULL, origin DOUBLE NOT NULL, factor DOUBLE NOT NULL, unit VARCHAR,
    dimensions INTEGER NOT NULL, data VARCHAR NOT NULL, source VARCHAR NOT NULL,
    position VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS service_state (
    key VARCHAR PRIMARY KEY, saved_at TIMESTAMPTZ NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS patient_events (
    patient_id VARCHAR NOT NULL, event VARCHAR NOT NULL, event_time TIMESTAMPTZ,
    encounter_id VARCHAR, location VARCHAR, prior_location VARCHAR, prior_patient_id VARCHAR,
    sex VARCHAR, birth_date VARCHAR, source VARCHAR NOT NULL, position VARCHAR NOT NULL
);
"""

_SQL_TYPES = {"string": "VARCHAR", "double": "DOUBLE"}
_DEFAULTS = {("observations", "comparator"): "'='", ("observations", "status"): "'final'"}


class DuckDBStore(Store):
    """Canonical record in ``directory/vitaltwin.duckdb``."""

    def __init__(
        self,
        directory: str | Path,
        memory_limit: str = "256MB",
        checkpoint_every_s: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        # patient data: the folder and the database are the owner's only
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / "vitaltwin.duckdb"
        try:
            self.con = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            holder = re.search(r"held in (.*?)\)", str(exc))
            raise StoreInUseError(
                f"the store {self.directory} is open in another process"
                f"{f' ({holder.group(1)})' if holder else ''}: DuckDB allows one process at a "
                "time. Send data through the process that holds it (the vitaltwin service), "
                "wait for it to finish, or use PostgreSQL (--postgres, VITALTWIN_POSTGRES) "
                "for several writers"
            ) from None
        path.chmod(0o600)
        self._run("SET TimeZone = 'UTC'")
        self._run("SET enable_progress_bar = false")  # the library draws no terminal UI
        # a bounded buffer pool: DuckDB spills to its folder rather than grow with the data
        self._run(f"SET memory_limit = '{memory_limit}'")
        self._run(DDL)
        self._migrate()
        self._checkpoints: threading.Thread | None = None
        self._closing = threading.Event()
        self.checkpoint_s: list[float] = []  # the background checkpoints' durations, latest last
        if checkpoint_every_s is not None:
            self._checkpoint_in_background(checkpoint_every_s)

    def _checkpoint_in_background(self, every_s: float) -> None:
        """Write the log into the database file every ``every_s`` in a thread of its own, not in
        the writer that happens to fill the log. DuckDB otherwise checkpoints inside the commit
        that passes its log threshold (16 MB): a live ward of 5,000 beds (30,000 values a
        second) then has every fifth insert take 3-8 times as long (75 ms -> 160-650 ms here),
        which is the service's p99 latency. A checkpoint on its own cursor runs beside the
        inserts (DuckDB 1.1+ checkpoints concurrently with appends); the log threshold is raised
        to 1 GB as a bound should the thread fall behind. For the live service; batch loads keep
        DuckDB's own policy."""
        if every_s <= 0:
            raise ValueError(f"checkpoint_every_s: seconds > 0, not {every_s}")
        self._run("SET checkpoint_threshold = '1GB'")
        cursor = self.con.cursor()

        def run() -> None:
            while not self._closing.wait(every_s):
                t0 = time.perf_counter()
                try:
                    cursor.execute("CHECKPOINT").fetchall()
                except duckdb.Error as exc:  # e.g. a transaction in the way: the next one
                    log.warning("store: background checkpoint failed (%s); retried", exc)
                    continue
                self.checkpoint_s = [*self.checkpoint_s[-99:], time.perf_counter() - t0]
            cursor.close()

        self._checkpoints = threading.Thread(target=run, name="duckdb-checkpoint", daemon=True)
        self._checkpoints.start()

    def _migrate(self) -> None:
        """A store made by an earlier release gets the columns added since, once, on open."""
        typed = self._run(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
        )
        have = {(str(t), str(c)) for t, c, _ in typed}
        for table, column, kind in typed:  # birth dates were DATE before they could be sealed
            if kind == "DATE" and column in SEALED.get(str(table), ()):
                self._run(f"ALTER TABLE {table} ALTER {column} TYPE VARCHAR")
        for table, schema in STORED.items():
            for f in schema:
                if (table, f.name) in have:
                    continue
                kind = "TIMESTAMPTZ" if pa.types.is_timestamp(f.type) else _SQL_TYPES[str(f.type)]
                default = _DEFAULTS.get((table, f.name))
                default = f" DEFAULT {default}" if default else ""
                self._run(f"ALTER TABLE {table} ADD COLUMN {f.name} {kind}{default}")
        if ("observations", "status") not in have:
            # quarantine entries are keyed by content; earlier stores kept no raw value as NULL
            self._run("UPDATE quarantine SET raw_value = '' WHERE raw_value IS NULL")

    def _run(self, sql: str, args: list[object] | None = None) -> list[tuple[object, ...]]:
        """Execute and consume the result (DuckDB needs a result finished before more work)."""
        return self.con.execute(sql, args or []).fetchall()

    def describe(self) -> str:
        return f"DuckDB {self.directory}"

    def _db_save_state(self, key: str, data: bytes, at: datetime) -> None:
        self._run("INSERT OR REPLACE INTO service_state VALUES (?, ?, ?)", [key, at, data])

    def _db_state_keys(self) -> list[str]:
        return [str(k) for (k,) in self._run("SELECT key FROM service_state ORDER BY key")]

    def _db_distinct(self, table: str, column: str) -> list[str]:
        if table not in TABLES or column not in STORED[table].names:
            raise ValueError(f"no column {column!r} in {table!r}")
        rows = self._run(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")  # nosec B608
        return [str(v) for (v,) in rows]

    def _db_rewrite(self, table: str, column: str, old: list[str], new: list[str]) -> None:
        if table not in TABLES or column not in STORED[table].names:
            raise ValueError(f"no column {column!r} in {table!r}")
        self.con.register("rewrite", pa.table({"old": old, "new": new}))
        try:
            self._run(
                f"UPDATE {table} SET {column} = r.new FROM rewrite r "  # nosec B608
                f"WHERE {table}.{column} = r.old"
            )
        finally:
            self.con.unregister("rewrite")

    def _db_load_state(self, key: str) -> tuple[bytes, datetime] | None:
        rows = self._run("SELECT data, saved_at FROM service_state WHERE key = ?", [key])
        if not rows:
            return None
        data, saved = rows[0]
        assert isinstance(data, bytes) and isinstance(saved, datetime)
        return data, saved.astimezone(UTC)

    def close(self) -> None:
        self._closing.set()
        if self._checkpoints is not None:
            self._checkpoints.join()
        self.con.close()

    def _db_insert(self, table: str, data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        before = self.count(table)
        self.con.register("incoming", data)
        # Keys are enforced here rather than by a primary-key index: a hash anti-join against
        # the stored rows (restricted to the batch's first key column) and one row per key
        # within the batch. This is 4x faster than maintaining the index on bulk loads;
        # DuckDB allows one writing process, so no concurrent writer can slip a key in.
        key = KEYS[table]
        keys = ", ".join(key)
        on = " AND ".join(f"t.{k} = i.{k}" for k in key)  # key columns are NOT NULL
        # Counting distinct keys (a parallel hash aggregate) costs a third of keeping the first
        # row of each key, so the latter runs only when the batch repeats itself.
        unique = f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM incoming)"  # nosec B608
        distinct = self._run(unique)[0][0]
        batch = "incoming"
        if distinct != data.num_rows:
            first = f"QUALIFY row_number() OVER (PARTITION BY {keys}) = 1"
            batch = f"(SELECT * FROM incoming {first})"  # nosec B608
        # A key with a time: stored rows outside the batch's time span cannot match, and the
        # bounds as constants let DuckDB skip whole row groups by their min/max (data arrive
        # in about time order), so a live feed's insert costs the same after a day as after a
        # minute instead of scanning each patient's whole history.
        span, args = "", []
        when = next((k for k in key if pa.types.is_timestamp(data.schema.field(k).type)), None)
        if when is not None:
            bounds = pc.min_max(data.column(when))
            span = f" AND t.{when} BETWEEN ? AND ?"
            args = [bounds["min"].as_py(), bounds["max"].as_py()]
        self._run(
            f"INSERT INTO {table} SELECT * FROM {batch} i "  # nosec B608
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key[0]} IN "
            f"(SELECT {key[0]} FROM incoming){span} AND {on})",
            args,
        )
        self.con.unregister("incoming")
        return self.count(table) - before

    def _member(
        self, col: str, op: str, values: list[str], args: list[object], registered: list[str]
    ) -> str:
        """``col IN (...)`` (or ``NOT IN``): parameters for a short list; for a long one a
        semi-join on a registered Arrow column, far faster than thousands of parameters (the
        caller unregisters ``registered``)."""
        if not values:
            return "false" if op == "in" else "true"
        if len(values) <= 64:
            args.extend(values)
            return f"{col} {op.upper()} ({', '.join('?' * len(values))})"
        name = f"_in_{len(registered)}"
        self.con.register(name, pa.table({"v": pa.array(values, pa.string())}))
        registered.append(name)
        return f"{col} {op.upper()} (SELECT v FROM {name})"  # nosec B608

    def _db_delete(self, table: str, column: str, values: list[str]) -> None:
        if table not in TABLES or column not in KEYS[table]:
            raise ValueError(f"no key {column!r} in {table!r}")
        args: list[object] = []
        registered: list[str] = []
        try:
            cond = self._member(column, "in", list(values), args, registered)
            self._run(f"DELETE FROM {table} WHERE {cond}", args)  # nosec B608
        finally:
            for name in registered:
                self.con.unregister(name)

    def _db_set_status(self, rows: pa.Table) -> None:
        self.con.register("status_update", rows)
        on = " AND ".join(f"observations.{k} = u.{k}" for k in KEYS["observations"])
        update = f"UPDATE observations SET status = u.status FROM status_update u WHERE {on}"  # nosec B608
        self._run(update)
        self.con.unregister("status_update")

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        n = self._run(f"SELECT count(*) FROM {table}")[0][0]  # nosec B608
        assert isinstance(n, int)
        return n

    def _db_select(
        self, table: str, where: list[tuple[str, str, object]], order: tuple[str, ...]
    ) -> pa.Table:
        conds: list[str] = []
        args: list[object] = []
        registered: list[str] = []
        for col, op, val in where:
            if op in ("in", "not in"):
                assert isinstance(val, list)
                conds.append(self._member(col, op, val, args, registered))
            else:
                conds.append(f"{col} {op} ?")
                args.append(val)
        sql = f"SELECT * FROM {table}"  # nosec B608
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        try:
            rel = self.con.sql(sql + f" ORDER BY {', '.join(order)}", params=args)
            return rel.to_arrow_table().cast(STORED[table])
        finally:
            for name in registered:
                self.con.unregister(name)

    def _db_batches(self, table: str, rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        order = ", ".join(KEYS[table])
        cur = self.con.cursor()  # its own cursor: other reads may run between batches
        try:
            query = f"SELECT * FROM {table} ORDER BY {order}"  # nosec B608
            reader = cur.sql(query).to_arrow_reader(rows)
            for batch in reader or ():
                yield pa.Table.from_batches([batch]).cast(STORED[table]).to_batches()[0]
        finally:
            cur.close()

    def _db_table(self, table: str) -> pa.Table:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        order = ", ".join(KEYS[table])
        return (
            self.con.sql(f"SELECT * FROM {table} ORDER BY {order}")  # nosec B608
            .to_arrow_table()
            .cast(STORED[table])
        )
