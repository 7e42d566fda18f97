"""Several processes ingest into one PostgreSQL store at once: every record is accounted for,
none is stored twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from vitaltwin.store import PostgresStore

PG = os.environ.get("VITALTWIN_TEST_POSTGRES", "host=127.0.0.1 dbname=test user=postgres")


def _postgres_unavailable() -> str | None:
    try:
        with psycopg.connect(PG, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


ROWS = 3000

WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from vitaltwin.interop import read_any
from vitaltwin.store import PostgresStore
st = PostgresStore(sys.argv[1], schema=sys.argv[2])
c = st.ingest_record(read_any(sys.argv[3]))
print(c.read, c.stored, c.quarantined, c.duplicates)
"""


def _feed(path: Path, offset: int) -> None:
    lines = ["patient_id,time,code,value,unit"]
    for i in range(ROWS):
        # half the rows are shared by both feeds: each must be stored exactly once
        k = i if i % 2 == 0 else i + offset
        lines.append(f"p{k % 40},{1_764_000_000 + k * 60},HR,{60 + k % 50},/min")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.skipif(
    _postgres_unavailable() is not None and not os.environ.get("CI"),
    reason=f"no PostgreSQL answers at {PG!r}",
)
def test_concurrent_writers_store_each_record_once(tmp_path: Path) -> None:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    PostgresStore(PG, schema=schema).close()  # the tables exist before the writers start
    feeds = []
    for n, offset in enumerate((0, 100_000, 200_000)):
        feeds.append(tmp_path / f"feed{n}.csv")
        _feed(feeds[-1], offset)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, PG, schema, str(f)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in feeds
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    store = PostgresStore(PG, schema=schema)
    try:
        assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
        counts = [tuple(map(int, o.split())) for o, _ in outs]
        assert all(r == s + q + d for r, s, q, d in counts)
        unique = ROWS // 2 + 3 * (ROWS // 2)  # the shared half once, each feed's own half
        assert sum(s for _, s, _, _ in counts) == unique == store.count("observations")
        assert sum(d for _, _, _, d in counts) == 2 * (ROWS // 2)
    finally:
        store.drop()
        store.close()
