"""Honest-uncertainty figures: the normal CRPS against its definition, band coverage as issued,
rescaled on tuning rows and calibrated online."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from vitaltwin.validation.uncertainty import (
    ONLINE_COLUMNS,
    UNCERTAINTY_COLUMNS,
    normal_crps,
    online_coverage,
    uncertainty,
)


def test_normal_crps_is_its_definition() -> None:
    # CRPS = integral of (F(x) - 1{x >= y})^2 dx, by quadrature, for a few forecasts
    x = np.linspace(-40, 40, 400_001)
    for mean, sd, y in ((0.0, 1.0, 0.3), (2.0, 3.0, -4.0), (-1.0, 0.5, -1.0)):
        f = norm.cdf(x, mean, sd)
        by_definition = np.trapezoid((f - (x >= y)) ** 2, x)
        assert abs(float(normal_crps(np.array(mean), sd, np.array(y))) - by_definition) < 1e-4


def test_spread_too_narrow_is_seen_and_rescaled() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    mean = rng.normal(80, 10, n)
    y = mean + rng.normal(0, 6.0, n)  # the truth's spread
    sd = np.full(n, 3.0)  # the forecast claims half of it
    tune = np.arange(n) < n // 2
    out = uncertainty(mean, sd, y, y - rng.normal(0, 9.0, n), tune, ~tune)
    assert tuple(out) == UNCERTAINTY_COLUMNS
    # as issued, a 90 % band of half the width holds P(|Z| < 0.82) = 59 %
    assert abs(out["band90_coverage"] - (2 * norm.cdf(1.6449 / 2) - 1)) < 0.02
    assert abs(out["band90_scale"] - 2.0) < 0.1 and abs(out["band50_scale"] - 2.0) < 0.1
    assert abs(out["band90_coverage_rescaled"] - 0.9) < 0.015
    assert abs(out["band50_coverage_rescaled"] - 0.5) < 0.015
    # a well-centred forecast scores better than the reference that is 9 off on average
    assert out["twin_crps"] < out["persistence_crps"]


def test_online_calibration_makes_too_wide_and_too_narrow_bands_honest() -> None:
    # hour by hour, 500 patients: forecasts that claim twice the truth's spread, then (from
    # hour 20, a new population) half of it; the online bands follow both, with no tuning data
    rng = np.random.default_rng(1)
    b, t = 500, 40
    mean = rng.normal(80, 10, (b, t))
    truth_sd = np.where(np.arange(t) < 20, 3.0, 12.0)[None, :]
    y = mean + rng.normal(0, 1, (b, t)) * truth_sd
    sd = np.full((b, t), 6.0)
    rows = rng.random((b, t)) < 0.8
    online = online_coverage(mean, sd, y, rows, window=1000, min_errors=200)
    assert tuple(online) == ONLINE_COLUMNS
    assert abs(online["band50_coverage_online"] - 0.5) < 0.05
    assert abs(online["band90_coverage_online"] - 0.9) < 0.05
    assert abs(online["band90_scale_online"] - 2.0) < 0.15  # the recent population's: 12 / 6
    # each half on its own: too wide (3 vs 6) then too narrow (12 vs 6) as issued; honest online
    for part, as_issued in ((np.arange(t) < 20, 0.82), (np.arange(t) >= 20, 0.26)):
        r = rows & part[None, :]
        issued = uncertainty(mean, sd, y, mean, r, r)["band50_coverage"]
        assert issued == pytest.approx(as_issued, abs=0.02)  # P(|Z| < 0.674 x 2) and x 1/2
        assert abs(online_coverage(mean, sd, y, r)["band50_coverage_online"] - 0.5) < 0.05
