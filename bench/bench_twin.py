"""Benchmark: the twin — assimilation for 10,000 beds, a what-if comparison, personalization.

Each figure is printed beside a baseline measured in the same run:

(a) one update cycle of new 1 Hz vitals for 10,000 patients x 64 members (one fused, compiled
    call: model step, process noise, prediction, serial EnSRF, projection, run in cache-sized
    blocks of patients) against the same cycle over the whole batch in one piece, and called
    patient by patient (measured on 50 patients, scaled to 10,000);
(b) one what-if comparison, 8 plans x 64 members x 6 h, against running the 8 plans one after
    another;
(c) personalization of one patient from 6 h of 5-min vitals (Gauss-Newton with JAX Jacobians,
    compiled once per process: the first call is timed separately) against the same fit with a
    finite-difference Jacobian.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_twin.py``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from rich.console import Console

from _timing import best_of, save_figures, table
from vitaltwin.physiology import WARD_TWIN, PatientProfile, WardPlan, ward_baseline
from vitaltwin.simulate import make_integrator
from vitaltwin.twin import PatientTwin, compare, cycle, initial_members, layout_for, personalize

OBSERVABLES = WARD_TWIN.observables

console = Console(width=150)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROFILE = PatientProfile(age_years=64, sex="male", weight_kg=82, height_cm=178)


def bench_assimilation(b: int = 10_000, n: int = 64) -> tuple[float, float, float]:
    layout = layout_for(None)
    model = layout.model
    p, x = ward_baseline(model, PROFILE)
    rng = np.random.default_rng(0)
    mem = np.stack([initial_members(layout, x, p, n, rng) for _ in range(8)])
    z = jnp.asarray(mem[np.arange(b) % 8])
    base = jnp.asarray(np.tile(p, (b, 1)))
    u = jnp.asarray(np.tile(model.default_inputs(), (b, 1)))
    y = np.tile(np.array([80.0, 90, 120, 70, 97, 14, 37, 1, 7, 14]), (b, 1))
    y += rng.standard_normal(y.shape)
    mask = np.zeros(y.shape, bool)
    mask[:, :6] = True  # HR, MAP, SBP, DBP, SpO2, RR every second
    key = jax.random.PRNGKey(0)
    cycle(layout, z, base, u, y, mask, key)[0].block_until_ready()
    wall = best_of(lambda: cycle(layout, z, base, u, y, mask, key)[0].block_until_ready())
    # Baseline 1: the same cycle over the whole batch in one piece (no cache blocking).
    cycle(layout, z, base, u, y, mask, key, block=b)[0].block_until_ready()
    whole = best_of(lambda: cycle(layout, z, base, u, y, mask, key, block=b)[0].block_until_ready())
    # Baseline 2: the same compiled cycle, patient by patient (no batching), on 50 patients.
    k = 50
    one = [
        (z[i : i + 1], base[i : i + 1], u[i : i + 1], y[i : i + 1], mask[i : i + 1])
        for i in range(k)
    ]
    cycle(layout, *one[0][:3], one[0][3], one[0][4], key)[0].block_until_ready()

    def unbatched() -> None:
        for zi, bi, ui, yi, mi in one:
            cycle(layout, zi, bi, ui, yi, mi, key)[0].block_until_ready()

    base_wall = best_of(unbatched) * b / k
    return wall, whole, base_wall


def bench_what_if() -> tuple[float, float]:
    twin = PatientTwin("bench", PROFILE, T0, n_members=64, seed=0)
    plans = [
        WardPlan(name=f"plan {i}", fluid_ml=f, ne_ug_kg_min=ne)
        for i, (f, ne) in enumerate(
            [
                (0, None),
                (250, None),
                (500, None),
                (1000, None),
                (0, 0.05),
                (0, 0.1),
                (500, 0.1),
                (0, 0.2),
            ]
        )
    ]
    compare(twin, plans, 6.0)
    for pl in plans:
        compare(twin, [pl], 6.0)
    wall = best_of(lambda: compare(twin, plans, 6.0))
    one_by_one = best_of(lambda: [compare(twin, [pl], 6.0) for pl in plans])
    return wall, one_by_one


def _observations() -> pd.DataFrame:
    layout = layout_for(None)
    model = layout.model
    p, x = ward_baseline(model, PROFILE)
    p[model.param_index("hr0_bpm")] = 88.0
    x[model.state_index("infl_p")] = 0.5
    integ = make_integrator(model, 60.0, 1, 360)
    u = model.default_inputs()
    _, rec = integ(jnp.asarray(x), jnp.asarray(p), jnp.asarray(u), jnp.asarray(0.0))
    y = np.asarray(WARD_TWIN.observe(rec, jnp.asarray(p)[None], jnp.asarray(u)[None]))
    rng = np.random.default_rng(1)
    rows = [
        (T0 + timedelta(minutes=kk + 1), o.loinc[0], y[kk, j] + rng.normal() * o.sd_instrument)
        for kk in range(4, 360, 5)
        for j, o in enumerate(OBSERVABLES[:6])
    ]
    return pd.DataFrame(rows, columns=["effective_time", "loinc", "value"])


def bench_personalization() -> tuple[float, float, float]:
    obs = _observations()
    t0 = time.perf_counter()
    personalize("bench", PROFILE, obs, T0, 6.0, n_members=64)
    cold = time.perf_counter() - t0
    warm = best_of(lambda: personalize("bench", PROFILE, obs, T0, 6.0, n_members=64))
    finite = best_of(
        lambda: personalize(
            "bench", PROFILE, obs, T0, 6.0, n_members=64, jacobian="finite-difference"
        ),
        repeats=1,
    )
    return warm, cold, finite


def main() -> None:
    console.print(
        f"[bold]twin[/]: jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({len(jax.devices())} devices), float64"
    )
    a, a_whole, a_base = bench_assimilation()
    w, w_base = bench_what_if()
    pw, pc, pf = bench_personalization()
    tab = table(
        "Twin (lower is better)", "case", "vitaltwin", "baseline (same run)", "ratio", "target"
    )
    tab.add_row(
        "(a) 1 Hz update cycle, 10,000 patients x 64 members",
        f"{a:.2f} s (blocks of 50 patients)",
        f"{a_whole:.2f} s (same cycle in one piece); {a_base:.2f} s (patient by patient)",
        f"{a_whole / a:.1f}x; {a_base / a:.1f}x faster",
        "< 1 s",
    )
    tab.add_row(
        "(b) what-if, 8 plans x 64 members x 6 h",
        f"{w * 1e3:.0f} ms",
        f"{w_base * 1e3:.0f} ms (plans one by one)",
        f"{w_base / w:.1f}x faster",
        "< 200 ms",
    )
    tab.add_row(
        "(c) personalization, 6 h of 5-min vitals",
        f"{pw:.2f} s warm ({pc:.1f} s with compilation)",
        f"{pf:.2f} s (finite-difference Jacobian)",
        f"{pf / pw:.1f}x faster",
        "< 2 s",
    )
    console.print(tab)
    save_figures(
        "twin",
        {
            "cycle": {
                "patients": 10_000,
                "members": 64,
                "blocked_s": a,
                "one_piece_s": a_whole,
                "patient_by_patient_s": a_base,
                "ratio_one_piece": a_whole / a,
                "ratio_patient_by_patient": a_base / a,
            },
            "what_if": {
                "plans": 8,
                "batched_s": w,
                "one_by_one_s": w_base,
                "ratio": w_base / w,
            },
            "personalization": {
                "warm_s": pw,
                "first_use_s": pc,
                "finite_difference_s": pf,
                "ratio": pf / pw,
            },
        },
        console.print,
    )


if __name__ == "__main__":
    main()
