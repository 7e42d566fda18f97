"""``vitaltwin serve`` as a hospital runs it: a process on a port, ready when store and bus are,
storing what it is sent, stopping cleanly on SIGTERM; with the in-process bus and with Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("bus", ["memory", "redis"])
def test_serve_stores_what_it_is_sent_and_stops_on_sigterm(
    tmp_path: Path, bus: str, request: pytest.FixtureRequest
) -> None:
    port = _free_port()
    url = "memory" if bus == "memory" else request.getfixturevalue("redis_url")
    env = {**os.environ, "VITALTWIN_PARTITIONS": "2", "VITALTWIN_TWIN_DIR": str(tmp_path / "t"),
           "VITALTWIN_REGISTRY_DIR": str(tmp_path / "registry")}  # fmt: skip
    if bus == "redis":  # streams of their own, so runs never share a group's backlog
        env["VITALTWIN_BUS"] = url
    cmd = [sys.executable, "-m", "vitaltwin", "serve", "--port", str(port),
           "--store", str(tmp_path / "s"), "--bus", url]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "service did not start"
            time.sleep(0.2)
        pid = f"serve-{uuid.uuid4().hex[:8]}"
        body = [{"patient_id": pid, "time": "2026-11-22T08:30:00Z", "code": "8867-4",
                 "value": 84, "unit": "/min"}]  # fmt: skip
        r = httpx.post(f"{base}/v1/observations", json=body, headers={"x-request-id": "r1"})
        assert r.status_code == 202 and r.headers["x-request-id"] == "r1"
        while not httpx.get(f"{base}/v1/patients/{pid}/observations").json():
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
