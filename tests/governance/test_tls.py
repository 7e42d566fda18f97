"""TLS on every listener: HTTP (and so the WebSocket), MLLP (with client certificates for
mutual TLS) and the MQTT broker connection, with the development certificate; a listener on a
non-loopback address refuses to start without TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vitaltwin.governance import (
    AuditTrail,
    client_context,
    development_certificate,
    read_trail,
    server_context,
    verify_trail,
)
from vitaltwin.service.access import Security
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.service.mllp import END, START, MllpServer
from vitaltwin.store import DuckDBStore

ORU = (
    "MSH|^~\\&|MON|ICU|VT|H|20261122083000||ORU^R01|m1|P|2.6\r"
    "PID|1||p-tls\r"
    "OBR|1|||vitals\r"
    "OBX|1|NM|8867-4^Heart rate^LN||84|/min|||||F|||20261122083000\r"
)


async def _arrived(bus: MemoryBus, why: str, within_s: float = 10) -> None:
    """Wait until the bus holds a message (fail with ``why`` after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while not bus.replay(0):
        assert time.monotonic() < deadline, why
        await asyncio.sleep(0.05)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = development_certificate(folder)
    assert key_path.stat().st_mode & 0o077 == 0  # the private key is owner-only
    return cert_path, key_path


@pytest.fixture
def https(cert: tuple[Path, Path], tmp_path: Path) -> Iterator[str]:
    port = _port()
    with DuckDBStore(tmp_path / "s") as store:
        app = create_app(store, MemoryBus(partitions=2), security=Security.development_mode())
        config = uvicorn.Config(app, host="127.0.0.1", port=port, ssl_certfile=str(cert[0]),
                                ssl_keyfile=str(cert[1]), log_level="warning")  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the TLS server did not start"
            time.sleep(0.05)
        try:
            yield f"https://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)


def test_http_over_tls_with_the_development_certificate(
    https: str, cert: tuple[Path, Path]
) -> None:
    got = httpx.get(f"{https}/health/live", verify=client_context(cert[0]))
    assert got.status_code == 200
    with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused
        httpx.get(f"{https}/health/live")
    with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer from a TLS port
        httpx.get(https.replace("https", "http") + "/health/live", timeout=5)


async def _send(port: int, ctx: ssl.SSLContext | None, text: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(START + text.encode() + END)
    await writer.drain()
    reply = await asyncio.wait_for(reader.readuntil(END), 10)
    writer.close()
    return reply


def test_mllp_over_tls_and_mutual_tls(cert: tuple[Path, Path], tmp_path: Path) -> None:
    """Over TLS, and mutual TLS; each message is audited under its sender's certificate (or
    address without one)."""
    key = Ed25519PrivateKey.generate()
    trail = AuditTrail(tmp_path / "audit-mllp.jsonl", key)

    async def run() -> None:
        with DuckDBStore(tmp_path / "s") as store:
            srv = MllpServer(store, audit=trail)
            port = _port()
            await srv.start("127.0.0.1", port, ssl=server_context(*cert))
            try:
                reply = await _send(port, client_context(cert[0]), ORU)
                assert b"MSA|AA|m1" in reply
                with pytest.raises((ConnectionError, asyncio.IncompleteReadError, OSError,
                                    TimeoutError)):  # fmt: skip
                    await _send(port, None, ORU)  # plain MLLP to a TLS port
            finally:
                await srv.stop()
            # mutual TLS: the listener asks for a certificate its authority signed
            mutual = MllpServer(store, audit=trail)
            port = _port()
            await mutual.start("127.0.0.1", port,
                               ssl=server_context(*cert, client_ca=cert[0]))  # fmt: skip
            try:
                with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                    await _send(port, client_context(cert[0]), ORU)  # no client certificate
                device = client_context(cert[0], cert=cert[0], key=cert[1])
                assert b"MSA|AA" in await _send(port, device, ORU.replace("m1", "m2"))
            finally:
                await mutual.stop()
            assert store.count("observations") == 1  # the same value twice: one stored

    asyncio.run(run())
    trail.close()
    entries = [
        e for e in read_trail(tmp_path / "audit-mllp.jsonl") if e.get("kind") != "checkpoint"
    ]
    got = [(e["who"], e["operation"], e["patients"], e["outcome"], e["request_id"])
           for e in entries]  # fmt: skip
    assert got == [
        ("address 127.0.0.1", "MLLP ORU R01", ["p-tls"], 201, "m1"),
        ("certificate CN=localhost", "MLLP ORU R01", ["p-tls"], 201, "m2"),
    ]
    assert {e["action"] for e in entries} == {"C"} and {e["role"] for e in entries} == {"device"}
    assert verify_trail(tmp_path / "audit-mllp.jsonl", key.public_key()).ok


@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="no mosquitto binary")  # fmt: skip
def test_mqtt_from_a_broker_over_mutual_tls(cert: tuple[Path, Path], tmp_path: Path) -> None:
    from vitaltwin.service.mqtt import subscribe

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _port()
    conf = tmp_path / "mosquitto.conf"
    # the key is owner-only: the broker keeps its user instead of dropping to "mosquitto"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\ncafile {cert[0]}\n"
                    f"certfile {cert[0]}\nkeyfile {cert[1]}\npersistence false\n"
                    "require_certificate true\nuser root\n")  # fmt: skip
    broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    bus = MemoryBus(partitions=1)
    try:

        async def run() -> None:
            import aiomqtt

            ready = asyncio.Event()
            # mutual TLS: the broker asks every client for a certificate its authority signed
            mine = client_context(cert[0], cert=cert[0], key=cert[1])
            task = asyncio.create_task(subscribe(bus, "127.0.0.1", port, "vt/#", ready=ready,
                                                 reconnect_s=0.2, tls=mine))  # fmt: skip
            await asyncio.wait_for(ready.wait(), 20)
            with pytest.raises(aiomqtt.MqttError):  # no client certificate: refused
                async with aiomqtt.Client("127.0.0.1", port, tls_context=client_context(cert[0])):
                    pass
            async with aiomqtt.Client("127.0.0.1", port, tls_context=mine) as c:
                body = b'[{"patient_id": "m1", "time": "2026-11-22T08:30:00Z", "code": "8867-4", "value": 80, "unit": "/min"}]'  # noqa: E501
                await c.publish("vt/gw1", body, qos=1)
            await _arrived(bus, "nothing arrived over TLS")
            task.cancel()

        asyncio.run(run())
    finally:
        broker.terminate()
        broker.wait(10)


@pytest.mark.skipif(not Path("/usr/bin/mosquitto_passwd").exists()
                    or (shutil.which("mosquitto") is None
                        and not Path("/usr/sbin/mosquitto").exists()),
                    reason="no mosquitto or mosquitto_passwd binary")  # fmt: skip
def test_mqtt_from_a_broker_that_asks_for_a_password(tmp_path: Path) -> None:
    """The subscriber signs in to a broker that refuses anonymous clients; wrong passwords and
    anonymous clients are refused by the broker."""
    import aiomqtt

    from vitaltwin.service.mqtt import subscribe

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwords = tmp_path / "passwords"
    for user, pw in (("vitaltwin", "service-secret-1"), ("gw1", "gateway-secret-2")):
        subprocess.run(["/usr/bin/mosquitto_passwd", "-b", *(["-c"] if user == "vitaltwin"
                        else []), str(passwords), user, pw], check=True)  # fmt: skip
    port = _port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                    f"password_file {passwords}\npersistence false\nuser root\n")  # fmt: skip
    broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    bus = MemoryBus(partitions=1)

    async def run() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(subscribe(bus, "127.0.0.1", port, "vt/#", ready=ready,
                                             reconnect_s=0.2,
                                             login=("vitaltwin", "service-secret-1")))  # fmt: skip
        await asyncio.wait_for(ready.wait(), 20)
        for login in ({}, {"username": "gw1", "password": "guess"}):
            with pytest.raises(aiomqtt.MqttError):  # anonymous, or a wrong password: refused
                async with aiomqtt.Client("127.0.0.1", port, **login):  # type: ignore[arg-type]
                    pass
        async with aiomqtt.Client("127.0.0.1", port, username="gw1",
                                  password="gateway-secret-2") as c:  # fmt: skip
            body = b'[{"patient_id": "m2", "time": "2026-11-22T08:30:00Z", "code": "8867-4", "value": 81, "unit": "/min"}]'  # noqa: E501
            await c.publish("vt/gw1", body, qos=1)
        await _arrived(bus, "nothing arrived from the broker")
        task.cancel()

    try:
        asyncio.run(run())
    finally:
        broker.terminate()
        broker.wait(10)


def test_a_public_address_needs_tls(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vitaltwin.cli import app

    runner = CliRunner()
    for cmd in (["serve", "--host", "0.0.0.0"], ["listen", "--host", "0.0.0.0"]):
        got = runner.invoke(app, [*cmd, "--store", str(tmp_path / "s")],
                            env={"VITALTWIN_SECURITY_DIR": str(tmp_path / "sec")})  # fmt: skip
        assert got.exit_code == 2 and "TLS" in got.output, (cmd, got.output)
