"""The service killed with SIGKILL while twins track a patient, and started again: every
observation is assimilated exactly once and the twin continues from its checkpoint (Redis bus,
so nothing accepted is lost)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from vitaltwin.governance import FileKeys, encrypt_store
from vitaltwin.store import DuckDBStore
from vitaltwin.twin import TwinShard

T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)


def _vitals(seconds: range) -> list[dict[str, Any]]:
    return [
        {"patient_id": "p1", "time": (T0 + timedelta(seconds=s + 0.2)).isoformat(),
         "code": code, "value": v + (s % 3), "unit": u}
        for s in seconds
        for code, v, u in (("HR", 88, "/min"), ("8478-0", 72, "mmHg"))
    ]  # fmt: skip


def _wait(base: str, auth: dict[str, str], until: datetime) -> None:
    deadline = time.monotonic() + 120
    while True:
        twin = httpx.get(f"{base}/v1/patients/p1/twin", headers=auth).json()
        if twin.get("time") and datetime.fromisoformat(twin["time"]) >= until:
            return
        assert time.monotonic() < deadline, twin
        time.sleep(0.1)


@pytest.mark.slow
def test_sigkill_then_restart_assimilates_everything_exactly_once(
    tmp_path: Path, redis_url: str, serve: Callable[..., tuple[Any, str, dict[str, str]]]
) -> None:
    def start() -> tuple[Any, str, dict[str, str]]:
        return serve(tmp_path, redis_url, VITALTWIN_TWIN_CHECKPOINT_S="0.5",
                     VITALTWIN_BUS_PREFIX=prefix)  # fmt: skip

    prefix = f"vt-test:{uuid.uuid4().hex}"
    proc, base, auth = start()
    try:
        httpx.post(f"{base}/v1/observations", json=_vitals(range(0, 40)), headers=auth)
        _wait(base, auth, T0 + timedelta(seconds=39))
        time.sleep(1.5)  # a checkpoint has been written since
        httpx.post(f"{base}/v1/observations", json=_vitals(range(40, 80)), headers=auth)
        time.sleep(0.3)  # mid-stream: some of it may be stored and assimilated, not checkpointed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    proc, base, auth = start()
    try:
        httpx.post(f"{base}/v1/observations", json=_vitals(range(80, 100)), headers=auth)
        _wait(base, auth, T0 + timedelta(seconds=99))
        stored = httpx.get(f"{base}/v1/patients/p1/observations", headers=auth).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert len(stored) == 200  # every observation stored once
    with DuckDBStore(tmp_path / "s") as store:  # the checkpoint written on SIGTERM
        encrypt_store(store, FileKeys(tmp_path / "security" / "keys"))  # sealed at rest
        saved = store.load_state("twins")
    assert saved is not None
    shard = TwinShard.from_bytes(saved[0])
    # each observation assimilated exactly once (the shard counts the values each twin took
    # into its cycles): 100 of each code, none twice, none missed
    values = shard.summary("p1")["values"]
    assert (values["HR"], values["MAP"]) == (100, 100) and sum(values.values()) == 200
    assert shard.time("p1") == T0 + timedelta(seconds=99.2)
