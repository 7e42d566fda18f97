"""An MLLP listener (HL7 v2 over TCP): each framed message is converted, stored, and answered
with an ACK (MSA AA) — or a NAK (MSA AE, with the reason) when it cannot be parsed.

Framing (HL7 MLLP release 2): <VT> message <FS><CR>.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from vitaltwin.data import Record
from vitaltwin.interop.hl7v2 import Hl7Error, convert_text
from vitaltwin.store import IngestCounts, Store

START, END = b"\x0b", b"\x1c\x0d"


def _control_id(text: str) -> str:
    first = text.strip("\x0b\r\n").split("\r")[0]
    fields = first.split("|")
    return fields[9] if first.startswith("MSH") and len(fields) > 9 else ""


def ack(text: str, code: str, reason: str = "") -> bytes:
    """An ACK (``AA``) or NAK (``AE``) for ``text``, MLLP-framed."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    cid = _control_id(text)
    msh = f"MSH|^~\\&|VITALTWIN|VITALTWIN|||{now}||ACK|ACK{cid}|P|2.5"
    msa = f"MSA|{code}|{cid}" + (f"|{reason.replace('|', '/')[:200]}" if reason else "")
    return START + (msh + "\r" + msa + "\r").encode() + END


class MllpServer:
    """Stores what arrives into ``store``; ``counts`` add up like any ingestion."""

    def __init__(self, store: Store, on_ingest: Callable[[IngestCounts], None] | None = None):
        self.store = store
        self.on_ingest = on_ingest
        self.counts = IngestCounts(0, 0, 0, 0)
        self.rejected = 0
        self._n = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    await reader.readuntil(START)
                    frame = await reader.readuntil(END)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                text = frame[: -len(END)].decode("utf-8", errors="replace")
                self._n += 1
                try:
                    conv: Record = convert_text(text, f"mllp {peer} message {self._n}")
                except Hl7Error as exc:
                    self.rejected += 1
                    writer.write(ack(text, "AE", str(exc)))
                else:
                    got = self.store.ingest_record(conv)
                    self.counts += got
                    if self.on_ingest is not None:
                        self.on_ingest(got)
                    writer.write(ack(text, "AA"))
                await writer.drain()
        finally:
            writer.close()

    async def start(self, host: str = "127.0.0.1", port: int = 2575) -> asyncio.Server:
        return await asyncio.start_server(self._client, host, port)
