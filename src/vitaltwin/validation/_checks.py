"""The rows of the verification table and how they are graded (shared by both fidelities)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vitaltwin.physiology import cite

Grade = Literal["green", "yellow", "red"]
Direction = Literal["increase", "decrease", "within"]
"""A change that must rise, fall, or (``within``) a value that must lie in a range."""


def grade_error(pct_error: float) -> Grade:
    """<= 5 % green, <= 10 % yellow, otherwise red."""
    e = abs(pct_error)
    if e <= 5.0:
        return "green"
    if e <= 10.0:
        return "yellow"
    return "red"


@dataclass(frozen=True)
class RestingCheck:
    metric: str
    label: str
    unit: str
    expected: float
    computed: float
    error_pct: float
    grade: Grade
    source: str


@dataclass(frozen=True)
class DynamicCheck:
    scenario: str
    quantity: str
    comparison: str
    expected_direction: Direction
    expected_low: float
    expected_high: float
    unit: str
    computed: float
    grade: Grade
    source: str


def source_text(src: str) -> str:
    """Expand a leading bibliography key; keep the note that follows it."""
    key, _, rest = src.partition(" ")
    try:
        full = cite(key)
    except KeyError:
        return src
    return f"{full}; here: {rest.strip('() ')}" if rest else full


def range_check(
    scenario: str,
    quantity: str,
    comparison: str,
    direction: Direction,
    low: float,
    high: float,
    unit: str,
    computed: float,
    source: str,
) -> DynamicCheck:
    right_way = {"increase": computed > 0, "decrease": computed < 0, "within": True}[direction]
    ok = right_way and low <= computed <= high
    return DynamicCheck(
        scenario,
        quantity,
        comparison,
        direction,
        low,
        high,
        unit,
        float(computed),
        "green" if ok else "red",
        source_text(source),
    )
