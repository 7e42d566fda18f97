"""Benchmark: ingesting the shared PhysioNet 2019 set A into DuckDB and PostgreSQL.

Each figure is printed beside the raw floor measured in the same run on the same rows: for
DuckDB, an Arrow insert into a table without keys; for PostgreSQL, a binary COPY into a table
without indexes. vitaltwin's path adds conversion (LOINC/UCUM mapping, plausibility
quarantine), key checks (idempotence) and the accounting. It also checks that all of set A ingests
with stored + quarantined + duplicates = values present, on both backends.

Run: ``make bench`` (needs ../shared/data and PostgreSQL at 127.0.0.1:5432).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from vitaltwin.interop.physionet import VARIABLES, convert
from vitaltwin.store import DuckDBStore, PostgresStore

SET_A = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "physionet2019"
    / ("training_setA.parquet")
)
PG = "host=127.0.0.1 dbname=test user=postgres"
console = Console()


def main() -> None:
    if not SET_A.exists():
        console.print(f"[bold red]{SET_A} not found: the ingestion benchmark needs the shared data")
        raise SystemExit(1)
    df = pd.read_parquet(SET_A)
    present = int(df[[v.column for v in VARIABLES]].notna().sum().sum())
    t0 = time.perf_counter()
    conv = convert(df, source=SET_A.name)
    t_convert = time.perf_counter() - t0
    obs = conv.observations
    n = obs.num_rows
    console.print(
        f"set A: {df.patient_id.nunique():,} patients, {len(df):,} rows, {present:,} values "
        f"present -> {n:,} observations + {conv.quarantine.num_rows:,} quarantined; "
        f"conversion {t_convert:.1f} s ({present / t_convert:,.0f} values/s)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(str(Path(d) / "floor.duckdb"))
        con.execute("CREATE TABLE o AS SELECT * FROM obs LIMIT 0").fetchall()
        t0 = time.perf_counter()
        con.execute("INSERT INTO o SELECT * FROM obs").fetchall()
        floor = n / (time.perf_counter() - t0)
        con.close()
        with DuckDBStore(Path(d) / "store") as st:
            t0 = time.perf_counter()
            c = st.ingest(obs, conv.quarantine, conv.values_read, conv.patients, conv.labels)
            rate = n / (time.perf_counter() - t0)
            again = st.ingest(obs, conv.quarantine, conv.values_read)
        rows.append(("DuckDB", rate, floor, c, again))

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    pg = PostgresStore(PG, schema=schema)
    try:
        with psycopg.connect(PG) as raw, raw.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE TABLE {}.floor (LIKE {}.observations)").format(
                    sql.Identifier(schema), sql.Identifier(schema)
                )
            )
            cols = [f.name for f in obs.schema]
            data = list(zip(*(obs.column(c).to_pylist() for c in cols), strict=True))
            t0 = time.perf_counter()
            with cur.copy(
                sql.SQL("COPY {}.floor FROM STDIN (FORMAT BINARY)").format(sql.Identifier(schema))
            ) as cp:
                cp.set_types(
                    [
                        "text",
                        "timestamptz",
                        "text",
                        "float8",
                        "text",
                        "text",
                        "text",
                        "text",
                        "timestamptz",
                        "text",
                    ]
                )
                for r in data:
                    cp.write_row(r)
            floor = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        c = pg.ingest(obs, conv.quarantine, conv.values_read, conv.patients, conv.labels)
        rate = n / (time.perf_counter() - t0)
        again = pg.ingest(obs, conv.quarantine, conv.values_read)
        rows.append(("PostgreSQL", rate, floor, c, again))
    finally:
        pg.drop()
        pg.close()

    tab = Table(title="Observations ingested per second (set A, higher is better)")
    for col in (
        "backend",
        "vitaltwin",
        "raw floor",
        "ratio",
        "counts (stored/quar./dup.)",
        "re-ingest duplicates",
        "adds up",
    ):
        tab.add_column(col)
    for name, rate, floor, c, again in rows:
        tab.add_row(
            name,
            f"{rate:,.0f}",
            f"{floor:,.0f}",
            f"{rate / floor:.2f}x",
            f"{c.stored:,} / {c.quarantined:,} / {c.duplicates:,}",
            f"{again.duplicates:,}",
            "yes" if c.stored + c.quarantined + c.duplicates == present == c.read else "NO",
        )
    console.print(tab)
    fhir_parse()


def fhir_parse() -> None:
    """FHIR Observations parsed and validated per second vs plain JSON parsing of the same."""
    import gzip
    import json

    from vitaltwin.interop.fhir import convert_file

    bundles = sorted((SET_A.parents[1] / "fhir" / "synthea").glob("*.json.gz"))[:20]
    lines = []
    for b in bundles:
        with gzip.open(b, "rt", encoding="utf-8") as fh:
            doc = json.load(fh)
        lines += [
            json.dumps(e["resource"])
            for e in doc.get("entry", [])
            if e.get("resource", {}).get("resourceType") == "Observation"
        ]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "obs.ndjson"
        path.write_text("\n".join(lines))
        t0 = time.perf_counter()
        for line in lines:
            json.loads(line)
        floor = len(lines) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        c = convert_file(path)
        rate = len(lines) / (time.perf_counter() - t0)
    tab = Table(title="FHIR R4 Observations per second (Synthea, higher is better)")
    for col in ("step", "vitaltwin", "floor: json.loads", "ratio"):
        tab.add_column(col)
    tab.add_row(
        f"parse + validate (fhirclient) + convert, {len(lines):,} Observations -> "
        f"{c.observations.num_rows:,} values, {c.quarantine.num_rows:,} quarantined",
        f"{rate:,.0f}",
        f"{floor:,.0f}",
        f"{rate / floor:.3f}x",
    )
    console.print(tab)


if __name__ == "__main__":
    main()
