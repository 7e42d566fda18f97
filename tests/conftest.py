"""Shared fixtures: the reference adult's steady state (computed once per session) and the
store on both backends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pyarrow as pa
import pytest

from vitaltwin.governance import (
    FileKeys,
    TokenService,
    encrypt_store,
    identity_for,
    signing_key,
)
from vitaltwin.model import Model
from vitaltwin.physiology import WARD_TWIN, cardiovascular_model
from vitaltwin.physiology.patient import REFERENCE_PATIENT, initial_state, patient_parameters
from vitaltwin.risk import ForecastMonitor, RetrainingPolicy
from vitaltwin.simulate import SteadyState, steady_state
from vitaltwin.store import DuckDBStore, PostgresStore, Store

PG = os.environ.get("VITALTWIN_TEST_POSTGRES", "host=127.0.0.1 dbname=test user=postgres")
"""The PostgreSQL the store tests use (trust authentication; a throwaway schema per test)."""


@lru_cache(maxsize=1)
def _postgres_unavailable() -> str | None:
    """Why no PostgreSQL answers at :data:`PG`, or None when one does."""
    try:
        with psycopg.connect(PG, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture(params=["duckdb", "postgresql", "duckdb-encrypted"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same tests on both backends, and on an encrypted store (its identifying columns
    sealed: every read must find what a plain store finds). Without a PostgreSQL server the
    PostgreSQL case is skipped with the reason, except in CI (``CI`` set), where a missing
    server is a failure."""
    if request.param.startswith("duckdb"):
        with DuckDBStore(tmp_path / "store") as st:
            if request.param == "duckdb-encrypted":
                encrypt_store(st, FileKeys(tmp_path / "keys", create=True))
            yield st
        return
    reason = _postgres_unavailable()
    if reason is not None and not os.environ.get("CI"):
        pytest.skip(f"no PostgreSQL answers at {PG!r}: {reason}")
    pg = PostgresStore(PG, schema=f"test_{uuid.uuid4().hex[:12]}")
    try:
        yield pg
    finally:
        pg.drop()
        pg.close()


@pytest.fixture
def postgres_conninfo() -> str:
    """:data:`PG`; skipped with the reason when no PostgreSQL answers, except in CI."""
    reason = _postgres_unavailable()
    if reason is not None and not os.environ.get("CI"):
        pytest.skip(f"no PostgreSQL answers at {PG!r}: {reason}")
    return PG


REDIS = os.environ.get("VITALTWIN_TEST_REDIS", "redis://127.0.0.1:6379/0")
"""The Redis the bus tests use (streams under a fresh prefix per test)."""


@lru_cache(maxsize=1)
def _redis_unavailable() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
        return None
    except redis.RedisError as exc:
        return str(exc)


@pytest.fixture
def redis_url() -> str:
    """:data:`REDIS`; skipped with the reason when no Redis answers, except in CI (``CI``
    set), where that is a failure."""
    reason = _redis_unavailable()
    if reason is not None and not os.environ.get("CI"):
        pytest.skip(f"no Redis answers at {REDIS!r}: {reason}")
    return REDIS


@pytest.fixture(scope="session")
def model() -> Model:
    return cardiovascular_model()


@pytest.fixture(scope="session")
def reference_params(model: Model) -> np.ndarray:
    return patient_parameters(model, REFERENCE_PATIENT)


@pytest.fixture(scope="session")
def reference_steady(model: Model, reference_params: np.ndarray) -> SteadyState:
    return steady_state(model, reference_params, initial_state(model, REFERENCE_PATIENT))


Serve = Callable[..., tuple[subprocess.Popen[bytes], str, dict[str, str]]]


@pytest.fixture
def serve() -> Serve:
    """``serve(tmp, bus, capture=False, **env)``: the service on a free port with its store,
    twins, registry and security folder under ``tmp``, ready; returns the process, its base URL
    and the headers of a backend client allowed everything (a token signed with the service's
    own key, as a hospital's EHR would hold one)."""

    def start(
        tmp: Path, bus: str, capture: bool = False, **env: str
    ) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        keys = FileKeys(tmp / "security" / "keys", create=True)
        tokens = TokenService(signing_key(keys, "token-signing"), access_ttl_s=3600)
        ehr = identity_for("test-ehr", "system", scopes=("system/*.cruds",))
        headers = {"authorization": f"Bearer {tokens.issue(ehr, refresh=False).access_token}"}
        environ = {**os.environ, "VITALTWIN_PARTITIONS": "2", "VITALTWIN_EXPECTED_BEDS": "8",
                   "VITALTWIN_REGISTRY_DIR": str(tmp / "registry"),
                   "VITALTWIN_SECURITY_DIR": str(tmp / "security"), **env}  # fmt: skip
        cmd = [sys.executable, "-m", "vitaltwin", "serve", "--port", str(port),
               "--store", str(tmp / "s"), "--bus", bus]  # fmt: skip
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, env=environ, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health/ready").status_code == 200:
                    return proc, base, headers
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "service did not start"
            time.sleep(0.2)

    return start


# -- a monitored ward for the forecast monitor (vitaltwin.risk.ForecastMonitor) ---------------

FORECAST_START = datetime(2026, 1, 1, tzinfo=UTC)
MAP_LOINC = "8478-0"


def _feed_map(
    mon: ForecastMonitor, pid: str, start: datetime, seconds: int, map_at: np.ndarray
) -> None:
    """MAP at 1 Hz from ``start`` into the monitor."""
    times = [start + timedelta(seconds=int(s)) for s in range(seconds)]
    mon.observed(
        pa.table(
            {
                "patient_id": [pid] * seconds,
                "loinc": [MAP_LOINC] * seconds,
                "effective_time": pa.array(times, pa.timestamp("us", tz="UTC")),
                "value": map_at[:seconds],
            }
        )
    )


def _monitored_ward(
    rng: np.random.Generator, patients: int, hours: int
) -> tuple[ForecastMonitor, dict[str, bool]]:
    """Patients at 1 Hz from :data:`FORECAST_START` whose MAP falls to 55 mmHg from hour 3
    when sick (every other one); forecasts every 15 min of a 1-h hypotension event (2-h
    windows), 0.8 from when a 30-minute run from hour 3 ends within the hour (2:30) for the
    sick, 0.1 otherwise; an arterial-line flush (0 mmHg for 20 s) every 10 minutes in
    everyone."""
    mon = ForecastMonitor(WARD_TWIN, horizon_h=1.0, window_h=2.0, policy=RetrainingPolicy(
        min_positive=5, n_boot=20))  # fmt: skip
    sick = {}
    n = hours * 3600
    for i in range(patients):
        pid = f"p{i}"
        sick[pid] = i % 2 == 0
        map_at = 80.0 + rng.normal(0, 3, n)
        if sick[pid]:
            map_at[3 * 3600 :] = 55.0 + rng.normal(0, 3, n - 3 * 3600)
        for s in range(0, n, 600):
            map_at[s : s + 20] = 0.0  # a flush: the minute's median ignores it
        _feed_map(mon, pid, FORECAST_START, n, map_at)
        for k in range(hours * 4):
            soon = sick[pid] and 900 * k >= 9000
            mon.forecast(pid, FORECAST_START + timedelta(minutes=15 * k),
                         {"map_below_65_30min": 0.8 if soon else 0.1})  # fmt: skip
    return mon, sick


@pytest.fixture
def monitored_ward() -> Callable[..., tuple[ForecastMonitor, dict[str, bool]]]:
    return _monitored_ward


@pytest.fixture
def feed_map() -> Callable[[ForecastMonitor, str, datetime, int, np.ndarray], None]:
    return _feed_map
