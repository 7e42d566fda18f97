"""The ingest worker stores runs of plain messages in one call and context messages on their
own, in order; every message is acknowledged once stored and the counts add up; envelopes read
back the same whichever JSON encoder wrote them."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from vitaltwin.service.bus import MemoryBus
from vitaltwin.service.ingest import IngestWorker, envelope
from vitaltwin.store import DuckDBStore

ADT = (
    "MSH|^~\\&|ADT|H|VT|H|20261120100000+0000||ADT^A01|A1|P|2.5\r"
    "PID|1||p3^^^H^MR||Roe^Ann||19500101|F\r"
)


def test_runs_of_plain_messages_are_stored_together(tmp_path: Path) -> None:
    bus = MemoryBus(partitions=1)
    for i in range(40):
        pid = f"p{i % 4}"
        rec = {"patient_id": pid, "time": f"2026-11-22T08:00:{i:02d}Z",
               "code": "8867-4", "value": 70 + i, "unit": "/min"}  # fmt: skip
        bus.publish(pid, envelope("records", "t", [rec, {"bad": 1}]))
        if i == 20:
            bus.publish("p3", envelope("hl7", "adt", ADT))
    with DuckDBStore(tmp_path / "s") as store:
        worker = IngestWorker(bus, store, threading.Lock())
        with mock.patch.object(store, "ingest_record", wraps=store.ingest_record) as calls:
            worker.process(bus.read("w", [0], count=1000))
        assert calls.call_count == 3  # 21 plain, the ADT alone, 19 plain
        assert worker.stats.messages == 41 and bus.pending() == 0
        c = worker.stats.counts
        # the same bad record in 40 messages: 40 quarantine entries, one per message
        assert (c.read, c.stored, c.quarantined) == (80, 40, 40)
        assert store.count("observations") == 40 and store.patients("p3").num_rows == 1


def test_envelopes_read_back_the_same_whichever_encoder_wrote_them() -> None:
    when = datetime(2026, 11, 22, 8, tzinfo=UTC)
    for records in (
        [{"patient_id": "p", "time": "2026-11-22T08:00:00Z", "code": "HR", "value": 80.5,
          "unit": "/min", "device": None, "flag": True}],  # orjson writes it
        [{"patient_id": "p", "value": float("nan")}],  # NaN kept: the standard library
        [{"patient_id": "p", "value": 2**70}],  # beyond 64 bits: the standard library
        [{"patient_id": "p", "value": {"nested": 1.0}}],  # not flat: the standard library
    ):  # fmt: skip
        body = envelope("records", "test", records, when)
        back = json.loads(body)
        env = {"kind": "records", "source": "test", "received": when.isoformat(),
               "payload": records}  # fmt: skip
        expected = json.loads(json.dumps(env))
        assert str(back) == str(expected)  # str: NaN != NaN
