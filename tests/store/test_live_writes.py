"""A live feed into the embedded store: duplicates found only within the batch's time span
(so the cost does not grow with history), checkpoints written by a thread of their own."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vitaltwin.interop.streams import convert_records
from vitaltwin.store import DuckDBStore, Store

T0 = datetime(2026, 12, 4, 7, tzinfo=UTC)


def second(s: int, beds: int = 20, shift: float = 0.0) -> list[dict[str, object]]:
    t = (T0 + timedelta(seconds=s)).isoformat()
    return [{"patient_id": f"b{b}", "time": t, "code": "HR", "value": 80.0 + b + shift,
             "unit": "/min"} for b in range(beds)]  # fmt: skip


def test_a_resent_value_is_a_duplicate_whenever_it_comes_back(store: Store) -> None:
    """Values re-sent long after (a gateway replaying its buffer) are still duplicates, values
    at a time already stored with another value are not, within one batch and across."""
    for s in range(30):
        store.ingest_record(convert_records(second(s), "gw", T0 + timedelta(minutes=1)))
    again = convert_records(second(3) + second(29) + second(3), "gw", T0 + timedelta(minutes=2))
    counts = store.ingest_record(again)
    assert (counts.stored, counts.duplicates) == (0, 60)
    changed = convert_records(second(3, shift=1.0) + second(30), "gw", T0 + timedelta(minutes=2))
    counts = store.ingest_record(changed)
    assert (counts.stored, counts.duplicates) == (40, 0)
    assert store.count("observations") == 640


def test_checkpoints_in_the_background_keep_every_value(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "s", checkpoint_every_s=0.05)
    try:
        for s in range(20):
            store.ingest_record(convert_records(second(s), "gw", T0 + timedelta(minutes=1)))
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while not store.checkpoint_s and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.checkpoint_s, "no checkpoint was written"
    finally:
        store.close()
    with DuckDBStore(tmp_path / "s") as reopened:
        assert reopened.count("observations") == 400
