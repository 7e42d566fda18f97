"""The embedded store: DuckDB in a local directory.

Observations are unique on (patient, effective time, LOINC code, value, unit): the same
measurement arriving twice — the same file ingested again, or the same value from two feeds — is
stored once and counted as a duplicate. Every ingestion returns its counts, which add up to the
records read: stored + quarantined + duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from vitaltwin.data.schema import LABELS, OBSERVATIONS, PATIENTS, QUARANTINE

_DDL = """
CREATE TABLE IF NOT EXISTS observations (
    patient_id VARCHAR NOT NULL, effective_time TIMESTAMPTZ NOT NULL, loinc VARCHAR NOT NULL,
    value DOUBLE NOT NULL, unit VARCHAR NOT NULL, source VARCHAR NOT NULL,
    position VARCHAR NOT NULL, device VARCHAR, received_time TIMESTAMPTZ NOT NULL,
    quality VARCHAR,
    PRIMARY KEY (patient_id, effective_time, loinc, value, unit)
);
CREATE TABLE IF NOT EXISTS quarantine (
    source VARCHAR NOT NULL, position VARCHAR NOT NULL, field VARCHAR NOT NULL,
    raw_value VARCHAR, reason VARCHAR NOT NULL, received_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, position, field)
);
CREATE TABLE IF NOT EXISTS patients (
    patient_id VARCHAR PRIMARY KEY, sex VARCHAR, age_years DOUBLE,
    icu_admission_time TIMESTAMPTZ, hospital_admission_time TIMESTAMPTZ, icu_unit VARCHAR,
    source VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    patient_id VARCHAR NOT NULL, time TIMESTAMPTZ NOT NULL, label VARCHAR NOT NULL,
    value TINYINT NOT NULL, source VARCHAR NOT NULL,
    PRIMARY KEY (patient_id, time, label)
);
"""

_OBS_KEY = ("patient_id", "effective_time", "loinc", "value", "unit")
_Q_KEY = ("source", "position", "field")


@dataclass(frozen=True)
class IngestCounts:
    """What became of the records read: they add up (``read == stored + quarantined +
    duplicates``)."""

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


class DuckDBStore:
    """Canonical record in ``directory/vitaltwin.duckdb``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.directory / "vitaltwin.duckdb"))
        self._run("SET TimeZone = 'UTC'")
        self._run(_DDL)

    def _run(self, sql: str, args: list[object] | None = None) -> list[tuple[object, ...]]:
        """Execute and consume the result (DuckDB needs a result finished before more work)."""
        return self.con.execute(sql, args or []).fetchall()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _insert_new(self, table: str, data: pa.Table, key: tuple[str, ...]) -> int:
        """Insert rows whose key is not stored yet (and not repeated within ``data``)."""
        if data.num_rows == 0:
            return 0
        self.con.register("incoming", data)
        on = " AND ".join(f"t.{k} IS NOT DISTINCT FROM i.{k}" for k in key)
        keys = ", ".join(key)
        before = self._count(table)
        self._run(
            f"INSERT INTO {table} SELECT * FROM (SELECT * FROM incoming "
            f"QUALIFY row_number() OVER (PARTITION BY {keys}) = 1) i "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {on})"
        )
        self.con.unregister("incoming")
        return self._count(table) - before

    def _count(self, table: str) -> int:
        rows = self._run(f"SELECT count(*) FROM {table}")
        n = rows[0][0]
        assert isinstance(n, int)
        return n

    def ingest(
        self,
        observations: pa.Table,
        quarantine: pa.Table,
        read: int,
        patients: pa.Table | None = None,
        labels: pa.Table | None = None,
    ) -> IngestCounts:
        """Store a converted batch; returns the counts (raises if they do not add up)."""
        if observations.schema != OBSERVATIONS or quarantine.schema != QUARANTINE:
            raise TypeError("observations and quarantine must use the canonical schemas")
        stored = self._insert_new("observations", observations, _OBS_KEY)
        q_new = self._insert_new("quarantine", quarantine, _Q_KEY)
        dup = (observations.num_rows - stored) + (quarantine.num_rows - q_new)
        counts = IngestCounts(read, stored, q_new, dup)
        if counts.stored + counts.quarantined + counts.duplicates != read:
            raise RuntimeError(f"records unaccounted for: {counts}")
        if patients is not None and patients.schema == PATIENTS:
            self._insert_new("patients", patients, ("patient_id",))
        if labels is not None and labels.schema == LABELS:
            self._insert_new("labels", labels, ("patient_id", "time", "label"))
        return counts

    def observations(
        self,
        patient_id: str,
        loinc: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pa.Table:
        """Observations of one patient, optionally one code and a time range [start, end)."""
        sql = "SELECT * FROM observations WHERE patient_id = ?"
        args: list[object] = [patient_id]
        if loinc is not None:
            sql += " AND loinc = ?"
            args.append(loinc)
        if start is not None:
            sql += " AND effective_time >= ?"
            args.append(start)
        if end is not None:
            sql += " AND effective_time < ?"
            args.append(end)
        rel = self.con.sql(sql + " ORDER BY effective_time, loinc", params=args)
        return rel.to_arrow_table()

    def count(self, table: str) -> int:
        if table not in {"observations", "quarantine", "patients", "labels"}:
            raise ValueError(f"no table {table!r}")
        return self._count(table)

    def export_parquet(self, directory: str | Path) -> dict[str, Path]:
        """Every table to ``directory/TABLE.parquet``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for t in ("observations", "quarantine", "patients", "labels"):
            paths[t] = out / f"{t}.parquet"
            self._run(f"COPY {t} TO '{paths[t]}' (FORMAT PARQUET)")
        return paths
