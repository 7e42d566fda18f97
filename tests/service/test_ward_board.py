"""The ward board keeps each bed's latest vitals from stored batches (arrays, a batch at a time):
the latest value wins whatever the order within or across batches, missing values and codes the
board does not show are skipped, and the ward grows past its first arrays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from vitaltwin.service.ward import WardBoard

T0 = datetime(2026, 3, 1, 8, 0, 0, 123457, tzinfo=UTC)
HR, MAP, WBC = "8867-4", "8478-0", "6690-2"


def batch(rows: list[tuple[str, str, datetime, float | None]], unit: str = "us") -> pa.Table:
    return pa.table(
        {
            "patient_id": [r[0] for r in rows],
            "loinc": [r[1] for r in rows],
            "effective_time": pa.array([r[2] for r in rows], pa.timestamp(unit, tz="UTC")),
            "value": pa.array([r[3] for r in rows], pa.float64()),
        }
    )


def test_the_latest_value_wins_in_and_across_batches() -> None:
    board = WardBoard()
    later = T0 + timedelta(seconds=1)
    board.stored(batch([("a", HR, later, 90.0), ("a", HR, T0, 80.0), ("a", MAP, T0, None),
                        ("a", WBC, T0, 12.0), ("b", MAP, T0, 70.0)]))  # fmt: skip
    a = board.bed("a")["vitals"]
    assert a == {"HR": {"value": 90.0, "unit": "/min", "time": later.isoformat()}}
    board.stored(batch([("a", HR, T0, 60.0)]))  # older than what the bed shows: kept out
    assert board.bed("a")["vitals"]["HR"]["value"] == 90.0
    board.stored(batch([("a", HR, later, 95.0), ("a", HR, later, 96.0)]))  # a tie: the last
    assert board.bed("a")["vitals"]["HR"]["value"] == 96.0
    assert board.bed("b")["vitals"]["MAP"]["time"] == T0.isoformat()  # to the microsecond
    board.stored(batch([("b", MAP, later, 72.0)], unit="ns"))  # nanoseconds read the same
    assert board.bed("b")["vitals"]["MAP"] == {"value": 72.0, "unit": "mm[Hg]",
                                               "time": later.isoformat()}  # fmt: skip


def test_the_ward_grows() -> None:
    board = WardBoard()
    board.stored(batch([(f"bed-{i:02d}", HR, T0, float(i)) for i in range(40)]))
    assert board.patients() == [f"bed-{i:02d}" for i in range(40)]
    assert [board.bed(p)["vitals"]["HR"]["value"] for p in board.patients()] == list(range(40))
