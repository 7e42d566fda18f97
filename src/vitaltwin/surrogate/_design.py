"""Training designs for the haemodynamic surrogate: periodic steady states of the beat model.

A design point is six *drivers* — the quantities through which the ward-scale model (and the
illnesses and drugs it holds) acts on the heart and circulation:

=================  ===========================================================  =============
name               meaning                                                      range
=================  ===========================================================  =============
volume_ratio       total blood volume / the patient's normal blood volume       0.70 - 1.30
r_sys_ratio        systemic resistance / its baseline (vasodilation < 1)         0.30 - 2.50
e_es_ratio         LV and RV end-systolic elastance / baseline (contractility)   0.30 - 2.00
hr0_bpm            intrinsic heart rate before reflexes (fever, catecholamines)  50 - 150
vu_sv_ratio        systemic venous unstressed volume / baseline (venous tone)    0.90 - 1.10
c_sa_ratio         systemic arterial compliance / the reference adult's (age)    0.30 - 1.60
=================  ===========================================================  =============

Each point is run on the beat-resolved model (with its baroreflex and cardiopulmonary reflex)
of the reference adult to its periodic steady state, and the beat indices are averaged over
the last 10 s. Patient size needs no input: the model is scaled self-similarly by blood volume
(``vitaltwin.physiology.patient``), so pressures and heart rate are size-free and flows scale
with the size factor. The design is a scrambled Sobol sequence (Owen 1998 [owen1998]) mapped
linearly (``hr0_bpm``) or logarithmically (the ratios) onto the ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.stats import qmc

from vitaltwin.physiology import cardiovascular_model
from vitaltwin.physiology.hemodynamic_network import DRIVERS, TARGETS
from vitaltwin.physiology.patient import REFERENCE_PATIENT, initial_state, patient_parameters
from vitaltwin.simulate import DEFAULT_DT_S, beat_table, make_integrator, trajectory_signals

SETTLE_S = 150.0
"""Simulated time before the averaging window; reflex time constants are at most ~30 s."""
WINDOW_S = 10.0


def design_points(n: int, seed: int) -> pd.DataFrame:
    """``n`` scrambled-Sobol points over the driver ranges (reproducible by ``seed``)."""
    u = qmc.Sobol(d=len(DRIVERS), scramble=True, seed=seed).random(n)
    cols = {}
    for j, (name, lo, hi, log) in enumerate(DRIVERS):
        cols[name] = (
            np.exp(np.log(lo) + u[:, j] * np.log(hi / lo)) if log else lo + u[:, j] * (hi - lo)
        )
    return pd.DataFrame(cols)


@dataclass(frozen=True)
class DesignResult:
    """Steady-state outputs per design point; ``ok`` is False where a point did not settle."""

    inputs: pd.DataFrame
    outputs: pd.DataFrame
    ok: np.ndarray
    reason: list[str]


def beat_model_steady_states(
    points: pd.DataFrame,
    chunk: int = 256,
    dt: float = DEFAULT_DT_S,
    progress: Callable[[int], None] | None = None,
) -> DesignResult:
    """Run every design point on the beat model to steady state (batched) and average.

    A point is kept when it stayed finite and its window means moved by less than 0.5 %
    between the two halves of the averaging window (a settled orbit); otherwise ``ok`` is
    False with the reason.
    """
    model = cardiovascular_model()
    p_ref = patient_parameters(model, REFERENCE_PATIENT)
    x_ref = initial_state(model, REFERENCE_PATIENT)
    u = model.default_inputs()
    vol_idx = [
        model.state_index(n)
        for n in ("v_lv_ml", "v_sa_ml", "v_sv_ml", "v_rv_ml", "v_pa_ml", "v_pv_ml")
    ]
    per_s = round(1.0 / dt)
    settle = make_integrator(model, dt, per_s, int(SETTLE_S), batched=True)
    window = make_integrator(model, dt, 1, round(WINDOW_S / dt), batched=True)
    ip = {
        n: model.param_index(n)
        for n in (
            "r_sys_mmhg_s_ml",
            "e_es_lv_mmhg_ml",
            "e_es_rv_mmhg_ml",
            "hr0_bpm",
            "vu_sv_ml",
            "c_sa_ml_mmhg",
        )
    }

    outs: list[dict[str, float]] = []
    ok: list[bool] = []
    reason: list[str] = []
    for start in range(0, len(points), chunk):
        part = points.iloc[start : start + chunk]
        n = len(part)
        P = np.tile(p_ref, (n, 1))
        P[:, ip["r_sys_mmhg_s_ml"]] *= part["r_sys_ratio"].to_numpy()
        P[:, ip["e_es_lv_mmhg_ml"]] *= part["e_es_ratio"].to_numpy()
        P[:, ip["e_es_rv_mmhg_ml"]] *= part["e_es_ratio"].to_numpy()
        P[:, ip["hr0_bpm"]] = part["hr0_bpm"].to_numpy()
        P[:, ip["vu_sv_ml"]] *= part["vu_sv_ratio"].to_numpy()
        P[:, ip["c_sa_ml_mmhg"]] *= part["c_sa_ratio"].to_numpy()
        X = np.tile(x_ref, (n, 1))
        X[:, vol_idx] *= part["volume_ratio"].to_numpy()[:, None]
        U = np.tile(u, (n, 1))
        Pj, Uj = jnp.asarray(P), jnp.asarray(U)
        x_mid, _ = settle(jnp.asarray(X), Pj, Uj, jnp.asarray(0.0))
        _, rec = window(x_mid, Pj, Uj, jnp.asarray(SETTLE_S))
        rec_np = np.asarray(rec)
        t = SETTLE_S + dt * np.arange(1, rec_np.shape[1] + 1)
        for i in range(n):
            xi = rec_np[i]
            if not np.all(np.isfinite(xi)):
                outs.append(dict.fromkeys(TARGETS, np.nan))
                ok.append(False)
                reason.append("unstable (non-finite state)")
                continue
            sig = trajectory_signals(model, t, xi, P[i], U[i])
            beats = beat_table(t, {nm: xi[:, k] for k, nm in enumerate(model.state_names)}, sig)
            if len(beats) < 4:
                outs.append(dict.fromkeys(TARGETS, np.nan))
                ok.append(False)
                reason.append(f"only {len(beats)} complete beats in the window")
                continue
            mid = SETTLE_S + WINDOW_S / 2
            first, second = beats[beats.t_s < mid], beats[beats.t_s >= mid]
            means = beats[list(TARGETS)].mean()
            drift = (
                (second[list(TARGETS)].mean() - first[list(TARGETS)].mean()).abs()
                / means.abs().clip(lower=1.0)
            ).max()
            outs.append({k: float(means[k]) for k in TARGETS})
            if not np.isfinite(drift) or drift > 5e-3:
                ok.append(False)
                reason.append(f"not settled (window drift {drift:.2%})")
            else:
                ok.append(True)
                reason.append("")
        if progress is not None:
            progress(n)
    return DesignResult(
        inputs=points.reset_index(drop=True),
        outputs=pd.DataFrame(outs, columns=list(TARGETS)),
        ok=np.array(ok, dtype=bool),
        reason=reason,
    )
