"""Forecast bands calibrated online from resolved forecasts: as issued until enough errors
are in, then the recent errors' quantiles; each observable on its own; bad input named."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from vitaltwin.twin import OnlineBandCalibration


def test_bands_are_as_issued_until_enough_errors_then_follow_them() -> None:
    cal = OnlineBandCalibration(["MAP", "HR"], window=2000, min_errors=300)
    rng = np.random.default_rng(0)
    mean = rng.normal(75, 8, 299)
    cal.record("MAP", mean + rng.normal(0, 2.0, 299), mean, np.full(299, 4.0))
    assert cal.count("MAP") == 299
    assert cal.half_width("MAP", 0.9) == pytest.approx(norm.ppf(0.95))  # 299 < 300: as issued
    assert cal.factor("MAP", 0.5) == pytest.approx(1.0)
    mean = rng.normal(75, 8, 1701)
    cal.record("MAP", mean + rng.normal(0, 2.0, 1701), mean, np.full(1701, 4.0))
    # errors of SD 2 against a claimed 4: the band halves, and new outcomes fill it as stated
    assert cal.factor("MAP", 0.9) == pytest.approx(0.5, abs=0.05)
    new = rng.normal(75, 8, 20_000)
    lo, hi = cal.band("MAP", new, np.full(new.size, 4.0), 0.9)
    outcome = new + rng.normal(0, 2.0, new.size)
    assert ((outcome >= lo) & (outcome <= hi)).mean() == pytest.approx(0.9, abs=0.015)
    assert cal.count("HR") == 0 and cal.factor("HR", 0.9) == pytest.approx(1.0)  # untouched


def test_only_the_recent_window_counts_and_unusable_errors_are_skipped() -> None:
    cal = OnlineBandCalibration(["SpO2"], window=500, min_errors=100)
    z = np.zeros(1000)
    cal.record("SpO2", z + 10.0, z, z + 1.0)  # old errors of 10 SDs
    cal.record("SpO2", z[:500] + 1.0, z[:500], z[:500] + 1.0)  # then 500 of 1 SD
    assert cal.count("SpO2") == 500 and cal.half_width("SpO2", 0.9) == pytest.approx(1.0)
    added = cal.record(
        "SpO2", np.array([np.nan, 1.0, 1.0]), np.array([0.0, np.nan, 0.0]), np.array([1, 1, 0.0])
    )
    assert added == 0 and cal.count("SpO2") == 500


def test_bad_use_is_named() -> None:
    cal = OnlineBandCalibration(["MAP"])
    with pytest.raises(KeyError, match="'HR' is not calibrated here"):
        cal.factor("HR", 0.9)
    with pytest.raises(ValueError, match=r"band level 1\.2"):
        cal.half_width("MAP", 1.2)
    with pytest.raises(ValueError, match="min_errors"):
        OnlineBandCalibration(["MAP"], window=10, min_errors=20)
