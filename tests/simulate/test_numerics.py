"""Numerical checks: mass conservation, periodic steady state, fixed step vs adaptive solver."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp

from vitaltwin.model import Model
from vitaltwin.physiology import VOLUME_STATES
from vitaltwin.simulate import (
    DEFAULT_DT_S,
    SteadyState,
    beat_table,
    simulate,
    trajectory_signals,
)
from vitaltwin.validation.reference import RESTING_ADULT

METRICS = tuple(r.metric for r in RESTING_ADULT)  # the verification outputs


def _blood_volume(model: Model, x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.sum(x[:, [model.state_index(n) for n in VOLUME_STATES]], axis=1)
    return out


def test_blood_volume_is_conserved_to_1e9(
    model: Model, reference_params: np.ndarray, reference_steady: SteadyState
) -> None:
    # Start away from equilibrium (baroreflex and volumes moving) and integrate 120 s.
    p = model.params_from({"r_sys_mmhg_s_ml": 1.6}, base=reference_params)
    traj = simulate(model, reference_steady.x, p, duration_s=120.0, record_every=10)
    vol = _blood_volume(model, traj.x)
    rel = np.max(np.abs(vol - vol[0])) / vol[0]
    assert rel < 1e-9, rel
    # ... and the state did move: the check is not vacuous.
    assert np.ptp(traj.state("v_sa_ml")) > 10.0


def test_hemorrhage_and_infusion_change_volume_by_their_integral(
    model: Model, reference_params: np.ndarray, reference_steady: SteadyState
) -> None:
    u = model.default_inputs()
    u[model.input_index("hemorrhage_ml_s")] = 2.0
    u[model.input_index("infusion_ml_s")] = 0.5
    traj = simulate(
        model, reference_steady.x, reference_params, u, duration_s=30.0, record_every=100
    )
    vol = _blood_volume(model, traj.x)
    np.testing.assert_allclose(vol - vol[0], -1.5 * (traj.t_s - traj.t_s[0]), atol=1e-6)


def test_periodic_steady_state_is_reached_and_detected(
    model: Model, reference_params: np.ndarray, reference_steady: SteadyState
) -> None:
    assert reference_steady.converged
    assert reference_steady.max_rel_change < 1e-4
    # From the detected state, 20 more seconds leave the beat indices where they are. Single
    # beats jitter (indices come from waveform samples on the 4 ms step grid, and each beat
    # starts at a different offset from that grid); the mean over the first and the last
    # 10 s must agree, which a drifting state would not.
    beats = simulate(model, reference_steady.x, reference_params, duration_s=20.0).beats()
    m = beats[list(METRICS)]
    spread = (m.max() - m.min()) / m.mean()
    assert float(spread.max()) < 5e-3, spread.to_dict()
    early, late = m[beats["t_s"] < 10.0].mean(), m[beats["t_s"] >= 10.0].mean()
    drift = ((late - early) / early).abs()
    assert float(drift.max()) < 1e-3, drift.to_dict()


def test_steady_state_detector_reports_non_convergence(
    model: Model, reference_params: np.ndarray
) -> None:
    from vitaltwin.simulate import steady_state

    ss = steady_state(model, reference_params, tol=1e-12, window_s=5.0, max_time_s=10.0)
    assert not ss.converged
    assert ss.time_s == 10.0


def _adaptive_reference(
    model: Model, x0: np.ndarray, p: np.ndarray, duration_s: float, rec_dt: float
) -> tuple[np.ndarray, np.ndarray]:
    u = jnp.asarray(model.default_inputs())
    pj = jnp.asarray(p)
    f = jax.jit(lambda t, x: model.rhs(t, x, pj, u))
    t_eval = np.arange(0.0, duration_s + 0.5 * rec_dt, rec_dt)
    sol = solve_ivp(
        lambda t, x: np.asarray(f(t, x)),
        (0.0, duration_s),
        x0,
        method="DOP853",
        rtol=1e-10,
        atol=1e-10,
        t_eval=t_eval,
    )
    assert sol.success, sol.message
    return sol.t, sol.y.T


@pytest.mark.parametrize(
    "change",
    [
        {"r_sys_mmhg_s_ml": 1.4},  # a transient, so the comparison covers moving dynamics
        {"hr0_bpm": 120.0, "r_av_mmhg_s_ml": 0.006},  # fast heart, stiff ejection
    ],
)
def test_fixed_step_rk4_agrees_with_adaptive_dop853_within_1_percent(
    model: Model,
    reference_params: np.ndarray,
    reference_steady: SteadyState,
    change: dict[str, float],
) -> None:
    p = model.params_from(change, base=reference_params)
    duration = 12.0
    fixed = simulate(model, reference_steady.x, p, duration_s=duration, record_every=1)
    t_ref, x_ref = _adaptive_reference(model, reference_steady.x, p, duration, DEFAULT_DT_S)
    sig_ref = trajectory_signals(model, t_ref, x_ref, p, model.default_inputs())
    states_ref = {n: x_ref[:, i] for i, n in enumerate(model.state_names)}
    ref = beat_table(t_ref, states_ref, sig_ref)
    got = fixed.beats()
    n = min(len(ref), len(got))
    assert n >= 12
    ref_m, got_m = ref[list(METRICS)].iloc[:n], got[list(METRICS)].iloc[:n]
    rel = ((got_m - ref_m).abs() / ref_m.abs()).max()
    assert isinstance(rel, pd.Series)
    assert float(rel.max()) < 0.01, rel.to_dict()


def test_batched_integrator_matches_one_patient_at_a_time(
    model: Model, reference_params: np.ndarray, reference_steady: SteadyState
) -> None:
    from vitaltwin.model import sample_parameters
    from vitaltwin.simulate import make_integrator

    n = 3  # odd, so a multi-device split needs padding
    P = sample_parameters(model, n, seed=1, base=reference_params, spread=0.5)
    X = np.tile(reference_steady.x, (n, 1))
    U = np.tile(model.default_inputs(), (n, 1))
    batch = make_integrator(model, DEFAULT_DT_S, 250, 4, batched=True)
    one = make_integrator(model, DEFAULT_DT_S, 250, 4)
    xb, rb = batch(jnp.asarray(X), jnp.asarray(P), jnp.asarray(U), jnp.asarray(0.0))
    assert rb.shape == (n, 4, model.n_states)
    for i in range(n):
        _xi, ri = one(jnp.asarray(X[i]), jnp.asarray(P[i]), jnp.asarray(U[i]), jnp.asarray(0.0))
        np.testing.assert_allclose(np.asarray(rb[i]), np.asarray(ri), rtol=1e-10, atol=1e-9)
    # Different patients really differ.
    assert np.ptp(np.asarray(xb)[:, model.state_index("v_sa_ml")]) > 1.0


@pytest.mark.slow
def test_batch_split_across_devices_matches_one_device(tmp_path: Path) -> None:
    """With two (CPU) devices the batch is sharded and padded; results must not change."""
    script = tmp_path / "sharded.py"
    script.write_text(
        textwrap.dedent(
            """
            import jax, jax.numpy as jnp, numpy as np
            from vitaltwin.model import sample_parameters
            from vitaltwin.physiology import cardiovascular_model
            from vitaltwin.simulate import make_integrator
            assert len(jax.devices()) == 2, jax.devices()
            m = cardiovascular_model()
            P = sample_parameters(m, 5, seed=3, spread=0.5)
            X = np.tile(m.default_state(), (5, 1))
            U = np.tile(m.default_inputs(), (5, 1))
            b = make_integrator(m, 2e-3, 250, 2, batched=True)
            one = make_integrator(m, 2e-3, 250, 2)
            _, rb = b(jnp.asarray(X), jnp.asarray(P), jnp.asarray(U), jnp.asarray(0.0))
            for i in range(5):
                _, ri = one(jnp.asarray(X[i]), jnp.asarray(P[i]), jnp.asarray(U[i]),
                            jnp.asarray(0.0))
                np.testing.assert_allclose(np.asarray(rb[i]), np.asarray(ri), rtol=1e-10)
            print("sharded ok")
            """
        )
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded ok" in out.stdout
