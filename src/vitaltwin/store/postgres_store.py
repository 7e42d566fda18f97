"""The server store: PostgreSQL through psycopg 3, loading with COPY.

Each ingestion drops repeats within the batch, then COPYs (CSV written by Arrow) the rows of
patients with nothing stored straight into the table, and the others through a temporary staging
table and an anti-join on the record's key; writers are serialised by a table lock, so
re-ingesting is idempotent and the counts are exact.
Tables live in one schema (``vitaltwin`` by default), so several stores can share a database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from vitaltwin.store._base import KEYS, STORED, TABLES, Store, unique_rows
from vitaltwin.store._sealed import SEALED


def _arrow(rows: list[tuple[object, ...]], table: str) -> pa.Table:
    """Rows fetched from ``table`` as Arrow, as stored (:data:`STORED`)."""
    schema = STORED[table]
    cols: list[list[object]] = [[r[i] for r in rows] for i in range(len(schema))]
    return pa.table(
        {f.name: pa.array(c, type=f.type) for f, c in zip(schema, cols, strict=True)},
        schema=schema,
    )


_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "observations": (
        ("patient_id", "text NOT NULL"),
        ("effective_time", "timestamptz NOT NULL"),
        ("loinc", "text NOT NULL"),
        ("value", "double precision NOT NULL"),
        ("unit", "text NOT NULL"),
        ("source", "text NOT NULL"),
        ("position", "text NOT NULL"),
        ("device", "text"),
        ("received_time", "timestamptz NOT NULL"),
        ("quality", "text"),
        ("comparator", "text NOT NULL DEFAULT '='"),
        ("status", "text NOT NULL DEFAULT 'final'"),
        ("method", "text"),
    ),
    "quarantine": (
        ("source", "text NOT NULL"),
        ("position", "text NOT NULL"),
        ("field", "text NOT NULL"),
        ("raw_value", "text"),
        ("reason", "text NOT NULL"),
        ("received_time", "timestamptz NOT NULL"),
    ),
    "patients": (
        ("patient_id", "text NOT NULL"),
        ("sex", "text"),
        ("age_years", "double precision"),
        ("birth_date", "text"),
        ("icu_admission_time", "timestamptz"),
        ("hospital_admission_time", "timestamptz"),
        ("icu_unit", "text"),
        ("source", "text NOT NULL"),
        ("merged_into", "text"),
    ),
    "labels": (
        ("patient_id", "text NOT NULL"),
        ("time", "timestamptz NOT NULL"),
        ("label", "text NOT NULL"),
        ("value", "smallint NOT NULL"),
        ("source", "text NOT NULL"),
    ),
    "encounters": (
        ("encounter_id", "text NOT NULL"),
        ("patient_id", "text NOT NULL"),
        ("start_time", "timestamptz"),
        ("end_time", "timestamptz"),
        ("kind", "text"),
        ("source", "text NOT NULL"),
        ("status", "text"),
        ("location", "text"),
    ),
    "conditions": (
        ("patient_id", "text NOT NULL"),
        ("code", "text NOT NULL"),
        ("display", "text"),
        ("onset_time", "timestamptz"),
        ("source", "text NOT NULL"),
    ),
    "medications": (
        ("patient_id", "text NOT NULL"),
        ("drug", "text NOT NULL"),
        ("start_time", "timestamptz NOT NULL"),
        ("end_time", "timestamptz"),
        ("dose", "double precision"),
        ("dose_unit", "text"),
        ("rate", "double precision"),
        ("rate_unit", "text"),
        ("source", "text NOT NULL"),
    ),
    "waveforms": (
        ("patient_id", "text NOT NULL"),
        ("start_time", "timestamptz NOT NULL"),
        ("code", "text NOT NULL"),
        ("period_ms", "double precision NOT NULL"),
        ("origin", "double precision NOT NULL"),
        ("factor", "double precision NOT NULL"),
        ("unit", "text"),
        ("dimensions", "integer NOT NULL"),
        ("data", "text NOT NULL"),
        ("source", "text NOT NULL"),
        ("position", "text NOT NULL"),
    ),
    "patient_events": (
        ("patient_id", "text NOT NULL"),
        ("event", "text NOT NULL"),
        ("event_time", "timestamptz"),
        ("encounter_id", "text"),
        ("location", "text"),
        ("prior_location", "text"),
        ("prior_patient_id", "text"),
        ("sex", "text"),
        ("birth_date", "text"),
        ("source", "text NOT NULL"),
        ("position", "text NOT NULL"),
    ),
}


_INDEX: dict[str, tuple[str, ...]] = {
    "observations": ("patient_id",),  # a wider index costs 3x on bulk loads
    "quarantine": ("source", "position"),
    "patients": ("patient_id",),
    "labels": ("patient_id", "time"),
    "encounters": ("patient_id",),
    "conditions": ("patient_id",),
    "medications": ("patient_id",),
    "waveforms": ("patient_id",),
    "patient_events": ("patient_id",),
}


class PostgresStore(Store):
    """Canonical record in PostgreSQL (``conninfo`` as for ``psycopg.connect``)."""

    def __init__(self, conninfo: str, schema: str = "vitaltwin") -> None:
        self.schema = schema
        self.con = psycopg.connect(conninfo, autocommit=False)
        with self.con.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            for t, cols in _COLUMNS.items():
                body = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(ty)) for c, ty in cols
                )
                cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self._t(t), body))
                # A plain index on the lookup columns serves range queries and the key check.
                idx = _INDEX[t]
                cur.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                        sql.Identifier(f"{t}_lookup"),
                        self._t(t),
                        sql.SQL(", ").join(map(sql.Identifier, idx)),
                    )
                )
            # a store made by an earlier release gets the columns added since, once, on open
            cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s",
                [schema],
            )
            typed = cur.fetchall()
            have = {(str(t), str(c)) for t, c, _ in typed}
            for t, c, kind in typed:  # birth dates were dates before they could be sealed
                if kind == "date" and c in SEALED.get(str(t), ()):
                    cur.execute(
                        sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE text USING to_char({}, {})")
                        .format(self._t(str(t)), sql.Identifier(str(c)), sql.Identifier(str(c)),
                                sql.Literal("YYYY-MM-DD"))
                    )  # fmt: skip
            for t, cols in _COLUMNS.items():
                for column, kind in cols:
                    if (t, column) not in have:
                        cur.execute(
                            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                                self._t(t), sql.Identifier(column), sql.SQL(kind)
                            )
                        )
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, "
                    "saved_at timestamptz NOT NULL, data bytea NOT NULL)"
                ).format(self._t("service_state"))
            )
            if ("observations", "status") not in have and ("observations", "loinc") in have:
                # quarantine entries are keyed by content; earlier stores kept NULL raw values
                cur.execute(
                    sql.SQL("UPDATE {} SET raw_value = '' WHERE raw_value IS NULL").format(
                        self._t("quarantine")
                    )
                )
        self.con.commit()

    def _t(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    def describe(self) -> str:
        info = self.con.info
        return f"PostgreSQL {info.host}:{info.port}/{info.dbname}, schema {self.schema}"

    def close(self) -> None:
        self.con.close()

    def _db_save_state(self, key: str, data: bytes, at: datetime) -> None:
        with self.con.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE "
                    "SET saved_at = EXCLUDED.saved_at, data = EXCLUDED.data"
                ).format(self._t("service_state")),
                [key, at, data],
            )
        self.con.commit()

    def _db_state_keys(self) -> list[str]:
        with self.con.cursor() as cur:
            cur.execute(sql.SQL("SELECT key FROM {} ORDER BY key").format(self._t("service_state")))
            keys = [str(k) for (k,) in cur.fetchall()]
        self.con.commit()
        return keys

    def _db_distinct(self, table: str, column: str) -> list[str]:
        if table not in TABLES or column not in STORED[table].names:
            raise ValueError(f"no column {column!r} in {table!r}")
        with self.con.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL").format(
                    c=sql.Identifier(column), t=self._t(table)
                )
            )
            values = [str(v) for (v,) in cur.fetchall()]
        self.con.commit()
        return values

    def _db_rewrite(self, table: str, column: str, old: list[str], new: list[str]) -> None:
        if table not in TABLES or column not in STORED[table].names:
            raise ValueError(f"no column {column!r} in {table!r}")
        with self.con.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {t} SET {c} = r.new FROM unnest(%s::text[], %s::text[]) "
                    "AS r(old, new) WHERE {t}.{c} = r.old"
                ).format(t=self._t(table), c=sql.Identifier(column)),
                [old, new],
            )
        self.con.commit()

    def _db_load_state(self, key: str) -> tuple[bytes, datetime] | None:
        with self.con.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT data, saved_at FROM {} WHERE key = %s").format(
                    self._t("service_state")
                ),
                [key],
            )
            row = cur.fetchone()
        self.con.commit()
        if row is None:
            return None
        return bytes(row[0]), row[1].astimezone(UTC)

    def drop(self) -> None:
        """Remove this store's schema and everything in it."""
        with self.con.cursor() as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )
        self.con.commit()

    def _copy(
        self, cur: psycopg.Cursor[tuple[object, ...]], target: sql.Composable, data: pa.Table
    ) -> None:
        """COPY ``data`` into ``target`` as CSV written by Arrow's C++ writer (far faster than
        building rows in Python). Strings are quoted, so an empty string stays a string and a null
        stays NULL. Timestamps are written as naive UTC text, which the session's UTC time zone
        reads back exactly: Arrow formats zone-aware timestamps ten times slower."""
        cols = [f.name for f in data.schema]
        naive = data.select(cols)
        for i, f in enumerate(naive.schema):
            if pa.types.is_timestamp(f.type) and f.type.tz is not None:
                naive = naive.set_column(i, f.name, naive.column(i).cast(pa.timestamp(f.type.unit)))
        buf = pa.BufferOutputStream()
        pacsv.write_csv(naive, buf)
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
            target, sql.SQL(", ").join(map(sql.Identifier, cols))
        )
        with cur.copy(copy_sql) as copy:
            copy.write(buf.getvalue().to_pybytes())

    def _db_insert(self, table: str, data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        key = KEYS[table]
        data = unique_rows(data.select([c for c, _ in _COLUMNS[table]]), key)
        with self.con.cursor() as cur:
            # Writers of this table are serialised by a lock, so the key check below is exact
            # under concurrency; keys are checked by the code rather than a unique index, which
            # costs 3x on bulk loads.
            cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._t(table)))
            # Rows whose first key value (the patient, for clinical tables) has nothing stored
            # yet cannot collide: they are COPYed straight in. The others go through a staging
            # table and an anti-join on the whole key.
            first = key[0]
            firsts = pc.unique(data.column(first)).to_pylist()
            cur.execute(
                sql.SQL("SELECT DISTINCT {f} FROM {t} WHERE {f} = ANY(%s)").format(
                    f=sql.Identifier(first), t=self._t(table)
                ),
                [firsts],
            )
            seen = pa.array([r[0] for r in cur.fetchall()], type=data.schema.field(first).type)
            stored_before = pc.is_in(data.column(first), value_set=seen)
            fresh = data.filter(pc.invert(stored_before))
            rest = data.filter(stored_before)
            n = fresh.num_rows
            if n:
                self._copy(cur, self._t(table), fresh)
            if rest.num_rows:
                stage = sql.Identifier(f"stage_{table}")
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DROP").format(
                        stage, self._t(table)
                    )
                )
                self._copy(cur, stage, rest)
                on = sql.SQL(" AND ").join(
                    sql.SQL("t.{k} = i.{k}").format(k=sql.Identifier(k)) for k in key
                )
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {t} SELECT * FROM {s} i "
                        "WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE {on})"
                    ).format(t=self._t(table), s=stage, on=on)
                )
                n += cur.rowcount
        self.con.commit()
        return int(n)

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        with self.con.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(self._t(table)))
            row = cur.fetchone()
        self.con.commit()
        return int(row[0]) if row else 0

    def _fetch(self, query: sql.Composed, args: list[object], table: str) -> pa.Table:
        with self.con.cursor() as cur:
            cur.execute(query, args)
            rows = cur.fetchall()
        self.con.commit()
        return _arrow(rows, table)

    def _db_delete(self, table: str, column: str, values: list[str]) -> None:
        with self.con.cursor() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                    self._t(table), sql.Identifier(column)
                ),
                [list(values)],
            )
        self.con.commit()

    def _db_set_status(self, rows: pa.Table) -> None:
        key = KEYS["observations"]
        with self.con.cursor() as cur:
            cur.execute(
                sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._t("observations"))
            )
            stage = sql.Identifier("stage_status")
            cur.execute(
                sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM {} LIMIT 0").format(
                    stage,
                    sql.SQL(", ").join(map(sql.Identifier, [*key, "status"])),
                    self._t("observations"),
                )
            )
            cur.execute(sql.SQL("TRUNCATE {}").format(stage))
            self._copy(cur, stage, rows.select([*key, "status"]))
            on = sql.SQL(" AND ").join(
                sql.SQL("o.{k} = u.{k}").format(k=sql.Identifier(k)) for k in key
            )
            cur.execute(
                sql.SQL("UPDATE {} o SET status = u.status FROM {} u WHERE {}").format(
                    self._t("observations"), stage, on
                )
            )
        self.con.commit()

    def _db_batches(self, table: str, rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        order = sql.SQL(", ").join(map(sql.Identifier, KEYS[table]))
        query = sql.SQL("SELECT * FROM {} ORDER BY {}").format(self._t(table), order)
        # a server-side cursor: the server sends ``rows`` at a time
        try:
            with self.con.cursor(name=f"vitaltwin_{table}") as cur:
                cur.itersize = rows
                cur.execute(query)
                while chunk := cur.fetchmany(rows):
                    yield _arrow(chunk, table).to_batches()[0]
        finally:
            self.con.commit()

    def _db_select(
        self, table: str, where: list[tuple[str, str, object]], order: tuple[str, ...]
    ) -> pa.Table:
        q = sql.SQL("SELECT * FROM {}").format(self._t(table))
        conds: list[sql.Composable] = []
        args: list[object] = []
        for col, op, val in where:
            if op == "in":
                conds.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(col)))
            elif op == "not in":
                conds.append(sql.SQL("NOT ({} = ANY(%s))").format(sql.Identifier(col)))
            else:
                conds.append(sql.SQL("{} " + op + " %s").format(sql.Identifier(col)))
            args.append(val)
        if conds:
            q = q + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds)
        by = sql.SQL(", ").join(map(sql.Identifier, order))
        return self._fetch(q + sql.SQL(" ORDER BY ") + by, args, table)

    def _db_table(self, table: str) -> pa.Table:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        order = sql.SQL(", ").join(map(sql.Identifier, KEYS[table]))
        return self._fetch(
            sql.SQL("SELECT * FROM {} ORDER BY {}").format(self._t(table), order), [], table
        )
