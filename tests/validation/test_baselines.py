"""The statistician's baselines: each forecasts an hour from what was charted before it; on
series where the answer is known they give it."""

from __future__ import annotations

import numpy as np

from vitaltwin.validation.baselines import BASELINES, forecasts


def test_a_ramp_is_extrapolated_by_the_trend_and_lagged_by_the_rest() -> None:
    t = 12
    y = np.tile(60.0 + 2.0 * np.arange(t), (3, 1))  # +2 per hour
    mask = np.ones_like(y, bool)
    mask[1, 5] = False  # a missing hour
    f = forecasts(y, mask, np.ones_like(mask))
    assert set(f) == set(BASELINES)
    k = 8
    assert np.allclose(f["trend"][:, k], y[:, k])  # the line through hours 2-7, one hour on
    assert np.allclose(f["persistence"][0, k], y[0, k] - 2.0)
    assert np.allclose(f["recent_mean"][0, k], y[0, k] - 4.0)  # mean of the 3 hours before
    assert f["ewm"][0, k] < f["persistence"][0, k]  # weights older, lower values too
    assert np.isnan(f["persistence"][:, 0]).all()  # nothing charted before the first hour
    assert not np.isnan(f["trend"][:, 1:]).any()  # one value: persistence stands in
    assert np.allclose(f["trend"][:, 1], y[:, 0])


def test_the_fitted_baselines_learn_mean_reversion() -> None:
    """An AR(1) around 80 (coefficient 0.5): the next value is halfway back to 80, which the
    fitted baselines learn on one half and persistence cannot know."""
    rng = np.random.default_rng(0)
    b, t = 200, 40
    y = np.zeros((b, t))
    y[:, 0] = 80 + rng.normal(0, 10, b)
    for k in range(1, t):
        y[:, k] = 80 + 0.5 * (y[:, k - 1] - 80) + rng.normal(0, 3, b)
    mask = rng.random((b, t)) > 0.1
    fit = np.zeros((b, t), bool)
    fit[: b // 2] = True
    f = forecasts(y, mask, fit)
    ev = mask & ~fit & ~np.isnan(f["persistence"])
    mae = {k: np.abs(v - y)[ev].mean() for k, v in f.items()}
    # persistence errs by the step (SD sqrt(0.25 * 12 + 9) = 3.46: the stationary variance is
    # 9 / 0.75 = 12), the best forecast by the noise alone (SD 3; MAE 3 * sqrt(2 / pi) = 2.39)
    assert abs(mae["regression"] - 2.39) < 0.1 and mae["regression"] < 0.9 * mae["persistence"]
    assert mae["boosting"] < 0.92 * mae["persistence"]
    assert np.isfinite(list(mae.values())).all()
