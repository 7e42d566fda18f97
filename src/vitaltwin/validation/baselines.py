"""The forecasts a statistician would set beside a twin's, on the same charted history.

Each baseline forecasts the value charted in hour ``k`` from what was charted before ``k``
(arrays ``(B, T)`` of values with a mask, hour by hour from each stay's start), so every figure
compares forecasts made with the same information:

* ``persistence``: the last charted value;
* ``recent_mean``: the mean of the values charted in the previous ``recent_h`` (3) hours;
* ``ewm``: the exponentially weighted mean of all values before ``k``, half-life ``halflife_h``
  (3) hours of the grid;
* ``trend``: the least-squares line through the values of the previous ``trend_h`` (6) hours,
  one hour ahead of the last;
* ``regression``: linear regression of the next value on the last value, the patient's running
  mean and the hours since the last value;
* ``boosting``: gradient-boosted trees (LightGBM) on lagged values (the last three hours'),
  the last value, the running mean, the hours since, the recent mean, the exponentially
  weighted mean, the trend's slope and the hour of the stay.

The two fitted ones are fitted on the rows a caller marks for fitting (the tuning half of the
patients), with LightGBM's deterministic, single-seeded training. Where a baseline cannot
forecast (too few values), it falls back to persistence, so every baseline covers the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

Array = npt.NDArray[np.float64]
BASELINES = ("persistence", "recent_mean", "ewm", "trend", "regression", "boosting")


@dataclass(frozen=True)
class BaselineConfig:
    recent_h: int = 3
    halflife_h: float = 3.0
    trend_h: int = 6
    lags: int = 3
    boosting_rounds: int = 200
    seed: int = 0


def _shifted(frame: pd.DataFrame) -> Array:
    """A (T, B) frame's values moved one hour later, as (B, T): what was known before hour k."""
    out: Array = frame.shift(1).to_numpy().T
    return out


def history(y: Array, mask: npt.NDArray[np.bool_], cfg: BaselineConfig) -> dict[str, Array]:
    """Per hour ``k`` ``(B, T)``, from the values charted before ``k``: last value, running
    mean, hours since the last value, recent mean, exponentially weighted mean, trend forecast
    and slope, the last ``lags`` hours' values (NaN where not charted)."""
    b, t = y.shape
    vals = pd.DataFrame(np.where(mask, y, np.nan).T)  # (T, B)
    last = _shifted(vals.ffill())
    csum = np.cumsum(np.where(mask, y, 0.0), axis=1)
    cnt = np.cumsum(mask, axis=1)
    run_mean = np.full((b, t), np.nan)
    run_mean[:, 1:] = csum[:, :-1] / np.where(cnt[:, :-1] > 0, cnt[:, :-1], np.nan)
    idx = pd.DataFrame(np.where(mask, np.arange(t)[None, :], np.nan).T)
    age = np.arange(t)[None, :] - _shifted(idx.ffill())
    recent = _shifted(vals.rolling(cfg.recent_h, min_periods=1).mean())
    ewm = _shifted(vals.ewm(halflife=cfg.halflife_h, ignore_na=False).mean())
    # least squares over the last trend_h hours: slope = cov(h, v) / var(h) on charted hours
    hours = pd.DataFrame(np.where(mask, np.arange(t)[None, :], np.nan).T.astype(float))
    win = cfg.trend_h
    n = vals.notna().astype(float).rolling(win, min_periods=1).sum()
    sh = hours.rolling(win, min_periods=1).sum()
    sv = vals.rolling(win, min_periods=1).sum()
    shh = (hours**2).rolling(win, min_periods=1).sum()
    shv = (hours * vals).rolling(win, min_periods=1).sum()
    var = shh - sh**2 / n
    slope = ((shv - sh * sv / n) / var.where(var > 1e-9)).where(n >= 2)
    level = sv / n + slope * ((np.arange(t)[:, None] + 1) - sh / n)  # the line at the next hour
    lags = np.stack([_shifted(vals.shift(k)) for k in range(cfg.lags)], axis=-1)
    return {
        "last": last,
        "run_mean": run_mean,
        "age": age,
        "recent": recent,
        "ewm": ewm,
        "trend": _shifted(level),
        "slope": _shifted(slope),
        "lags": lags,
    }


def _lag_features(h: dict[str, Array], shape: tuple[int, ...]) -> Array:
    """The boosting baseline's features ``(B, T, F)`` from :func:`history`."""
    hour = np.broadcast_to(np.arange(shape[1])[None, :], shape).astype(float)
    return np.concatenate(
        [
            h["lags"],
            np.stack(
                [h["last"], h["run_mean"], h["age"], h["recent"], h["ewm"], h["slope"], hour],
                axis=-1,
            ),
        ],
        axis=-1,
    )


def _boosted(
    x: Array,
    y: Array,
    fit: npt.NDArray[np.bool_],
    known: npt.NDArray[np.bool_],
    cfg: BaselineConfig,
) -> Array:
    """Gradient-boosted trees on features ``x`` ``(B, T, F)`` fitted on the ``fit`` hours,
    forecasting the ``known`` ones (NaN elsewhere)."""
    booster = lgb.train(
        {
            "objective": "l1",  # the figure compared is the MAE
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_data_in_leaf": 20,
            "seed": cfg.seed,
            "deterministic": True,
            "num_threads": 2,
            "verbosity": -1,
        },
        lgb.Dataset(x[fit], y[fit]),
        num_boost_round=cfg.boosting_rounds,
    )
    out = np.full(y.shape, np.nan)
    out[known] = booster.predict(x[known])
    return out


def boosting_with(
    y: Array,
    mask: npt.NDArray[np.bool_],
    fit_rows: npt.NDArray[np.bool_],
    extra: Array,
    cfg: BaselineConfig = BaselineConfig(),
) -> Array:
    """The ``boosting`` baseline given more to learn from: its own features and ``extra``
    ``(B, T, F)`` (known before each hour; NaN where missing), fitted on the same rows.
    Where it cannot forecast, persistence, as for the baselines."""
    h = history(y, mask, cfg)
    last = h["last"]
    known = ~np.isnan(last)
    x = np.concatenate([_lag_features(h, y.shape), extra], axis=-1)
    f = _boosted(x, y, fit_rows & known & mask, known, cfg)
    out: Array = np.where(np.isnan(f), last, f)
    return out


def forecasts(
    y: Array,
    mask: npt.NDArray[np.bool_],
    fit_rows: npt.NDArray[np.bool_],
    cfg: BaselineConfig = BaselineConfig(),
) -> dict[str, Array]:
    """Each baseline's forecast ``(B, T)`` of the value charted in each hour (NaN only where no
    value was charted before it). ``fit_rows`` ``(B, T)``: the hours the fitted baselines learn
    from (hours with a charted target)."""
    h = history(y, mask, cfg)
    last = h["last"]
    known = ~np.isnan(last)
    fit = fit_rows & known & mask

    def filled(f: Array) -> Array:
        return np.where(np.isnan(f), last, f)

    x_lin = np.stack([h["last"], h["run_mean"], h["age"]], axis=-1)
    a = np.column_stack([np.ones(fit.sum()), x_lin[fit]])
    coef, *_ = np.linalg.lstsq(a, y[fit], rcond=None)
    regression = np.full(y.shape, np.nan)
    regression[known] = np.column_stack([np.ones(known.sum()), x_lin[known]]) @ coef
    boosting = _boosted(_lag_features(h, y.shape), y, fit, known, cfg)
    return {
        "persistence": last,
        "recent_mean": filled(h["recent"]),
        "ewm": filled(h["ewm"]),
        "trend": filled(h["trend"]),
        "regression": filled(regression),
        "boosting": filled(boosting),
    }
