"""The bus: partitioned by patient, at-least-once with takeover of a dead consumer's messages,
dead letters after repeated failures, replay from an offset; the in-process bus and Redis Streams
(the real server at 127.0.0.1:6379) behave the same."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from vitaltwin.service.bus import Bus, MemoryBus, RedisBus


@pytest.fixture(params=["memory", "redis"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "memory":
        yield MemoryBus(partitions=4, max_deliveries=3)
        return
    url = request.getfixturevalue("redis_url")
    b = RedisBus(url, prefix=f"vt-test:{uuid.uuid4().hex}", partitions=4, max_deliveries=3)
    try:
        yield b
    finally:
        b.drop()
        b.close()


ALL = range(4)


def test_a_patients_messages_arrive_in_order_on_one_partition(bus: Bus) -> None:
    for i in range(5):
        bus.publish("p1", f"a{i}".encode())
        bus.publish("p2", f"b{i}".encode())
    got = bus.read("w1", ALL, count=100)
    assert [m.body for m in got if m.key == "p1"] == [f"a{i}".encode() for i in range(5)]
    assert {m.partition for m in got if m.key == "p1"} == {bus.partition("p1")}
    assert all(m.deliveries == 1 for m in got)
    assert bus.pending() == 10
    bus.ack(got)
    assert bus.pending() == 0
    assert bus.read("w1", ALL, count=100) == []  # nothing new


def test_a_dead_consumers_messages_are_taken_over(bus: Bus) -> None:
    bus.publish("p1", b"x")
    first = bus.read("dies", ALL)
    assert len(first) == 1
    assert bus.claim("takes-over", ALL, min_idle_ms=60_000) == []  # not idle long enough yet
    time.sleep(0.05)
    again = bus.claim("takes-over", ALL, min_idle_ms=20)
    assert [(m.id, m.body, m.deliveries) for m in again] == [(first[0].id, b"x", 2)]
    bus.ack(again)
    assert bus.pending() == 0


def test_a_message_that_keeps_failing_goes_to_the_dead_letters(bus: Bus) -> None:
    bus.publish("p1", b"poison")
    bus.publish("p1", b"fine")
    got = bus.read("w", ALL)
    bus.ack([m for m in got if m.body == b"fine"])
    for _ in range(2):  # deliveries 2 and 3 fail too
        assert [m.body for m in bus.claim("w", ALL, min_idle_ms=0)] == [b"poison"]
    assert bus.claim("w", ALL, min_idle_ms=0) == []
    dead = bus.dead_letters()
    assert [(d.key, d.body) for d in dead] == [("p1", b"poison")]
    assert "3 deliveries" in dead[0].reason
    assert bus.pending() == 0


def test_replay_from_an_offset(bus: Bus) -> None:
    ids = [bus.publish("p1", f"{i}".encode()) for i in range(4)]
    p = bus.partition("p1")
    assert [m.body for m in bus.replay(p, ids[2])] == [b"2", b"3"]
    assert [m.id for m in bus.replay(p)] == ids


def test_partitions_are_stable_and_spread() -> None:
    a, b = MemoryBus(partitions=8), MemoryBus(partitions=8)
    keys = [f"patient-{i}" for i in range(400)]
    assert [a.partition(k) for k in keys] == [b.partition(k) for k in keys]
    counts = [sum(a.partition(k) == p for k in keys) for p in range(8)]
    assert min(counts) > 25  # 50 each on average
