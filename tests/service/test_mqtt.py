"""MQTT from a device gateway (the real Mosquitto at 127.0.0.1:1883) into the store through the
bus; a payload that is not JSON leaves a quarantine entry."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vitaltwin.service.access import Security
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.service.mqtt import publish_payload
from vitaltwin.store import DuckDBStore

DEV = Security.development_mode()
"""Every caller may do everything (access rules: tests/service/test_security.py)."""

BROKER = ("127.0.0.1", 1883)


def _no_broker() -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(BROKER) != 0


def test_payloads_go_on_the_bus_per_patient() -> None:
    bus = MemoryBus(partitions=2)
    body = b'[{"patient_id": "a", "value": 1}, {"patient_id": "b"}, {"patient_id": "a"}]'
    assert publish_payload(bus, body, "t") == 2
    assert publish_payload(bus, b"{not json", "t") == 1
    assert publish_payload(bus, b'{"patient_id": "c"}', "t") == 1


@pytest.mark.skipif(_no_broker(), reason="no MQTT broker at 127.0.0.1:1883")
def test_device_gateway_messages_are_stored(tmp_path: Path) -> None:
    import aiomqtt

    topic = f"vitaltwin-test/{uuid.uuid4().hex}"
    pid = f"mqtt-{uuid.uuid4().hex[:8]}"
    with DuckDBStore(tmp_path / "s") as store:
        app = create_app(store, MemoryBus(partitions=2), security=DEV, mqtt=(*BROKER, f"{topic}/#"))
        with TestClient(app) as client:
            deadline = time.monotonic() + 20
            while not app.state.mqtt_ready.is_set():
                assert time.monotonic() < deadline, "not subscribed"
                time.sleep(0.05)

            async def send() -> None:
                async with aiomqtt.Client(*BROKER) as c:
                    record = (
                        f'{{"patient_id": "{pid}", "time": "2026-11-22T08:30:00Z", '
                        '"code": "SPO2", "value": 96, "unit": "%", "device": "gw-1"}'
                    )
                    await c.publish(f"{topic}/bed1", record.encode(), qos=1)
                    await c.publish(f"{topic}/bed1", b"garbage", qos=1)

            asyncio.run(send())
            while True:
                got = client.get("/v1/ingest").json()
                if got["read"] >= 2:
                    break
                assert time.monotonic() < deadline, got
                time.sleep(0.05)
            obs = client.get(f"/v1/patients/{pid}/observations").json()
            assert [(o["value"], o["device"]) for o in obs] == [(96.0, "gw-1")]
            q = store.table("quarantine").to_pylist()
            assert q[0]["source"].startswith(f"mqtt:{topic}/bed1 #")  # and the bus message
            assert "not JSON" in q[0]["reason"]
