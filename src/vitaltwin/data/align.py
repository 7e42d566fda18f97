"""Putting signals on a common clock: per-device clock offsets, and a regular grid.

* :func:`estimate_clock_offset` finds how far a device's clock runs ahead of a reference by
  maximising the correlation of the same quantity (e.g. heart rate from the monitor and from
  the ECG gateway) resampled on a 1 s grid, over lags within ``max_lag_s``.
  :func:`correct_clock` then shifts that device's observations and records the correction in
  ``quality``.
* :func:`align_to_grid` puts observations onto a regular grid (1 s for vitals): each grid time
  takes the last value at or before it, *with its age in seconds*; before the first value, or
  when the last one is older than ``max_age_s``, the value is missing (NaN) — never invented.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _on_grid(times: pd.Series, values: pd.Series, grid: pd.DatetimeIndex) -> np.ndarray:
    s = pd.Series(values.to_numpy(dtype=float), index=pd.DatetimeIndex(times)).sort_index()
    s = s[~s.index.duplicated(keep="last")]
    out: np.ndarray = (
        s.reindex(s.index.union(grid)).interpolate("time", limit_area="inside")[grid].to_numpy()
    )
    return out


def estimate_clock_offset(
    ref_times: pd.Series,
    ref_values: pd.Series,
    dev_times: pd.Series,
    dev_values: pd.Series,
    max_lag_s: int = 300,
) -> tuple[float, float]:
    """(offset in s, correlation): the device clock reads ``offset`` s later than the
    reference (subtract it to correct). Needs overlapping, varying signals."""
    start = max(ref_times.min(), dev_times.min())
    end = min(ref_times.max(), dev_times.max())
    if pd.isna(start) or pd.isna(end) or (end - start).total_seconds() < 4 * max_lag_s:
        raise ValueError("the two signals overlap too little to estimate a clock offset")
    grid = pd.date_range(start, end, freq="1s")
    r = _on_grid(ref_times, ref_values, grid)
    d = _on_grid(dev_times, dev_values, grid)
    best, best_c = 0, -np.inf
    for lag in range(-max_lag_s, max_lag_s + 1):
        a, b = (r[: len(r) - lag], d[lag:]) if lag >= 0 else (r[-lag:], d[: len(d) + lag])
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 2 * max_lag_s or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            continue
        c = float(np.corrcoef(a[ok], b[ok])[0, 1])
        if c > best_c:
            best, best_c = lag, c
    if not np.isfinite(best_c):
        raise ValueError("signals too flat to estimate a clock offset")
    return float(best), best_c


def correct_clock(obs: pd.DataFrame, device: str, offset_s: float) -> pd.DataFrame:
    """Shift ``device``'s observations back by ``offset_s`` and note it in ``quality``."""
    out = obs.copy()
    sel = out["device"] == device
    out.loc[sel, "effective_time"] = out.loc[sel, "effective_time"] - pd.to_timedelta(
        offset_s, unit="s"
    )
    note = f"clock corrected by {-offset_s:+g} s"
    q = out.loc[sel, "quality"]
    out.loc[sel, "quality"] = np.where(q.isna(), note, q.astype(str) + "; " + note)
    return out


def align_to_grid(
    obs: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    step_s: float = 1.0,
    max_age_s: float | None = None,
) -> pd.DataFrame:
    """One patient's observations (columns effective_time, loinc, value) on a regular grid.

    Returns one row per grid time with, per LOINC code, ``<code>`` (last value at or before
    the time, NaN if none or older than ``max_age_s``) and ``<code>_age_s`` (its age).
    """
    grid = pd.DataFrame({"time": pd.date_range(start, end, freq=pd.to_timedelta(step_s, unit="s"))})
    out = grid.copy()
    for code, g in obs.sort_values("effective_time").groupby("loinc", sort=True):
        g = g.rename(columns={"effective_time": "time"})[["time", "value"]]
        g = g.assign(obs_time=g["time"])
        m = pd.merge_asof(grid, g, on="time", direction="backward")
        age = (m["time"] - m["obs_time"]).dt.total_seconds()
        val = m["value"].where(age.notna())
        if max_age_s is not None:
            val = val.where(age <= max_age_s)
        out[str(code)] = val.to_numpy()
        out[f"{code}_age_s"] = age.to_numpy()
    return out
