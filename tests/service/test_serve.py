"""``vitaltwin serve`` as a hospital runs it: a process on a port, ready when store and bus are,
storing what it is sent, stopping cleanly on SIGTERM; with the in-process bus and with Redis."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest


@pytest.mark.parametrize("bus", ["memory", "redis"])
def test_serve_stores_what_it_is_sent_and_stops_on_sigterm(
    tmp_path: Path,
    bus: str,
    request: pytest.FixtureRequest,
    serve: Callable[..., tuple[Any, str, dict[str, str]]],
) -> None:
    url = "memory" if bus == "memory" else request.getfixturevalue("redis_url")
    proc, base, auth = serve(tmp_path, url, capture=True)
    deadline = time.monotonic() + 60
    try:
        pid = f"serve-{uuid.uuid4().hex[:8]}"
        body = [{"patient_id": pid, "time": "2026-11-22T08:30:00Z", "code": "8867-4",
                 "value": 84, "unit": "/min"}]  # fmt: skip
        r = httpx.post(f"{base}/v1/observations", json=body, headers={**auth, "x-request-id": "r1"})
        assert r.status_code == 202 and r.headers["x-request-id"] == "r1"
        while not httpx.get(f"{base}/v1/patients/{pid}/observations", headers=auth).json():
            assert time.monotonic() < deadline, "the observation was not stored"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    logs = out.decode()
    # uvicorn shuts down gracefully, then ends by the signal it caught (a clean stop for
    # systemd and container runtimes)
    assert proc.returncode in (0, -signal.SIGTERM), logs[-2000:]
    assert '"message": "service stopped"' in logs and '"pending": 0' in logs
    assert '"request_id": "r1"' in logs  # the structured log line of that request
