"""The bus every input goes through: one interface, two implementations.

:class:`MemoryBus` (the default: one process, nothing to install) and :class:`RedisBus` (Redis
Streams, when several processes or machines share the work). Both give the same guarantees:

* **partitioned by patient**: a patient's messages go to one of ``partitions`` streams
  (CRC-32 of the key), so one consumer sees a patient's messages in order;
* **at-least-once**: a message read stays pending until it is acknowledged; a consumer that died
  leaves its pending messages to be taken over (:meth:`Bus.claim`, Redis ``XAUTOCLAIM``) once
  they have been idle long enough;
* **dead-letter**: a message delivered ``max_deliveries`` times without an acknowledgement is
  moved to the dead-letter stream with the reason and acknowledged, so one poison message never
  blocks a patient;
* **replay**: :meth:`Bus.replay` reads a partition again from any offset (outside the group).

Processing must be idempotent: consumers store by observation identity, so a redelivered
message is counted as a duplicate, never twice.
"""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One message as a consumer gets it."""

    partition: int
    id: str  # the stream offset, ``<ms>-<seq>``
    key: str  # the patient key it is partitioned by
    body: bytes
    deliveries: int  # 1 on first delivery


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    id: str
    key: str
    body: bytes
    reason: str


class Bus(ABC):
    """Partitioned, acknowledged message streams (see the module docstring)."""

    def __init__(self, partitions: int = 8, max_deliveries: int = 5) -> None:
        if partitions < 1 or max_deliveries < 1:
            raise ValueError("partitions and max_deliveries must be at least 1")
        self.partitions = partitions
        self.max_deliveries = max_deliveries

    def partition(self, key: str) -> int:
        """The partition of a patient key (stable across processes and restarts)."""
        return zlib.crc32(key.encode()) % self.partitions

    @abstractmethod
    def publish(self, key: str, body: bytes) -> str:
        """Append a message for patient ``key``; returns its offset."""

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> list[str]:
        """Append several ``(key, body)`` messages (in one round trip where the bus can);
        returns their offsets."""
        return [self.publish(key, body) for key, body in messages]

    @abstractmethod
    def read(
        self, consumer: str, partitions: Sequence[int], count: int = 100, block_ms: int = 0
    ) -> list[Message]:
        """New messages of ``partitions`` for ``consumer`` (they stay pending until acked),
        waiting up to ``block_ms`` when there are none."""

    @abstractmethod
    def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge processed messages."""

    @abstractmethod
    def claim(
        self, consumer: str, partitions: Sequence[int], min_idle_ms: int, count: int = 100
    ) -> list[Message]:
        """Take over messages pending longer than ``min_idle_ms`` (their consumer died or
        hangs); those delivered ``max_deliveries`` times go to the dead letters instead."""

    @abstractmethod
    def replay(self, partition: int, start: str = "0-0", count: int = 1000) -> list[Message]:
        """Messages of one partition from offset ``start`` (inclusive), outside the group."""

    @abstractmethod
    def dead_letters(self) -> list[DeadLetter]:
        """Messages given up on, with the reason."""

    @abstractmethod
    def pending(self) -> int:
        """Messages delivered and not yet acknowledged, over all partitions."""

    def close(self) -> None:  # noqa: B027 - optional for implementations
        """Release connections."""


@dataclass
class _Entry:
    id: str
    key: str
    body: bytes


@dataclass
class _Pending:
    consumer: str
    delivered_at: float  # time.monotonic()
    deliveries: int


@dataclass
class _Partition:
    entries: list[_Entry] = field(default_factory=list)
    next_index: int = 0  # first entry not yet delivered to the group
    pending: dict[str, _Pending] = field(default_factory=dict)


class MemoryBus(Bus):
    """The bus inside one process (the embedded default), with the same semantics as Redis."""

    def __init__(self, partitions: int = 8, max_deliveries: int = 5) -> None:
        super().__init__(partitions, max_deliveries)
        self._parts = [_Partition() for _ in range(partitions)]
        self._dead: list[DeadLetter] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()

    def publish(self, key: str, body: bytes) -> str:
        with self._cond:
            mid = f"{int(time.time() * 1000)}-{next(self._seq)}"
            self._parts[self.partition(key)].entries.append(_Entry(mid, key, body))
            self._cond.notify_all()
        return mid

    def read(
        self, consumer: str, partitions: Sequence[int], count: int = 100, block_ms: int = 0
    ) -> list[Message]:
        deadline = time.monotonic() + block_ms / 1000
        with self._cond:
            while True:
                out = self._take(consumer, partitions, count)
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                self._cond.wait(left)

    def _take(self, consumer: str, partitions: Sequence[int], count: int) -> list[Message]:
        out: list[Message] = []
        now = time.monotonic()
        for p in partitions:
            part = self._parts[p]
            while part.next_index < len(part.entries) and len(out) < count:
                e = part.entries[part.next_index]
                part.next_index += 1
                part.pending[e.id] = _Pending(consumer, now, 1)
                out.append(Message(p, e.id, e.key, e.body, 1))
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        with self._cond:
            for m in messages:
                self._parts[m.partition].pending.pop(m.id, None)

    def claim(
        self, consumer: str, partitions: Sequence[int], min_idle_ms: int, count: int = 100
    ) -> list[Message]:
        out: list[Message] = []
        now = time.monotonic()
        with self._cond:
            for p in partitions:
                part = self._parts[p]
                by_id = {e.id: e for e in part.entries}
                for mid, pend in list(part.pending.items()):
                    if len(out) >= count:
                        break
                    if (now - pend.delivered_at) * 1000 < min_idle_ms:
                        continue
                    e = by_id[mid]
                    if pend.deliveries >= self.max_deliveries:
                        reason = f"not acknowledged after {pend.deliveries} deliveries"
                        self._dead.append(DeadLetter(p, mid, e.key, e.body, reason))
                        del part.pending[mid]
                        continue
                    part.pending[mid] = _Pending(consumer, now, pend.deliveries + 1)
                    out.append(Message(p, mid, e.key, e.body, pend.deliveries + 1))
        return out

    def replay(self, partition: int, start: str = "0-0", count: int = 1000) -> list[Message]:
        with self._cond:
            entries = [e for e in self._parts[partition].entries if _offset(e.id) >= _offset(start)]
        return [Message(partition, e.id, e.key, e.body, 0) for e in entries[:count]]

    def dead_letters(self) -> list[DeadLetter]:
        with self._cond:
            return list(self._dead)

    def pending(self) -> int:
        with self._cond:
            return sum(len(p.pending) for p in self._parts)


def _offset(mid: str) -> tuple[int, int]:
    ms, _, seq = mid.partition("-")
    return int(ms), int(seq or 0)


class RedisBus(Bus):
    """Redis Streams: one stream per partition (``{prefix}:{k}``), one consumer group, the
    dead letters in ``{prefix}:dead``."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "vitaltwin:obs",
        group: str = "workers",
        partitions: int = 8,
        max_deliveries: int = 5,
        maxlen: int | None = 10_000_000,
    ) -> None:
        import redis

        super().__init__(partitions, max_deliveries)
        self.prefix, self.group, self.maxlen = prefix, group, maxlen
        self._redis: Any = redis.Redis.from_url(url)  # redis-py's annotations are partial
        self._error = redis.ResponseError
        for p in range(partitions):
            try:
                self._redis.xgroup_create(self._stream(p), group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _stream(self, p: int) -> str:
        return f"{self.prefix}:{p}"

    def publish(self, key: str, body: bytes) -> str:
        fields: Any = {"key": key, "body": body}
        mid = self._redis.xadd(
            self._stream(self.partition(key)), fields, maxlen=self.maxlen, approximate=True
        )
        return _text(mid)

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        for key, body in messages:
            fields: Any = {"key": key, "body": body}
            pipe.xadd(self._stream(self.partition(key)), fields, maxlen=self.maxlen,
                      approximate=True)  # fmt: skip
        return [_text(mid) for mid in pipe.execute()]

    def read(
        self, consumer: str, partitions: Sequence[int], count: int = 100, block_ms: int = 0
    ) -> list[Message]:
        streams: Any = {self._stream(p): ">" for p in partitions}
        got = self._redis.xreadgroup(
            self.group, consumer, streams, count=count, block=block_ms or None
        )
        return [
            Message(self._part(stream), _text(mid), _text(f[b"key"]), f[b"body"], 1)
            for stream, entries in got or []
            for mid, f in entries
            if f  # an entry trimmed away while pending comes back empty
        ]

    def _part(self, stream: bytes | str) -> int:
        return int(_text(stream).rsplit(":", 1)[1])

    def ack(self, messages: Sequence[Message]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for m in messages:
            pipe.xack(self._stream(m.partition), self.group, m.id)
        pipe.execute()

    def claim(
        self, consumer: str, partitions: Sequence[int], min_idle_ms: int, count: int = 100
    ) -> list[Message]:
        out: list[Message] = []
        for p in partitions:
            stream = self._stream(p)
            # deliveries so far of what is idle enough, to dead-letter the hopeless first
            idle = self._redis.xpending_range(
                stream, self.group, min="-", max="+", count=count, idle=min_idle_ms
            )
            hopeless = {
                _text(i["message_id"]): int(i["times_delivered"])
                for i in idle
                if int(i["times_delivered"]) >= self.max_deliveries
            }
            for mid, times in hopeless.items():
                entries = self._redis.xrange(stream, mid, mid)
                f = entries[0][1] if entries else {}
                reason = f"not acknowledged after {times} deliveries"
                self._redis.xadd(
                    f"{self.prefix}:dead",
                    {
                        "partition": p,
                        "id": mid,
                        "key": f.get(b"key", b""),
                        "body": f.get(b"body", b""),
                        "reason": reason,
                    },
                )
                self._redis.xack(stream, self.group, mid)
            _, claimed, _ = self._redis.xautoclaim(
                stream, self.group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
            )
            if not claimed:
                continue
            counts = {
                _text(i["message_id"]): int(i["times_delivered"])
                for i in self._redis.xpending_range(
                    stream, self.group, min="-", max="+", count=len(claimed) + count,
                    consumername=consumer,
                )
            }  # fmt: skip
            out += [
                Message(p, _text(mid), _text(f[b"key"]), f[b"body"], counts.get(_text(mid), 1))
                for mid, f in claimed
                if f
            ]
        return out

    def replay(self, partition: int, start: str = "0-0", count: int = 1000) -> list[Message]:
        entries = self._redis.xrange(self._stream(partition), start, "+", count=count)
        return [
            Message(partition, _text(mid), _text(f[b"key"]), f[b"body"], 0) for mid, f in entries
        ]

    def dead_letters(self) -> list[DeadLetter]:
        return [
            DeadLetter(
                int(f[b"partition"]), _text(f[b"id"]), _text(f[b"key"]), f[b"body"],
                _text(f[b"reason"]),
            )
            for _, f in self._redis.xrange(f"{self.prefix}:dead", "-", "+")
        ]  # fmt: skip

    def pending(self) -> int:
        return sum(
            int(self._redis.xpending(self._stream(p), self.group)["pending"])
            for p in range(self.partitions)
        )

    def drop(self) -> None:
        """Delete this bus's streams (tests, and a ward reset)."""
        self._redis.delete(*(self._stream(p) for p in range(self.partitions)))
        self._redis.delete(f"{self.prefix}:dead")

    def close(self) -> None:
        self._redis.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
