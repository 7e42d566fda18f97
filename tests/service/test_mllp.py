"""The MLLP listener always answers: AA, AE or AR with the control id and ERR segments."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from vitaltwin.service.mllp import END, START, MllpServer
from vitaltwin.store import DuckDBStore

MSH = "MSH|^~\\&|MON|ICU|VT|H|20261122083000||ORU^R01|{cid}|P|2.5\r"
PID = "PID|1||PAT42^^^H^MR||Doe^Jane||19600101|F\r"
HR = "OBX|1|NM|8867-4^Heart rate^LN||{v}|/min|||||F|||20261122083000+0100\r"


def oru(cid: str, *values: str) -> bytes:
    return (MSH.format(cid=cid) + PID + "".join(HR.format(v=v) for v in values)).encode()


async def _exchange(srv: MllpServer, *sends: bytes) -> list[bytes]:
    server = await srv.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for data in sends:
        writer.write(data)
        await writer.drain()
        try:
            answers.append(await asyncio.wait_for(reader.readuntil(END), 5))
        except asyncio.IncompleteReadError as exc:
            answers.append(exc.partial)
    writer.close()
    await srv.stop()
    return answers


def test_every_message_gets_an_answer_with_its_control_id(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s") as st:
        srv = MllpServer(st, max_bytes=4096)
        good, partly, not_hl7, bare, bad_time, big = asyncio.run(
            _exchange(
                srv,
                START + oru("C1", "80") + END,
                START + oru("C2", "81", "400") + END,
                START + b"EVN|A04|2006\rPID|1||X\r" + END,
                START + b"MSH|" + END,
                START + oru("C5", "82").replace(b"+0100", b"9999") + END,
                START + oru("C6", *["83"] * 200) + END,
            )
        )
        assert b"MSA|AA|C1\r" in good and b"ERR|" not in good
        assert b"MSA|AE|C2\r" in partly and b"ERR|||102^" in partly
        assert b"outside plausible range" in partly
        assert b"MSA|AR|\r" in not_hl7 and b"does not start with MSH" in not_hl7
        assert b"MSA|AE|\r" in bare and b"not a parsable HL7 v2 message" in bare  # kept, why
        assert b"MSA|AE|C5" in bad_time and b"not a valid HL7 time" in bad_time
        assert b"MSA|AR|C6" in big and b"4,096-byte limit" in big
        assert st.count("observations") == 2
        assert srv.answered["AR"] >= 2 and sum(srv.answered.values()) == 6


def test_a_frame_without_its_end_block_is_answered_after_the_timeout(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s") as st:
        srv = MllpServer(st, read_timeout_s=0.3)
        (answer,) = asyncio.run(_exchange(srv, START + oru("C9", "80")))
        assert b"MSA|AR|C9" in answer and b"no end block within 0.3 s" in answer


def test_connections_over_the_limit_are_refused(tmp_path: Path) -> None:
    async def scenario(srv: MllpServer) -> tuple[bytes, bytes]:
        server = await srv.start("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        second = await asyncio.wait_for(r2.read(), 5)  # closed at once: b""
        w1.write(START + oru("C1", "80") + END)
        first = await asyncio.wait_for(r1.readuntil(END), 5)
        w1.close()
        w2.close()
        await srv.stop()
        return first, second

    with DuckDBStore(tmp_path / "s") as st:
        srv = MllpServer(st, max_connections=1)
        first, second = asyncio.run(scenario(srv))
    assert b"MSA|AA|C1" in first and second == b"" and srv.refused_connections == 1


def test_listen_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """``vitaltwin listen`` answers, audits each message in its own trail (signed at the
    stop) and stops on SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitaltwin", "listen", "--port", str(port), "--store",
         str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", "VITALTWIN_SECURITY_DIR": str(tmp_path / "sec")},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(START + oru("C1", "80") + END)
                    answer = c.recv(4096)
                break
            except OSError:
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert b"MSA|AA|C1" in answer
    assert proc.returncode == 0, err
    assert "stopped: 1 messages answered (AA 1)" in out and "Traceback" not in err
    trail = [json.loads(line) for line in (tmp_path / "sec" / "audit-mllp.jsonl").open()]
    assert [(e["kind"], e.get("request_id")) for e in trail] == [
        ("event", "C1"),
        ("checkpoint", None),
    ]
