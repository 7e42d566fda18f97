"""Benchmark: simulated seconds per wall second of the beat-resolved model.

Each figure is printed beside a baseline measured in the same run: the same model (the same
right-hand side, compiled with jax.jit) integrated per patient with
``scipy.integrate.solve_ivp`` (RK45, rtol 1e-6, atol 1e-6, max_step 5 ms) — the obvious way
to integrate it without vitaltwin's solver.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_beat_model.py``).
"""

from __future__ import annotations

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from scipy.integrate import solve_ivp

from _timing import best_of, save_figures, table
from vitaltwin.model import sample_parameters
from vitaltwin.physiology import cardiovascular_model
from vitaltwin.physiology.patient import REFERENCE_PATIENT, initial_state, patient_parameters
from vitaltwin.simulate import DEFAULT_DT_S, make_integrator, steady_state

console = Console()


def main() -> None:
    model = cardiovascular_model()
    p_ref = patient_parameters(model, REFERENCE_PATIENT)
    x_ss = steady_state(model, p_ref, initial_state(model, REFERENCE_PATIENT)).x
    u = model.default_inputs()
    dt = DEFAULT_DT_S
    console.print(
        f"[bold]beat-resolved model[/]: {model.n_states} states, {model.n_params} parameters, "
        f"RK4 at dt = {dt * 1e3:g} ms, float64, jax {jax.__version__} on "
        f"{jax.devices()[0].platform} ({len(jax.devices())} devices), {os.cpu_count()} cores, "
        f"{platform.machine()}"
    )

    # --- one patient ----------------------------------------------------------------
    per_second = round(1.0 / dt)  # steps in one simulated second: one record per second
    sim_one = 120.0
    integ = make_integrator(model, dt, per_second, int(sim_one))
    xj, pj, uj = jnp.asarray(x_ss), jnp.asarray(p_ref), jnp.asarray(u)
    integ(xj, pj, uj, jnp.asarray(0.0))[1].block_until_ready()  # compile
    wall_one = best_of(lambda: integ(xj, pj, uj, jnp.asarray(0.0))[1].block_until_ready())
    one_rate = sim_one / wall_one

    f = jax.jit(lambda t, x, p: model.rhs(t, x, p, uj))
    f(0.0, xj, pj).block_until_ready()

    def scipy_one(x0: np.ndarray, p: np.ndarray, duration: float) -> None:
        pjj = jnp.asarray(p)
        sol = solve_ivp(
            lambda t, x: np.asarray(f(t, x, pjj)),
            (0.0, duration),
            x0,
            method="RK45",
            rtol=1e-6,
            atol=1e-6,
            max_step=5e-3,
        )
        assert sol.success, sol.message

    sim_scipy = 10.0
    wall_scipy = best_of(lambda: scipy_one(x_ss, p_ref, sim_scipy), repeats=2)
    scipy_rate = sim_scipy / wall_scipy

    # --- a batch of 1,000 different patients -----------------------------------------
    n = 1000
    P = sample_parameters(model, n, seed=7, base=p_ref, spread=0.5)
    X = np.tile(x_ss, (n, 1))
    U = np.tile(u, (n, 1))
    sim_batch = 10.0
    binteg = make_integrator(model, dt, per_second, int(sim_batch), batched=True)
    Xj, Pj, Uj = jnp.asarray(X), jnp.asarray(P), jnp.asarray(U)
    x_end, _ = binteg(Xj, Pj, Uj, jnp.asarray(0.0))
    x_end.block_until_ready()
    wall_batch = best_of(
        lambda: binteg(Xj, Pj, Uj, jnp.asarray(0.0))[0].block_until_ready(), repeats=2
    )
    n_finite = int(np.all(np.isfinite(np.asarray(x_end)), axis=1).sum())
    batch_rate = n * sim_batch / wall_batch

    # Baseline for the batch: solve_ivp patient after patient (a sample of 5 patients).
    k = 5
    t0 = time.perf_counter()
    for i in range(k):
        scipy_one(X[i], P[i], sim_scipy)
    scipy_batch_rate = k * sim_scipy / (time.perf_counter() - t0)

    tab = table(
        "Simulated patient-seconds per wall second (higher is better)",
        "case",
        "vitaltwin (JAX RK4)",
        "solve_ivp baseline",
        "ratio",
        "target",
    )
    tab.add_row(
        "1 patient",
        f"{one_rate:,.0f}  ({sim_one:g} s in {wall_one:.3f} s)",
        f"{scipy_rate:,.1f}",
        f"{one_rate / scipy_rate:,.0f}x",
        ">= 1,000",
    )
    tab.add_row(
        f"{n} patients",
        f"{batch_rate:,.0f}  ({n} x {sim_batch:g} s in {wall_batch:.2f} s)",
        f"{scipy_batch_rate:,.1f}",
        f"{batch_rate / scipy_batch_rate:,.0f}x",
        ">= 10,000",
    )
    console.print(tab)
    console.print(
        f"state updates per second (batch): {batch_rate / dt * model.n_states:,.3g}; "
        f"patients finite at the end: {n_finite}/{n}"
    )
    save_figures(
        "beat-model",
        {
            "one_patient": {
                "sim_s_per_wall_s": one_rate,
                "solve_ivp_sim_s_per_wall_s": scipy_rate,
                "ratio": one_rate / scipy_rate,
            },
            "batch": {
                "patients": n,
                "patient_s_per_wall_s": batch_rate,
                "solve_ivp_patient_s_per_wall_s": scipy_batch_rate,
                "ratio": batch_rate / scipy_batch_rate,
                "finite": n_finite,
            },
        },
        console.print,
    )


if __name__ == "__main__":
    main()
