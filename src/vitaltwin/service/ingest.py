"""From the bus into the store: every input the service receives (HTTP JSON, FHIR, HL7 v2, MQTT)
is published as one envelope per patient, and an :class:`IngestWorker` converts and stores it.

An envelope is JSON: ``{"kind": "records" | "fhir" | "hl7" | "rejected", "source": ...,
"received": ISO time, "payload": ...}`` (``rejected``: ``{"reason", "raw"}`` of an input that
could not be read at all, quarantined with that reason). The worker acknowledges a message
only once the store holds it; a message whose storing fails stays pending, is delivered again
(to this or another worker, see :meth:`vitaltwin.service.bus.Bus.claim`) and goes to the dead
letters after the bus's ``max_deliveries``. Storing is idempotent (observation identity), so a
redelivered message is counted as duplicates, never twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from vitaltwin.data import Record
from vitaltwin.interop import json_object, rejection
from vitaltwin.interop.fhir import convert_resources, patient_key, resources_of
from vitaltwin.interop.hl7v2 import Hl7Error, convert_text
from vitaltwin.interop.streams import convert_records
from vitaltwin.service.bus import Bus, Message
from vitaltwin.store import IngestCounts, Store

log = logging.getLogger("vitaltwin.service")
KINDS = ("records", "fhir", "hl7", "rejected")


def envelope(
    kind: str,
    source: str,
    payload: object,
    received: datetime | None = None,
    *,
    from_orjson: bool = False,
) -> bytes:
    """One bus message body. ``from_orjson``: the payload is what ``orjson.loads`` returned
    (no NaN, infinity or integer orjson cannot write again: it is written without looking)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    when = (received or datetime.now(UTC)).isoformat()
    env = {"kind": kind, "source": source, "received": when, "payload": payload}
    if kind == "records" and from_orjson:
        return orjson.dumps(env)
    if kind == "records" and _flat_and_finite(payload):
        with contextlib.suppress(TypeError):  # an integer beyond 64 bits: the stdlib below
            return orjson.dumps(env)
    # the standard library otherwise: it keeps NaN and infinity (quarantined with their own
    # reason by the worker, where orjson would write null) and integers beyond 64 bits
    return json.dumps(env, separators=(",", ":")).encode()


def _flat_and_finite(payload: object) -> bool:
    """Records whose values are all scalars and no float is NaN or infinite (what orjson
    writes exactly as the standard library does, several times faster)."""
    if not isinstance(payload, list):
        return False
    for r in payload:
        if not isinstance(r, dict):
            return False
        for v in r.values():
            t = type(v)
            if t is float:
                if not math.isfinite(v):
                    return False
            elif t not in _SCALARS:
                return False
    return True


_SCALARS = (str, int, bool, type(None))


def fhir_key(doc: dict[str, Any]) -> str:
    """The patient a FHIR resource or Bundle is about (its partition key): the first Patient or
    patient reference found; ``unknown`` when there is none (it is then quarantined)."""
    for _, res, url in resources_of(doc):
        if not isinstance(res, dict):
            continue
        if res.get("resourceType") == "Patient" and res.get("id"):
            return str(res["id"])
        ref = (res.get("subject") or res.get("patient") or {}).get("reference")
        if key := patient_key(ref, {url: ""} if url else {}):
            return key
    return "unknown"


def hl7_key(text: str) -> str:
    """PID-3 of an HL7 v2 message (its partition key)."""
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("PID|"):
            fields = seg.split("|")
            if len(fields) > 3 and fields[3]:
                return fields[3].split("^")[0]
    return "unknown"


def convert(body: bytes, message_id: str | None = None) -> Record:
    """The record an envelope carries (content errors are quarantined, never raised). The
    source names the bus message too, so that bad records of different messages at the same
    position stay distinct quarantine entries."""
    env = json_object(body)
    if isinstance(env, str):
        raise ValueError(env)
    kind, source, payload = env["kind"], env["source"], env["payload"]
    if message_id is not None:
        source = f"{source} #{message_id}"
    received = datetime.fromisoformat(env["received"])
    if kind == "records":
        return convert_records(payload, source, received)
    if kind == "fhir":
        return convert_resources(resources_of(payload), source, received)
    if kind == "rejected":  # an input that could not be read at all: its trace
        return rejection(source, "message", "message", payload["reason"], payload["raw"], received)
    try:
        return convert_text(payload, source, received=received)
    except Hl7Error as exc:  # not HL7 v2 at all: one quarantine entry says why
        return rejection(source, "message", "MSH", str(exc), str(payload)[:200], received)


@dataclass
class IngestStats:
    messages: int = 0
    counts: IngestCounts = field(default_factory=lambda: IngestCounts(0, 0, 0, 0))
    failures: int = 0
    last_error: str | None = None


class IngestWorker:
    """A thread storing what the bus brings (see the module docstring). ``lock`` serializes the
    store with the API's reads (an embedded DuckDB store has one connection)."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        lock: threading.Lock,
        partitions: Sequence[int] | None = None,
        consumer: str | None = None,
        claim_idle_ms: int = 30_000,
        observe: Callable[[str, float], None] | None = None,
        on_stored: Callable[[pa.Table], None] | None = None,
    ) -> None:
        self.bus, self.store, self.lock = bus, store, lock
        self.partitions = list(partitions if partitions is not None else range(bus.partitions))
        self.consumer = consumer or f"ingest-{os.getpid()}-{id(self):x}"
        self.claim_idle_ms = claim_idle_ms
        self.observe = observe or (lambda stage, seconds: None)
        self.on_stored = on_stored
        self.stats = IngestStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.consumer, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        last_claim = 0.0
        while not self._stop.is_set():
            try:
                msgs: list[Message] = []
                if time.monotonic() - last_claim > self.claim_idle_ms / 2000:
                    msgs = self.bus.claim(self.consumer, self.partitions, self.claim_idle_ms)
                    last_claim = time.monotonic()
                msgs += self.bus.read(self.consumer, self.partitions, count=200, block_ms=200)
                if msgs:
                    self.process(msgs)
            except Exception as exc:  # the bus itself failed: say so, wait, go on
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("ingest worker: bus error")
                self._stop.wait(1.0)

    def process(self, msgs: Sequence[Message]) -> None:
        """Convert and store messages; acknowledge each once stored. Consecutive messages that
        carry only observations and quarantine entries are stored in one call (the store's
        per-call cost dominates small messages); a message with patients, encounters or other
        context is stored on its own, in order, so latest-state updates apply as sent."""
        converted: list[tuple[Message, Record]] = []
        for m in msgs:
            t0 = time.perf_counter()
            try:
                converted.append((m, convert(m.body, m.id)))
            except (KeyError, TypeError, ValueError) as exc:
                # not an envelope at all: left unacknowledged, it ends in the dead letters
                self.stats.failures += 1
                self.stats.last_error = f"message {m.id}: not an envelope ({exc})"
                continue
            self.observe("normalize", time.perf_counter() - t0)
        run: list[tuple[Message, Record]] = []
        for m, rec in converted:
            if _plain(rec):
                run.append((m, rec))
                continue
            self._store(run)
            run = []
            self._store([(m, rec)])
        self._store(run)

    def _store(self, batch: list[tuple[Message, Record]]) -> None:
        if not batch:
            return
        rec = batch[0][1] if len(batch) == 1 else combine([r for _, r in batch])
        t1 = time.perf_counter()
        try:
            with self.lock:
                counts = self.store.ingest_record(rec)
        except Exception as exc:  # the store failed: not acknowledged, delivered again
            self.stats.failures += 1
            ids = ", ".join(m.id for m, _ in batch[:3])
            self.stats.last_error = f"messages {ids}: store failed ({exc})"
            log.warning("ingest: store failed for messages %s: %s", ids, exc)
            return
        self.observe("store", time.perf_counter() - t1)
        self.stats.messages += len(batch)
        self.stats.counts = self.stats.counts + counts
        self.bus.ack([m for m, _ in batch])
        if self.on_stored is not None and rec.observations.num_rows:
            self.on_stored(rec.observations)


def _plain(rec: Record) -> bool:
    """Only observations and quarantine entries (no patients, encounters, ...)."""
    return all(t is None or t.num_rows == 0 for t in rec.context().values())


def combine(records: Sequence[Record]) -> Record:
    """Records that carry only observations and quarantine entries, as one (in order)."""
    first = records[0]
    return Record(
        pa.concat_tables([r.observations for r in records]),
        pa.concat_tables([r.quarantine for r in records]),
        first.patients.schema.empty_table(),
        first.labels.schema.empty_table(),
        sum(r.values_read for r in records),
    )
