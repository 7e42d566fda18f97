"""An MLLP listener (HL7 v2 over TCP) that always answers.

Every framed message gets an acknowledgement carrying the message's control id (MSA-2) and, unless
all went well, ERR segments (HL7 table 0357 codes) with the reasons:

* ``AA``: parsed and every value stored (or already stored: duplicates);
* ``AE``: received and kept, but some or all of it quarantined (one ERR per reason), e.g. an
  implausible value, or a message python-hl7 cannot parse inside a readable stream;
* ``AR``: rejected, nothing stored: not HL7 v2, over the size limit (default 1 MiB), a frame whose
  end block never came within the read timeout, or the store failed.

With an audit trail, every message is an audit entry (action create): the sender — the
subject of its TLS client certificate under mutual TLS, else its address —, the message type
and control id, the patients it named, and the answer (AA/AE 201, AR 422, or 503 when the store
failed). A sender that opens more connections than allowed is refused at once; a connection
idle longer than the read timeout is closed. :meth:`MllpServer.stop` (SIGTERM in ``vitaltwin
listen``) stops accepting, lets messages in progress finish and closes the connections.

Framing (HL7 MLLP release 2): <VT> message <FS><CR>.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from ssl import SSLContext

from vitaltwin.governance import AuditRecord, AuditTrail
from vitaltwin.interop.hl7v2 import Hl7Error, convert_text
from vitaltwin.store import IngestCounts, Store

START, END = b"\x0b", b"\x1c\x0d"
MLLP_AUDIT_FILE = "audit-mllp.jsonl"
"""The listener's audit trail in the security folder (its own file: a second writer of the
service's trail would break its chain)."""
MIB = 1024 * 1024


def _control_id(text: str) -> str:
    first = text.strip("\x0b\r\n").split("\r")[0]
    fields = first.split("|")
    return fields[9].split("^")[0][:50] if first.startswith("MSH") and len(fields) > 9 else ""


def _message_type(text: str) -> str:
    first = text.strip("\x0b\r\n").split("\r")[0]
    fields = first.split("|")
    return fields[8].replace("^", " ")[:20] if first.startswith("MSH") and len(fields) > 8 else "?"


def _sender(writer: asyncio.StreamWriter) -> tuple[str, str | None]:
    """Who is sending (the TLS client certificate's subject, else "address HOST") and from
    where."""
    peer = writer.get_extra_info("peername")
    address = str(peer[0]) if isinstance(peer, tuple) and peer else None
    cert = writer.get_extra_info("peercert") or {}
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return (f"certificate CN={names[0]}" if names else f"address {address}"), address


def _clean(text: str) -> str:
    """Text safe inside an HL7 field (no delimiters, no segment breaks)."""
    for ch in "|^~\\&\r\n":
        text = text.replace(ch, " ")
    return text[:200]


def ack(text: str, code: str, errors: list[tuple[str, str]] | None = None) -> bytes:
    """An acknowledgement (``AA``, ``AE`` or ``AR``) of ``text``, MLLP-framed, with one ERR
    segment per ``(HL7 0357 error code, reason)``."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    cid = _control_id(text)
    segments = [
        f"MSH|^~\\&|VITALTWIN|VITALTWIN|||{now}||ACK|ACK{cid}|P|2.5",
        f"MSA|{code}|{cid}",
    ]
    names = {"100": "Segment sequence error", "102": "Data type error", "207": "Application error"}
    for err, reason in errors or []:
        segments.append(f"ERR|||{err}^{names.get(err, 'Error')}^HL70357|E||||{_clean(reason)}")
    return START + ("\r".join(segments) + "\r").encode() + END


class MllpServer:
    """Stores what arrives into ``store``; ``counts`` add up like any ingestion; ``answered``
    counts the acknowledgements sent by code."""

    def __init__(
        self,
        store: Store,
        on_ingest: Callable[[IngestCounts], None] | None = None,
        max_bytes: int = MIB,
        read_timeout_s: float = 30.0,
        max_connections: int = 32,
        sender_tz: tzinfo = UTC,
        audit: AuditTrail | None = None,
    ):
        self.store = store
        self.audit = audit
        self.on_ingest = on_ingest
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections
        self.sender_tz = sender_tz
        self.counts = IngestCounts(0, 0, 0, 0)
        self.answered: Counter[str] = Counter()
        self.refused_connections = 0
        self._n = 0
        self._clients: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def rejected(self) -> int:
        """Messages answered ``AR`` (nothing stored)."""
        return self.answered["AR"]

    def _answer(self, text: str, sender: tuple[str, str | None] = ("-", None)) -> bytes:
        self._n += 1
        try:
            record = convert_text(
                text,
                f"mllp message {self._n} ({_control_id(text) or '?'})",
                sender_tz=self.sender_tz,
            )
        except Hl7Error as exc:
            self._audit(text, sender, 422, ())
            return self._ack(text, "AR", [("100", str(exc))])
        patients = sorted({*record.observations.column("patient_id").to_pylist(),
                           *(p for t in record.context().values() if t is not None
                             and "patient_id" in t.column_names
                             for p in t.column("patient_id").to_pylist())})  # fmt: skip
        try:
            got = self.store.ingest_record(record)
        except Exception as exc:  # the store failed: the sender must keep the message
            self._audit(text, sender, 503, patients)
            return self._ack(text, "AR", [("207", f"not stored ({type(exc).__name__}: {exc})")])
        self.counts += got
        self._audit(text, sender, 201, patients)
        if self.on_ingest is not None:
            self.on_ingest(got)
        reasons = record.quarantine.column("reason").to_pylist()
        if reasons:
            return self._ack(text, "AE", [("102", r) for r in dict.fromkeys(reasons)])
        return self._ack(text, "AA")

    def _audit(
        self, text: str, sender: tuple[str, str | None], outcome: int, patients: Sequence[str]
    ) -> None:
        if self.audit is None:
            return
        self.audit.record(AuditRecord(
            action="C", operation=f"MLLP {_message_type(text)}", who=sender[0], role="device",
            outcome=outcome, patients=tuple(patients), request_id=_control_id(text) or None,
            source=sender[1],
        ))  # fmt: skip

    def _ack(self, text: str, code: str, errors: list[tuple[str, str]] | None = None) -> bytes:
        self.answered[code] += 1
        return ack(text, code, errors)

    async def _frame(
        self, reader: asyncio.StreamReader, buf: bytearray
    ) -> tuple[bytes, str | None] | None:
        """The next frame's bytes and, when it cannot be used, why; None at the end. ``buf``
        holds what was read past the previous frame (senders may pipeline messages)."""
        started = False
        while True:
            if not started:
                at = buf.find(START)
                if at >= 0:
                    del buf[: at + 1]
                    started = True
                else:
                    buf.clear()  # bytes outside a frame carry nothing
            if started:
                end = buf.find(END)
                if 0 <= end <= self.max_bytes:
                    frame = bytes(buf[:end])
                    del buf[: end + len(END)]
                    return frame, None
                if len(buf) > self.max_bytes:
                    return bytes(buf[:4096]), f"message over the {self.max_bytes:,}-byte limit"
            try:
                chunk = await asyncio.wait_for(reader.read(65536), self.read_timeout_s)
            except (TimeoutError, ConnectionError):
                chunk = None
            if not chunk:
                if not started:
                    return None  # closed, or idle past the timeout, between messages
                why = (
                    "connection closed"
                    if chunk == b""
                    else f"no end block within {self.read_timeout_s:g} s"
                )
                return bytes(buf[:4096]), why
            buf += chunk

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._clients) >= self.max_connections:
            self.refused_connections += 1
            writer.close()
            return
        if task is not None:
            self._clients.add(task)
        buf = bytearray()
        sender = _sender(writer)
        try:
            while (got := await self._frame(reader, buf)) is not None:
                data, problem = got
                text = data.decode("utf-8", errors="replace")
                if problem is None:
                    answer = self._answer(text, sender)
                else:
                    self._n += 1
                    self._audit(text, sender, 422, ())
                    answer = self._ack(text, "AR", [("100", problem)])
                writer.write(answer)
                await writer.drain()
                if problem is not None:
                    break  # the stream is out of step with its frames: close it
        except ConnectionError:
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def start(
        self, host: str = "127.0.0.1", port: int = 2575, ssl: SSLContext | None = None
    ) -> asyncio.Server:
        """Listen on ``host:port``; over TLS with ``ssl`` (a server context, which may ask for
        client certificates: :func:`vitaltwin.governance.server_context`)."""
        self._server = await asyncio.start_server(self._client, host, port, ssl=ssl)
        return self._server

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, give connections ``grace_s`` to finish their message, close them."""
        if self._server is not None:
            self._server.close()
        if self._clients:
            _, pending = await asyncio.wait(set(self._clients), timeout=grace_s)
            for t in pending:
                t.cancel()
        if self._server is not None:
            await self._server.wait_closed()
