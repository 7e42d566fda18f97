"""Benchmark: ingesting the shared PhysioNet 2019 set A into DuckDB and PostgreSQL.

Each figure is printed beside the raw floor measured in the same run on the same rows (the
observations, quarantine, patients and labels vitaltwin writes): for DuckDB, Arrow inserts into
tables without keys; for PostgreSQL, binary COPY into tables with the store's lookup indexes (a
live store needs them for range queries by patient) and without any. Both rates are observations
per second of the whole write. vitaltwin's path adds the key checks (idempotence)
and the accounting; conversion (LOINC/UCUM mapping, plausibility quarantine) is timed apart.
It also checks that all of set A ingests with stored + quarantined + duplicates = values present,
on both backends.

Run: ``make bench`` (needs ../shared/data and PostgreSQL at 127.0.0.1:5432).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql
from rich.console import Console

from _timing import best_of, save_figures, table
from vitaltwin.data import Record
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
console = Console(width=150)


def main() -> None:
    if not SET_A.exists():
        console.print(f"[bold red]{SET_A} not found: the ingestion benchmark needs the shared data")
        raise SystemExit(1)
    df = pd.read_parquet(SET_A)
    present = int(df[[v.name for v in VARIABLES]].notna().sum().sum())
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
    # The floors write the same rows vitaltwin writes: observations, quarantine, patients, labels.
    batch = {
        "observations": obs,
        "quarantine": conv.quarantine,
        "patients": conv.patients,
        "labels": conv.labels,
    }
    rows = []
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(str(Path(d) / "floor.duckdb"))
        elapsed = 0.0
        for name, data in batch.items():
            con.register("incoming", data)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM incoming LIMIT 0").fetchall()
            t0 = time.perf_counter()
            con.execute(f"INSERT INTO {name} SELECT * FROM incoming").fetchall()
            elapsed += time.perf_counter() - t0
            con.unregister("incoming")
        floor = n / elapsed
        con.close()
        with DuckDBStore(Path(d) / "store") as st:
            t0 = time.perf_counter()
            c = st.ingest(obs, conv.quarantine, conv.values_read, conv.patients, conv.labels)
            rate = n / (time.perf_counter() - t0)
            again = st.ingest(obs, conv.quarantine, conv.values_read)
        rows.append(("DuckDB", rate, floor, c, again))
        sealed = encryption_overhead(Path(d), conv, rate)

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    pg = PostgresStore(PG, schema=schema)
    try:
        floors = {like: pg_copy_floor(schema, batch, like) for like in ("", "INCLUDING INDEXES")}
        t0 = time.perf_counter()
        c = pg.ingest(obs, conv.quarantine, conv.values_read, conv.patients, conv.labels)
        rate = n / (time.perf_counter() - t0)
        again = pg.ingest(obs, conv.quarantine, conv.values_read)
        rows.append(
            ("PostgreSQL vs COPY, the store's indexes", rate, floors["INCLUDING INDEXES"], c, again)
        )
        rows.append(("PostgreSQL vs COPY, no index", rate, floors[""], c, again))
    finally:
        pg.drop()
        pg.close()

    tab = table(
        "Observations ingested per second (set A, higher is better)",
        "backend",
        "vitaltwin",
        "raw floor",
        "ratio",
        "counts (stored/quar./dup.)",
        "re-ingest duplicates",
        "adds up",
    )
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
    keys = ("duckdb", "postgres_indexed_floor", "postgres_unindexed_floor")
    figures: dict[str, object] = {
        "set_a": {"values_present": present, "conversion_values_per_s": present / t_convert},
        **{
            key: {
                "observations_per_s": rate,
                "floor_observations_per_s": floor,
                "ratio": rate / floor,
                "adds_up": c.stored + c.quarantined + c.duplicates == present == c.read,
                "reingest_duplicates": again.duplicates,
            }
            for key, (_, rate, floor, c, again) in zip(keys, rows, strict=True)
        },
    }
    figures["duckdb_encrypted"] = sealed
    figures["fhir"] = fhir_parse()
    figures["fhir_export"] = fhir_export(obs)
    figures["memory"] = memory()
    save_figures("ingest", figures, console.print)


def encryption_overhead(folder: Path, conv: Record, plain_rate: float) -> dict[str, float]:
    """Set A into an encrypted DuckDB store (identifying columns sealed, :mod:`vitaltwin.store`)
    beside the plain store's rate measured just before; then the reads the service makes: one
    patient's observations, 100 patients', the whole table, plain vs encrypted."""
    from vitaltwin.governance import FileKeys, encrypt_store

    obs = conv.observations
    ids = sorted(set(obs.column("patient_id").to_pylist()))
    reads: dict[str, dict[str, float]] = {}
    with DuckDBStore(folder / "sealed") as st:
        encrypt_store(st, FileKeys(folder / "keys", create=True))
        t0 = time.perf_counter()
        st.ingest(obs, conv.quarantine, conv.values_read, conv.patients, conv.labels)
        rate = obs.num_rows / (time.perf_counter() - t0)
        with DuckDBStore(folder / "store") as plain:
            for name, store in (("plain", plain), ("encrypted", st)):
                reads[name] = {
                    "one_patient_ms": best_of(partial(store.observations, ids[500]), 5) * 1000,
                    "hundred_patients_ms": best_of(partial(store.observations, ids[:100]), 5)
                    * 1000,
                    "whole_table_s": best_of(partial(store.table, "observations"), 1),
                }
    tab = table("Encrypted store (set A; DuckDB)", "", "plain", "encrypted", "ratio")
    tab.add_row("ingest (observations/s)", f"{plain_rate:,.0f}", f"{rate:,.0f}",
                f"{rate / plain_rate:.2f}x")  # fmt: skip
    for key in ("one_patient_ms", "hundred_patients_ms", "whole_table_s"):
        a, b = reads["plain"][key], reads["encrypted"][key]
        tab.add_row(key.replace("_", " "), f"{a:,.1f}", f"{b:,.1f}", f"{b / a:.2f}x")
    console.print(tab)
    return {"observations_per_s": rate, "plain_observations_per_s": plain_rate,
            **{f"{k}_{m}": v for k, r in reads.items() for m, v in r.items()}}  # fmt: skip


def pg_copy_floor(schema: str, batch: dict[str, pa.Table], like: str) -> float:
    """Observations per second of a binary COPY of the batch's rows (prepared as Python tuples
    beforehand, not timed) into fresh tables shaped like the store's (``like``: LIKE options)."""
    n = batch["observations"].num_rows
    elapsed = 0.0
    tag = "ix" if like else "plain"
    with psycopg.connect(PG) as raw, raw.cursor() as cur:
        for name, frame in batch.items():
            floor_t = sql.Identifier(schema, f"floor_{tag}_{name}")
            cur.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} {})").format(
                    floor_t, sql.Identifier(schema, name), sql.SQL(like)
                )
            )
            cur.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 ORDER BY a.attnum",
                [f"{schema}.floor_{tag}_{name}"],
            )
            cols, types = zip(*cur.fetchall(), strict=True)
            data = list(zip(*(frame.column(c).to_pylist() for c in cols), strict=True))
            t0 = time.perf_counter()
            with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(floor_t)) as cp:
                cp.set_types(list(types))
                for r in data:
                    cp.write_row(r)
            elapsed += time.perf_counter() - t0
    return float(n / elapsed)


CHILD = """
import sys, time
from vitaltwin.interop import read_any, read_chunks
from vitaltwin.store import DuckDBStore
mode, path, store = sys.argv[1:4]
t0 = time.perf_counter()
n = 0
with DuckDBStore(store) as st:
    for rec in ([read_any(path)] if mode == "whole" else read_chunks(path)):
        n += st.ingest_record(rec).read
wall = time.perf_counter() - t0
# VmHWM: this program's peak RSS (ru_maxrss would include the parent's pages at fork)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(n, wall, int(hwm) / 1024)
"""


def _ingest_in_child(mode: str, path: Path, store: Path) -> dict[str, float]:
    """Records read, seconds and peak RSS (MiB) of one ingestion in a fresh process."""
    import subprocess
    import sys

    out = (
        subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(path), str(store)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.splitlines()[-1]
        .split()
    )
    n, wall, rss = int(out[0]), float(out[1]), float(out[2])
    return {"records": n, "seconds": wall, "records_per_s": n / wall, "peak_rss_mib": rss}


def _stream_csv(path: Path, megabytes: int) -> None:
    """A device-stream CSV of about ``megabytes`` MB: 1 Hz HR, SpO2 and MAP of 200 patients."""
    codes = (("HR", "/min", 60, 60), ("SPO2", "%", 90, 10), ("NBP-M", "mm[Hg]", 60, 40))
    with path.open("w") as fh:
        fh.write("patient_id,time,code,value,unit\n")
        t, written = 1_764_000_000, 0
        while written < megabytes * 1_000_000:
            lines = "".join(
                f"p{p:03d},{t},{c},{lo + (t + p) % span},{u}\n"
                for p in range(200)
                for c, u, lo, span in codes
            )
            fh.write(lines)
            written += len(lines)
            t += 1


def _fhir_ndjson(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            res = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/p{i % 500}"},
                "effectiveDateTime": f"2026-11-{1 + i // 86400 % 28:02d}T"
                f"{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "valueQuantity": {"value": 60 + i % 60, "unit": "/min", "code": "/min"},
            }
            fh.write(json.dumps(res) + "\n")


def memory() -> dict[str, object]:
    """Peak memory of ingesting, each in a fresh process: set A read whole (as before) and in
    parts; a generated device-stream CSV (``VITALTWIN_BENCH_STREAM_MB``, default 1,024 MB) and
    FHIR NDJSON (``VITALTWIN_BENCH_FHIR_OBS``, default 1,000,000 Observations), in parts."""
    import os

    stream_mb = int(os.environ.get("VITALTWIN_BENCH_STREAM_MB", "1024"))
    fhir_n = int(os.environ.get("VITALTWIN_BENCH_FHIR_OBS", "1000000"))
    out: dict[str, object] = {"stream_mb": stream_mb, "fhir_observations": fhir_n}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out["set_a_whole"] = _ingest_in_child("whole", SET_A, tmp / "s1")
        out["set_a_parts"] = _ingest_in_child("parts", SET_A, tmp / "s2")
        _stream_csv(tmp / "stream.csv", stream_mb)
        out["stream_parts"] = _ingest_in_child("parts", tmp / "stream.csv", tmp / "s3")
        (tmp / "stream.csv").unlink()
        _fhir_ndjson(tmp / "obs.ndjson", fhir_n)
        out["fhir_parts"] = _ingest_in_child("parts", tmp / "obs.ndjson", tmp / "s4")
    tab = table(
        "Peak memory of an ingestion (fresh process; lower is better)",
        "input",
        "records",
        "records/s",
        "peak RSS",
        "target",
    )
    for key, label in (
        ("set_a_whole", "set A, read whole (before)"),
        ("set_a_parts", "set A, in parts"),
        ("stream_parts", f"device-stream CSV, {stream_mb:,} MB, in parts"),
        ("fhir_parts", f"FHIR NDJSON, {fhir_n:,} Observations, in parts"),
    ):
        r = out[key]
        assert isinstance(r, dict)
        tab.add_row(
            label,
            f"{r['records']:,}",
            f"{r['records_per_s']:,.0f}",
            f"{r['peak_rss_mib']:,.0f} MiB",
            "< 1,024 MiB" if "parts" in key else "-",
        )
    console.print(tab)
    return out


def fhir_export(obs: pa.Table, n: int = 1_000_000) -> dict[str, float]:
    """FHIR Observations written per second (NDJSON, streamed in batches of 50,000, atomic),
    beside building each resource as a dict and ``json.dumps`` per row (the obvious way) on a
    sample, in the same run; ``n`` rows of set A's observations."""
    import json

    from vitaltwin.interop.fhir_export import observation, write_ndjson

    rows = obs.slice(0, n)
    sample = rows.slice(0, 100_000).to_pylist()
    t0 = time.perf_counter()
    for r in sample:
        json.dumps(observation(r))
    naive = len(sample) / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        written = write_ndjson(
            iter(rows.to_batches(max_chunksize=50_000)), "observations", Path(d) / "o.ndjson"
        )
        rate = written / (time.perf_counter() - t0)
    tab = table(
        "FHIR R4 Observations exported per second (higher is better)",
        "step",
        "vitaltwin",
        "baseline (same run)",
        "ratio",
        "target",
    )
    tab.add_row(
        f"{written:,} Observations -> NDJSON",
        f"{rate:,.0f}",
        f"{naive:,.0f} (dict + json.dumps per row)",
        f"{rate / naive:.1f}x",
        ">= 100,000",
    )
    console.print(tab)
    return {
        "observations": written,
        "observations_per_s": rate,
        "per_row_dict_json_per_s": naive,
        "ratio": rate / naive,
    }


def fhir_parse() -> dict[str, float]:
    """FHIR Observations parsed, validated and converted per second, beside the same reader
    validating with fhirclient's models (the previous release's validation; the acceptance
    asks for 4x its rate) and beside plain JSON parsing. Best of three runs each, interleaved;
    the two readers must reject the same resources."""
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
    # and invalid ones, to count the rejections: every 50th resource loses its required code
    for i in range(0, len(lines), 50):
        res = json.loads(lines[i])
        del res["code"]
        lines[i] = json.dumps(res)
    best = {"fast": 1e9, "fhirclient": 1e9, "json": 1e9}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "obs.ndjson"
        path.write_text("\n".join(lines))
        for _ in range(3):
            t0 = time.perf_counter()
            for line in lines:
                json.loads(line)
            best["json"] = min(best["json"], time.perf_counter() - t0)
            for name, validator in (("fast", "schema"), ("fhirclient", "fhirclient")):
                t0 = time.perf_counter()
                rec = convert_file(path, validator=validator)  # type: ignore[arg-type]
                best[name] = min(best[name], time.perf_counter() - t0)
                if name == "fast":
                    c = rec
                else:
                    same = rec.quarantine.column("position").equals(
                        c.quarantine.column("position")
                    ) and rec.observations.column("value").equals(c.observations.column("value"))
    if not same:
        raise SystemExit("the two validators rejected different resources")
    rate, model_floor, floor = (len(lines) / best[k] for k in ("fast", "fhirclient", "json"))
    invalid = sum("invalid FHIR" in r for r in c.quarantine.column("reason").to_pylist())
    tab = table(
        "FHIR R4 Observations per second (Synthea, best of 3, higher is better)",
        "step",
        "vitaltwin",
        "baseline",
        "ratio",
    )
    what = (
        f"parse + validate + convert, {len(lines):,} Observations -> "
        f"{c.observations.num_rows:,} values, {invalid:,} rejected as invalid R4 (same with "
        "either validator)"
    )
    for floor_name, f in (
        ("validating with fhirclient's models", model_floor),
        ("json.loads alone", floor),
    ):
        tab.add_row(what, f"{rate:,.0f}", f"{f:,.0f} ({floor_name})", f"{rate / f:.3f}x")
    console.print(tab)
    return {
        "observations": len(lines),
        "rejected_invalid": invalid,
        "observations_per_s": rate,
        "json_loads_per_s": floor,
        "fhirclient_model_per_s": model_floor,
        "ratio_json_loads": rate / floor,
        "ratio_fhirclient_model": rate / model_floor,
    }


if __name__ == "__main__":
    main()
