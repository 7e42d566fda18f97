"""Clock offsets are recovered; grids carry values forward only with their age."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vitaltwin.data.align import align_to_grid, correct_clock, estimate_clock_offset

T0 = pd.Timestamp("2026-11-22T08:00:00Z")


def test_clock_offset_of_a_monitor_is_recovered() -> None:
    rng = np.random.default_rng(0)
    t = T0 + pd.to_timedelta(np.arange(3600), unit="s")
    hr = 80 + np.cumsum(rng.normal(0, 0.5, 3600))  # a wandering heart rate
    ref = pd.Series(t), pd.Series(hr)
    # the monitor's clock runs 37 s fast and it samples every 2 s with noise
    dev_t = pd.Series(t[::2] + pd.Timedelta(seconds=37))
    dev_v = pd.Series(hr[::2] + rng.normal(0, 0.3, len(dev_t)))
    offset, corr = estimate_clock_offset(*ref, dev_t, dev_v, max_lag_s=120)
    assert offset == pytest.approx(37.0, abs=1.0) and corr > 0.9
    obs = pd.DataFrame(
        {"effective_time": dev_t, "value": dev_v, "device": "mon-7", "quality": None}
    )
    fixed = correct_clock(obs, "mon-7", offset)
    assert (fixed["effective_time"] == dev_t - pd.Timedelta(seconds=offset)).all()
    assert fixed["quality"].str.contains("clock corrected by -37 s").all()


def test_too_short_overlap_is_an_error() -> None:
    t = pd.Series(T0 + pd.to_timedelta(np.arange(60), unit="s"))
    with pytest.raises(ValueError, match="overlap too little"):
        estimate_clock_offset(t, pd.Series(np.arange(60.0)), t, pd.Series(np.arange(60.0)))


def test_grid_carries_values_forward_with_their_age_and_never_before_the_first() -> None:
    obs = pd.DataFrame(
        {
            "effective_time": [T0 + pd.Timedelta(seconds=s) for s in (3, 10)],
            "loinc": "8867-4",
            "value": [90.0, 95.0],
        }
    )
    g = align_to_grid(obs, T0, T0 + pd.Timedelta(seconds=20), max_age_s=8)
    v, age = g["8867-4"].to_numpy(), g["8867-4_age_s"].to_numpy()
    assert np.isnan(v[2]) and np.isnan(age[2])
    assert v[3] == 90.0 and age[3] == 0.0
    assert v[9] == 90.0 and age[9] == 6.0
    assert v[18] == 95.0 and age[18] == 8.0
    assert np.isnan(v[19]) and age[19] == 9.0  # stale: older than max_age_s
