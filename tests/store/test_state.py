"""A service's state (the twins' checkpoint) kept in the store: replaced whole, read back
exactly, with when it was saved; on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from vitaltwin.store import Store


def test_state_is_replaced_whole_and_read_back(store: Store) -> None:
    assert store.load_state("twins") is None
    before = datetime.now(UTC)
    store.save_state("twins", b"\x00first")
    store.save_state("twins", bytes(range(256)) * 1000)  # binary, 256 kB
    store.save_state("other", b"x")
    got = store.load_state("twins")
    assert got is not None
    data, saved = got
    assert data == bytes(range(256)) * 1000
    assert saved.tzinfo is not None and saved >= before.replace(microsecond=0)
    assert store.load_state("other") == (b"x", store.load_state("other")[1])  # type: ignore[index]
