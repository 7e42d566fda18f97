"""The demo ward's gateway: virtual patients measured like a monitor, the course played fast up
to now and then in real time, never a value from the future; set-A stays replayed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vitaltwin.dashboard import DemoConfig, WardFeed

SET_A = Path(__file__).resolve().parents[3] / "shared/data/physionet2019/training_setA.parquet"


def test_virtual_ward_batches_catch_up_then_run_in_real_time() -> None:
    feed = WardFeed("http://127.0.0.1:1", DemoConfig(beds=3, speed=600, hours=1, seed=3))
    batches = list(itertools.islice(feed.batches(), 8))
    seconds = [s for s, _ in batches]
    # 600 simulated seconds per batch until the course (1 h) reaches now, then one
    assert seconds[:6] == [0, 600, 1200, 1800, 2400, 3000]
    # then it keeps up with the clock: at least a second on, never past now
    assert seconds[6] >= 3600 and seconds[7] - seconds[6] >= 1.0
    assert feed.start + timedelta(seconds=seconds[7]) <= datetime.now(UTC)
    first = batches[0][1]
    assert {r["patient_id"] for r in first} == {"bed-01", "bed-02", "bed-03"}
    monitor = {"8867-4", "8478-0", "8480-6", "8462-4", "59408-5", "9279-1"}
    assert {r["code"] for r in first} == monitor | {"8310-5"}  # with an admission temperature
    # lactate, WBC, Hb at 30 min, temperature on the hour
    codes = [{r["code"] for r in b} for _, b in batches]
    assert "2524-7" in codes[3] and "8310-5" not in codes[3]  # the batch at 1,800 s
    assert "8310-5" in codes[6]
    now = datetime.now(UTC)
    times = [datetime.fromisoformat(r["time"]) for _, b in batches for r in b]
    assert max(times) <= now + timedelta(seconds=1)  # never from the future
    assert all(r["value"] > 0 for _, b in batches for r in b)
    with pytest.raises(ValueError, match="beds"):
        DemoConfig(beds=0)


@pytest.mark.slow
@pytest.mark.skipif(not SET_A.exists(), reason="shared PhysioNet set A not present")
def test_set_a_stays_replayed_side_by_side() -> None:
    feed = WardFeed("http://127.0.0.1:1", DemoConfig(beds=2, speed=3600, hours=30, replay=SET_A))
    patients = feed.source.patients()
    assert len(patients) == 2 and all(p["resourceType"] == "Patient" for p in patients)
    records = [r for _, b in itertools.islice(feed.batches(), 5) for r in b]
    assert {r["patient_id"] for r in records} == {p["id"] for p in patients}
    start = feed.start
    assert all(start <= datetime.fromisoformat(r["time"]) <= start + timedelta(hours=4, seconds=1)
               for r in records)  # fmt: skip
