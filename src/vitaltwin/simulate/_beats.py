"""Beat-by-beat haemodynamic indices from a simulated trajectory.

A beat is the interval over which the integer part of the cardiac phase state is constant.
Per beat: SBP and DBP are the maximum and minimum of systemic arterial pressure, MAP its time
average, EDV and ESV the maximum and minimum LV volume, SV = EDV - ESV (no regurgitation in
the model), EF = SV / EDV, HR = 60 / beat duration, CO = SV * HR, CVP and mPAP the beat means
of systemic venous and pulmonary arterial pressure. Only complete beats are reported.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from vitaltwin.model import Model
from vitaltwin.physiology.circulation import VOLUME_STATES

BEAT_COLUMNS = (
    "t_s",
    "hr_bpm",
    "sbp_mmhg",
    "dbp_mmhg",
    "map_mmhg",
    "sv_ml",
    "co_l_min",
    "ef",
    "edv_ml",
    "esv_ml",
    "cvp_mmhg",
    "mpap_mmhg",
    "rvedv_ml",
    "rvesv_ml",
    "blood_volume_ml",
)


def trajectory_signals(
    model: Model, t: np.ndarray, x: np.ndarray, p: np.ndarray, u: np.ndarray
) -> dict[str, np.ndarray]:
    """All model signals along a recorded trajectory ``x`` (n_times, n_states)."""
    sig = _signals_fn(model)(jnp.asarray(t), jnp.asarray(x), jnp.asarray(p), jnp.asarray(u))
    return {k: np.asarray(v) for k, v in sig.items()}


@lru_cache(maxsize=16)
def _signals_fn(model: Model) -> Callable[..., dict[str, jax.Array]]:
    return jax.jit(jax.vmap(model.signals, in_axes=(0, 0, None, None)))


def beat_table(
    t: np.ndarray,
    states: Mapping[str, np.ndarray],
    signals: Mapping[str, np.ndarray],
) -> pd.DataFrame:
    """One row per complete beat, indexed by the time at the end of the beat (``t_s``)."""
    phase = np.asarray(states["phase_cycles"])
    beat = np.floor(phase).astype(np.int64)
    if beat.size < 3:
        return pd.DataFrame(columns=list(BEAT_COLUMNS))
    starts = np.flatnonzero(np.diff(beat)) + 1
    if starts.size < 2:
        return pd.DataFrame(columns=list(BEAT_COLUMNS))
    bounds = list(itertools.pairwise(starts))
    p_sa = np.asarray(signals["p_sa_mmhg"])
    p_sv = np.asarray(signals["p_sv_mmhg"])
    p_pa = np.asarray(signals["p_pa_mmhg"])
    v_lv = np.asarray(states["v_lv_ml"])
    v_rv = np.asarray(states["v_rv_ml"])
    blood = np.sum([np.asarray(states[k]) for k in VOLUME_STATES], axis=0)
    idx = np.array([a for a, _ in bounds])
    end = np.array([b for _, b in bounds])
    # Beat duration from the phase crossings, interpolated between samples.
    t_cross = _crossing_times(t, phase, starts)
    dur = np.diff(t_cross)

    def red(fn: np.ufunc, arr: np.ndarray) -> np.ndarray:
        return np.asarray(fn.reduceat(arr[: end[-1]], idx))

    counts = end - idx
    edv = red(np.maximum, v_lv)
    esv = red(np.minimum, v_lv)
    sv = edv - esv
    hr = 60.0 / dur
    df = pd.DataFrame(
        {
            "t_s": t_cross[1:],
            "hr_bpm": hr,
            "sbp_mmhg": red(np.maximum, p_sa),
            "dbp_mmhg": red(np.minimum, p_sa),
            "map_mmhg": red(np.add, p_sa) / counts,
            "sv_ml": sv,
            "co_l_min": sv * hr / 1000.0,
            "ef": sv / edv,
            "edv_ml": edv,
            "esv_ml": esv,
            "cvp_mmhg": red(np.add, p_sv) / counts,
            "mpap_mmhg": red(np.add, p_pa) / counts,
            "rvedv_ml": red(np.maximum, v_rv),
            "rvesv_ml": red(np.minimum, v_rv),
            "blood_volume_ml": blood[end - 1],
        }
    )
    return df


def _crossing_times(t: np.ndarray, phase: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Times at which the phase crossed the integer that begins each beat (linear interp)."""
    k = np.floor(phase[starts])
    p0, p1 = phase[starts - 1], phase[starts]
    frac = (k - p0) / (p1 - p0)
    return np.asarray(t[starts - 1] + frac * (t[starts] - t[starts - 1]))
