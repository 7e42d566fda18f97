"""Benchmark: the ward-scale ICU model — patient-hours per wall second, and the surrogate's
speed-up over the beat-resolved model.

Each figure is printed beside a baseline measured in the same run: the same ward model (the same
right-hand side, compiled with jax.jit) integrated patient after patient with
``scipy.integrate.solve_ivp`` (RK45, rtol 1e-6, atol 1e-6, max_step 60 s).

Run: ``make bench`` (or ``.venv/bin/python bench/bench_ward_model.py``).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from scipy.integrate import solve_ivp

from _timing import save_figures, table
from vitaltwin.physiology.ward import WARD_DT_S
from vitaltwin.simulate import make_integrator
from vitaltwin.simulate.population import sample_population
from vitaltwin.surrogate.speed import measure_speedup

console = Console()


def main() -> None:
    n = 10_000
    hours = 6
    pop = sample_population(n, seed=2024)
    model = pop.model
    u = model.default_inputs()
    X = pop.states.copy()
    X[:, model.state_index("infl_p")] = 2.0  # every patient infected at t = 0
    U = np.tile(u, (n, 1))
    console.print(
        f"[bold]ward model[/]: {model.n_states} states, {model.n_params} parameters, RK4 at "
        f"dt = {WARD_DT_S:g} s, float64, jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({len(jax.devices())} devices), {os.cpu_count()} cores; {n:,} virtual patients "
        f"(acceptance {pop.acceptance_rate:.0%}), infected at t = 0"
    )
    steps_per_h = round(3600.0 / WARD_DT_S)
    integ = make_integrator(model, WARD_DT_S, steps_per_h, hours, batched=True)
    Xj, Pj, Uj = jnp.asarray(X), jnp.asarray(pop.params), jnp.asarray(U)
    x_end, _ = integ(Xj, Pj, Uj, jnp.asarray(0.0))
    x_end.block_until_ready()
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        integ(Xj, Pj, Uj, jnp.asarray(0.0))[0].block_until_ready()
        best = min(best, time.perf_counter() - t0)
    rate = n * hours / best
    finite = int(np.all(np.isfinite(np.asarray(x_end)), axis=1).sum())

    f = jax.jit(lambda t, x, p: model.rhs(t, x, p, jnp.asarray(u)))
    k = 5
    t0 = time.perf_counter()
    for i in range(k):
        pj = jnp.asarray(pop.params[i])
        f(0.0, jnp.asarray(X[i]), pj).block_until_ready()
        sol = solve_ivp(
            lambda t, x, pj=pj: np.asarray(f(t, x, pj)),
            (0.0, hours * 3600.0),
            X[i],
            method="RK45",
            rtol=1e-6,
            atol=1e-6,
            max_step=60.0,
        )
        assert sol.success, sol.message
    scipy_rate = k * hours / (time.perf_counter() - t0)

    speed = measure_speedup()
    tab = table(
        "Ward-scale model (higher is better)",
        "case",
        "vitaltwin",
        "solve_ivp baseline",
        "ratio",
        "target",
    )
    tab.add_row(
        f"{n:,} patients, patient-hours / wall s",
        f"{rate:,.0f}  ({n:,} x {hours} h in {best:.2f} s)",
        f"{scipy_rate:,.2f}",
        f"{rate / scipy_rate:,.0f}x",
        ">= 10,000",
    )
    tab.add_row(
        "1 patient-hour: beat model / ward model",
        f"{speed['speedup']:,.0f}x  ({speed['beat_s_per_hour']:.2f} s vs "
        f"{speed['ward_s_per_hour'] * 1e3:.2f} ms)",
        "-",
        "-",
        ">= 1,000x",
    )
    console.print(tab)
    console.print(f"patients finite after {hours} h: {finite:,}/{n:,}")
    save_figures(
        "ward-model",
        {
            "population": {
                "patients": n,
                "hours": hours,
                "patient_h_per_wall_s": rate,
                "solve_ivp_patient_h_per_wall_s": scipy_rate,
                "ratio": rate / scipy_rate,
                "finite": finite,
            },
            "surrogate": {
                "beat_model_s_per_patient_h": speed["beat_s_per_hour"],
                "ward_model_s_per_patient_h": speed["ward_s_per_hour"],
                "speedup": speed["speedup"],
            },
        },
        console.print,
    )


if __name__ == "__main__":
    main()
