"""At-least-once delivery and idempotent storing, end to end: an ingest worker process killed
with SIGKILL mid-stream, another one takes over its pending messages (XAUTOCLAIM), and every
observation is stored exactly once (Redis bus, PostgreSQL store)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from vitaltwin.service.bus import RedisBus
from vitaltwin.service.ingest import envelope
from vitaltwin.store import PostgresStore

CHILD = """
import sys, threading, time
from vitaltwin.service.bus import RedisBus
from vitaltwin.service.ingest import IngestWorker
from vitaltwin.store import PostgresStore
pg, schema, url, prefix, idle = sys.argv[1:6]
store = PostgresStore(pg, schema=schema)
bus = RedisBus(url, prefix=prefix, partitions=2)
w = IngestWorker(bus, store, threading.Lock(), claim_idle_ms=int(idle))
w.start()
while True:
    time.sleep(0.02)
    print(w.stats.messages, w.stats.counts.stored, w.stats.counts.duplicates, flush=True)
"""


@pytest.fixture
def pg_schema(postgres_conninfo: str) -> Iterator[tuple[str, str]]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield postgres_conninfo, schema
    st = PostgresStore(postgres_conninfo, schema=schema)
    st.drop()
    st.close()


def _child(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True, bufsize=1
    )


@pytest.mark.slow
def test_a_killed_worker_is_taken_over_and_nothing_is_stored_twice(
    redis_url: str, pg_schema: tuple[str, str]
) -> None:
    pg, schema = pg_schema
    prefix = f"vt-test:{uuid.uuid4().hex}"
    bus = RedisBus(redis_url, prefix=prefix, partitions=2)
    n_msgs, per_msg = 3000, 4  # the worker stores up to 200 messages per call
    try:
        for i in range(n_msgs):
            recs = [
                {"patient_id": f"p{i % 30}",
                 "time": f"2026-11-22T{8 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                 "code": "8867-4", "value": 60 + k, "unit": "/min"}
                for k in range(per_msg)
            ]  # fmt: skip
            bus.publish(f"p{i % 30}", envelope("records", "test", recs))
        a = _child([pg, schema, redis_url, prefix, "600000"])
        assert a.stdout is not None
        for line in a.stdout:
            if int(line.split()[0]) >= 30:  # mid-stream
                break
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        with PostgresStore(pg, schema=schema) as st:
            stored_by_a = st.count("observations")
        assert 0 < stored_by_a < n_msgs * per_msg
        b = _child([pg, schema, redis_url, prefix, "300"])
        assert b.stdout is not None
        deadline = time.monotonic() + 120
        try:
            for line in b.stdout:
                with PostgresStore(pg, schema=schema) as st:
                    done = st.count("observations") == n_msgs * per_msg
                if done and bus.pending() == 0:
                    break
                assert time.monotonic() < deadline, line
        finally:
            b.send_signal(signal.SIGKILL)
            b.wait(10)
        with PostgresStore(pg, schema=schema) as st:
            assert st.count("observations") == n_msgs * per_msg  # exactly once
            assert st.count("quarantine") == 0
        assert bus.dead_letters() == []
    finally:
        bus.drop()
        bus.close()
