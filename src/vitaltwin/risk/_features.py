"""Features known at prediction time, from the hourly grid of :mod:`vitaltwin.risk._cohort`.

Every feature of the row at hour ``t`` uses rows ``<= t`` of the same patient only (the tests
check this by truncating stays). Rows are hours. Per measured variable: the last value (carried
forward), hours since it was measured, how many times it has been measured (in the stay and in
the last 24 h) and the change between its last two measurements; for the eight vital signs also
the mean and SD over the last 6 h and 24 h, the count over 6 h, min and max over 24 h, the change
over 6 h and the deviation from the patient's own running mean; the stay's extremes so far of the
vital signs and of lactate, WBC, creatinine, bilirubin, platelets, BUN and pH; the number of lab
values in the last 24 h. Clinical scores from the last values:

* SIRS criteria (Bone RC et al., Chest 101:1644-1655, 1992): temperature > 38 or < 36 C,
  HR > 90 /min, RR > 20 /min or PaCO2 < 32 mmHg, WBC > 12 or < 4 x10^3/uL.
* qSOFA (Seymour CW et al., JAMA 315:762-774, 2016): RR >= 22, SBP <= 100 (mentation is not in
  the record, so at most 2 of 3 points).
* NEWS2 (Royal College of Physicians, National Early Warning Score 2, 2017, chart 1): respiration,
  SpO2 scale 1, supplemental oxygen (FiO2 > 0.21), SBP, HR, temperature (consciousness not in the
  record).
* SOFA components (Vincent JL et al., Intensive Care Med 22:707-710, 1996, table 1): platelets,
  bilirubin, creatinine, MAP < 70 for the cardiovascular point (no vasopressor doses in the
  record) and respiration from SpO2/FiO2 with the S/F thresholds of Pandharipande PP et al.,
  Crit Care Med 37:1317-1321, 2009 (S/F 512, 357, 214, 89 for P/F 400, 300, 200, 100).
* shock index HR/SBP (Allgower 1967), pulse pressure, BUN/creatinine.

Demographics: age, sex, hours from hospital to ICU admission, hours since ICU admission.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from vitaltwin.risk._cohort import VARIABLE_NAMES, Cohort

VITALS = ("HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2")
WINDOW_H = 6
LONG_WINDOW_H = 24
EXTREME_LABS = ("Lactate", "WBC", "Creatinine", "Bilirubin_total", "Platelets", "BUN", "pH")

FloatArray = npt.NDArray[np.float64]

PROCESS_COLUMNS = ("labs_n24h", "iculos_h", "hosp_adm_h", "hospital_los_h")
PROCESS_SUFFIXES = ("_age_h", "_n", "_n6h", "_n24h")


def process_features(columns: Any) -> list[str]:
    """The process features among ``columns``: how often and how recently each variable was
    measured, hours of stay and since hospital admission — records of a unit's routine (its
    protocols for labs, its charting) more than of the patient, and the first to change at
    another hospital."""
    return [str(c) for c in columns
            if c in PROCESS_COLUMNS or str(c).endswith(PROCESS_SUFFIXES)]  # fmt: skip


def _starts(pid: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
    """Index of the first row of each row's patient (rows grouped by patient)."""
    change = np.concatenate([[True], pid[1:] != pid[:-1]])
    first = np.flatnonzero(change)
    out: npt.NDArray[np.int64] = first[np.cumsum(change) - 1]
    return out


def _ffill(x: FloatArray, start: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """Last observed value at or before each row within its patient, and the row index of it."""
    n = x.size
    idx = np.where(~np.isnan(x), np.arange(n), -1)
    last = np.maximum.accumulate(idx)
    ok = last >= start
    val = np.where(ok, x[np.maximum(last, 0)], np.nan)
    at = np.where(ok, last, np.nan).astype(np.float64)
    return val, at


def _window(c: FloatArray, start: npt.NDArray[np.int64], w: int) -> FloatArray:
    """Sum over the last ``w`` rows (this one included) within the patient, from a cumulative
    sum ``c`` with a leading zero."""
    i = np.arange(c.size - 1)
    lo = np.maximum(i - w + 1, start)
    return c[i + 1] - c[lo]


def _shift_at(x: FloatArray, at: npt.NDArray[np.int64], start: npt.NDArray[np.int64]) -> FloatArray:
    """The measured value before row ``at`` (the last measurement) within the patient."""
    n = x.size
    idx = np.where(~np.isnan(x), np.arange(n), -1)
    prior = np.concatenate([[-1], np.maximum.accumulate(idx)[:-1]])  # last measured before row
    p = prior[at]
    return np.where(p >= start, x[np.maximum(p, 0)], np.nan)


def _window_values(x: FloatArray, start: npt.NDArray[np.int64], w: int) -> FloatArray:
    """``(rows, w)``: the values of the last ``w`` rows (this one included) within the patient,
    NaN outside it or where not measured."""
    pad = np.concatenate([np.full(w - 1, np.nan), x])
    view = np.lib.stride_tricks.sliding_window_view(pad, w)  # row i: rows i-w+1 .. i
    outside = (np.arange(x.size)[:, None] + np.arange(-w + 1, 1)[None, :]) < start[:, None]
    return np.where(outside, np.nan, view)


def _window_stats(x: FloatArray, start: npt.NDArray[np.int64], w: int) -> dict[str, FloatArray]:
    """Count, mean, SD (of at least two values), min and max over the last ``w`` rows."""
    vals = _window_values(x, start, w)
    n = np.sum(~np.isnan(vals), axis=1).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(vals, axis=1)
        sd[n < 2] = np.nan
        return {
            "n": n,
            "mean": np.nanmean(vals, axis=1),
            "sd": sd,
            "min": np.nanmin(vals, axis=1),
            "max": np.nanmax(vals, axis=1),
        }


def raw_features(cohort: Cohort) -> pd.DataFrame:
    """The raw-data feature matrix, one row per row of ``cohort.grid`` (same order)."""
    g = cohort.grid
    pid = g["patient_id"].to_numpy()
    start = _starts(pid)
    row = np.arange(len(g))
    hour = g["hour"].to_numpy(dtype=np.float64)
    cols: dict[str, FloatArray] = {}
    last: dict[str, FloatArray] = {}
    lab_n_w = np.zeros(len(g))
    for v in VARIABLE_NAMES:
        x = g[v].to_numpy(dtype=np.float64)
        measured = ~np.isnan(x)
        val, at = _ffill(x, start)
        last[v] = val
        cnt = np.cumsum(measured)
        before = np.where(start > 0, cnt[np.maximum(start - 1, 0)], 0)
        cn = np.concatenate([[0.0], np.cumsum(measured.astype(np.float64))])
        at_i = np.nan_to_num(at).astype(np.int64)
        cols[v] = val
        cols[f"{v}_age_h"] = np.where(np.isnan(at), np.nan, hour - hour[at_i])
        cols[f"{v}_n"] = (cnt - before).astype(np.float64)
        n_long = _window(cn, start, LONG_WINDOW_H)
        cols[f"{v}_n{LONG_WINDOW_H}h"] = n_long
        # the measured value before the last one (the change between the last two measurements)
        prev_masked = np.where(np.isnan(at), np.nan, _shift_at(x, at_i, start))
        cols[f"{v}_change"] = val - prev_masked
        if v not in VITALS:
            lab_n_w += n_long
            continue
        short = _window_stats(x, start, WINDOW_H)
        long = _window_stats(x, start, LONG_WINDOW_H)
        for w, st in ((WINDOW_H, short), (LONG_WINDOW_H, long)):
            cols[f"{v}_mean{w}h"] = st["mean"]
            cols[f"{v}_sd{w}h"] = st["sd"]
        cols[f"{v}_n{WINDOW_H}h"] = short["n"]
        cols[f"{v}_min{LONG_WINDOW_H}h"] = long["min"]
        cols[f"{v}_max{LONG_WINDOW_H}h"] = long["max"]
        c1 = np.concatenate([[0.0], np.cumsum(np.where(measured, x, 0.0))])
        with np.errstate(invalid="ignore", divide="ignore"):
            all_mean = (c1[row + 1] - c1[start]) / (cn[row + 1] - cn[start])
        prev = np.where(row - WINDOW_H >= start, val[np.maximum(row - WINDOW_H, 0)], np.nan)
        cols[f"{v}_delta{WINDOW_H}h"] = val - prev
        cols[f"{v}_dev"] = val - all_mean
    cols[f"labs_n{LONG_WINDOW_H}h"] = lab_n_w
    extremes = g[[*VITALS, *EXTREME_LABS]].groupby(pid, sort=False)
    for kind, frame in (("max", extremes.cummax()), ("min", extremes.cummin())):
        for v in frame.columns:
            # cummax/cummin skip NaN rows (NaN there): carry the extreme so far forward
            cols[f"{v}_{kind}_stay"] = _ffill(frame[v].to_numpy(dtype=np.float64), start)[0]
    cols.update(_scores(last))
    pat = cohort.patients.reindex(pid)
    cols["age_years"] = np.asarray(pat["age_years"], dtype=np.float64)
    cols["male"] = np.asarray(pat["sex"].map({"male": 1.0, "female": 0.0}), dtype=np.float64)
    cols["hosp_adm_h"] = pat["hosp_adm_h"].to_numpy(dtype=np.float64)
    cols["iculos_h"] = hour + 1.0
    cols["hospital_los_h"] = cols["iculos_h"] - cols["hosp_adm_h"]
    return pd.DataFrame(cols, index=g.index)


def _band(x: FloatArray, edges: list[float], points: list[float], upper: bool = True) -> FloatArray:
    """Points of ``x`` by bands. ``upper``: band ``i`` is ``edges[i-1] < x <= edges[i]``
    (thresholds written "<= a"); otherwise ``edges[i-1] <= x < edges[i]`` ("< a" / ">= a").
    NaN stays NaN."""
    side: Literal["left", "right"] = "left" if upper else "right"
    out = np.asarray(points, dtype=np.float64)[np.searchsorted(edges, np.nan_to_num(x), side=side)]
    return np.where(np.isnan(x), np.nan, out)


def _scores(last: dict[str, FloatArray]) -> dict[str, FloatArray]:
    """Clinical scores from the last values; a missing input scores as normal (0 points)."""
    hr, rr, temp, sbp = last["HR"], last["Resp"], last["Temp"], last["SBP"]
    spo2, fio2, mapp = last["O2Sat"], last["FiO2"], last["MAP"]
    wbc = last["WBC"]
    with np.errstate(invalid="ignore", divide="ignore"):
        sirs = (
            ((temp > 38) | (temp < 36)).astype(np.float64)
            + (hr > 90)
            + ((rr > 20) | (last["PaCO2"] < 32))
            + ((wbc > 12) | (wbc < 4))
        )
        qsofa = (rr >= 22).astype(np.float64) + (sbp <= 100)
        news2 = (
            np.nan_to_num(_band(rr, [8, 11, 20, 24], [3, 1, 0, 2, 3]))
            + np.nan_to_num(_band(spo2, [91, 93, 95], [3, 2, 1, 0]))
            + np.where(fio2 > 0.21, 2.0, 0.0)
            + np.nan_to_num(_band(sbp, [90, 100, 110, 219], [3, 2, 1, 0, 3]))
            + np.nan_to_num(_band(hr, [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3]))
            + np.nan_to_num(_band(temp, [35.0, 36.0, 38.0, 39.0], [3, 1, 0, 1, 2]))
        )
        sf = spo2 / np.where(np.isnan(fio2), 0.21, fio2)
        parts = {
            "sofa_resp": _band(sf, [89, 214, 357, 512], [4, 3, 2, 1, 0], upper=False),
            "sofa_coag": _band(last["Platelets"], [20, 50, 100, 150], [4, 3, 2, 1, 0], upper=False),
            "sofa_liver": _band(last["Bilirubin_total"], [1.2, 2, 6, 12], [0, 1, 2, 3, 4], False),
            "sofa_renal": _band(last["Creatinine"], [1.2, 2, 3.5, 5], [0, 1, 2, 3, 4], False),
            "sofa_cardio": np.where(np.isnan(mapp), np.nan, (mapp < 70).astype(np.float64)),
        }
        sofa = np.sum([np.nan_to_num(a) for a in parts.values()], axis=0)
        return {
            "sirs": sirs.astype(np.float64),
            "qsofa": qsofa.astype(np.float64),
            "news2": news2,
            **parts,
            "sofa_partial": sofa,
            "shock_index": hr / sbp,
            "pulse_pressure": sbp - last["DBP"],
            "bun_creatinine": last["BUN"] / last["Creatinine"],
            "spo2_fio2": sf,
        }
