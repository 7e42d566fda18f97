"""Speed-up of the ward-scale model (with the surrogate) over the beat-resolved model."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax.numpy as jnp

from vitaltwin.physiology import cardiovascular_model
from vitaltwin.physiology.hemodynamic_network import HemodynamicSurrogate
from vitaltwin.physiology.patient import REFERENCE_PATIENT, initial_state, patient_parameters
from vitaltwin.physiology.ward import WARD_DT_S, ward_baseline, ward_model
from vitaltwin.simulate import DEFAULT_DT_S, make_integrator


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_speedup(surrogate: HemodynamicSurrogate | None = None) -> dict[str, float]:
    """Wall seconds per simulated patient-hour of each fidelity (one patient, compiled).

    The beat model is timed over 120 simulated seconds and scaled to an hour (its cost is
    linear in simulated time); the ward model is timed over a whole hour.
    """
    beat = cardiovascular_model()
    pb = patient_parameters(beat, REFERENCE_PATIENT)
    xb = initial_state(beat, REFERENCE_PATIENT)
    per_s = round(1.0 / DEFAULT_DT_S)
    ib = make_integrator(beat, DEFAULT_DT_S, per_s, 120)
    args_b = (
        jnp.asarray(xb),
        jnp.asarray(pb),
        jnp.asarray(beat.default_inputs()),
        jnp.asarray(0.0),
    )
    ib(*args_b)[1].block_until_ready()
    beat_s = _best(lambda: ib(*args_b)[1].block_until_ready(), 3) * 30.0

    ward = ward_model(surrogate)
    pw, xw = ward_baseline(ward, REFERENCE_PATIENT)
    steps = round(3600.0 / WARD_DT_S)
    iw = make_integrator(ward, WARD_DT_S, 1, steps)
    args_w = (
        jnp.asarray(xw),
        jnp.asarray(pw),
        jnp.asarray(ward.default_inputs()),
        jnp.asarray(0.0),
    )
    iw(*args_w)[1].block_until_ready()
    ward_s = _best(lambda: iw(*args_w)[1].block_until_ready(), 20)
    return {"beat_s_per_hour": beat_s, "ward_s_per_hour": ward_s, "speedup": beat_s / ward_s}
