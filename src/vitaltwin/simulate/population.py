"""Virtual patient populations for the ward model: plausible, diverse, reproducible by seed.

Each virtual patient gets demographics and then physiology:

* demographics: age ~ N(62, 16) y clipped to 18-95 and 55 % male (a typical adult ICU cohort,
  e.g. the PhysioNet 2019 Challenge training set: median age ~62 y, 55-56 % male
  [reyna2020]); height ~ N(175.3, 7.5) cm for men and N(161.3, 7.0) cm for women and BMI ~
  N(29, 6) kg/m^2 clipped to 17-50 (US adult anthropometry 2015-2018 [fryar2021]);
* physiology: every ward-model parameter with a declared population spread (``cv``) drawn
  log-normally around the patient's personalized value (``vitaltwin.model.sample_parameters``
  semantics), within its physiological bounds;
* constraint: the patient's resting state must be physiological — MAP 65-110 mmHg, HR
  50-110 /min, cardiac index 2.2-4.5 L/min/m^2, SpO2 >= 92 %, CVP 0-12 mmHg — and the
  haemodynamic drivers inside the surrogate's trained range. Draws that fail are rejected and
  redrawn (the acceptance rate is reported), so no patient is silently altered.

The same seed always gives the same population.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from vitaltwin.model import Model
from vitaltwin.physiology.patient import PatientProfile
from vitaltwin.physiology.ward import WardCirculation, ward_baseline, ward_model

RESTING_LIMITS: dict[str, tuple[float, float]] = {
    "map_mmhg": (65.0, 110.0),
    "hr_bpm": (50.0, 110.0),
    "ci_l_min_m2": (2.2, 4.5),
    "spo2_pct": (92.0, 100.0),
    "cvp_mmhg": (0.0, 12.0),
}
"""Resting outputs a plausible virtual patient must have."""


@dataclass(frozen=True)
class Population:
    """Accepted virtual patients: demographics, parameters, resting states and outputs."""

    model: Model
    profiles: pd.DataFrame
    params: np.ndarray
    states: np.ndarray
    resting: pd.DataFrame
    acceptance_rate: float
    seed: int


def _demographics(rng: np.random.Generator, n: int) -> pd.DataFrame:
    male = rng.random(n) < 0.55
    age = np.clip(rng.normal(62.0, 16.0, n), 18.0, 95.0)
    height = np.where(male, rng.normal(175.3, 7.5, n), rng.normal(161.3, 7.0, n))
    height = np.clip(height, 140.0, 210.0)
    bmi = np.clip(rng.normal(29.0, 6.0, n), 17.0, 50.0)
    weight = np.clip(bmi * (height / 100.0) ** 2, 35.0, 240.0)
    return pd.DataFrame(
        {
            "age_years": age,
            "sex": np.where(male, "male", "female"),
            "weight_kg": weight,
            "height_cm": height,
        }
    )


def sample_population(
    n: int, seed: int, spread: float = 1.0, max_batches: int = 20, model: Model | None = None
) -> Population:
    """``n`` plausible virtual patients for the ward model (see the module docstring)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    model = ward_model() if model is None else model
    comp = next(c for c in model.components if isinstance(c, WardCirculation))
    rng = np.random.default_rng(seed)
    cv = np.array([q.cv for q in model.parameters]) * spread
    sigma = np.sqrt(np.log1p(cv**2))
    lower = np.array([q.lower for q in model.parameters])
    upper = np.array([q.upper for q in model.parameters])
    i_co0, i_map0 = model.param_index("co0_l_min"), model.param_index("map0_mmhg")
    signals = jax.jit(jax.vmap(model.signals, in_axes=(None, 0, 0, None)))
    drivers = jax.jit(
        jax.vmap(lambda x, p, u: comp.drivers(*_named(model, x, p, u)), in_axes=(0, 0, None))
    )
    u = jnp.asarray(model.default_inputs())

    kept_prof: list[pd.DataFrame] = []
    kept_p: list[np.ndarray] = []
    kept_x: list[np.ndarray] = []
    kept_rest: list[pd.DataFrame] = []
    tried = 0
    accepted = 0
    for _ in range(max_batches):
        m = max(2 * (n - accepted), 16)
        demo = _demographics(rng, m)
        base, x0 = zip(
            *(
                ward_baseline(model, PatientProfile.model_validate(r))
                for r in demo.to_dict("records")
            ),
            strict=True,
        )
        B, X = np.array(base), np.array(x0)
        draws = B * np.exp(rng.standard_normal(B.shape) * sigma)
        P = np.clip(np.where(B > 0, draws, B), lower, upper)
        # The resting fluid volumes are the drawn patient's own (haematocrit, interstitium).
        bv0, hct0 = P[:, model.param_index("bv0_ml")], P[:, model.param_index("hct0")]
        X[:, model.state_index("v_plasma_ml")] = bv0 * (1.0 - hct0)
        X[:, model.state_index("v_rbc_ml")] = bv0 * hct0
        X[:, model.state_index("v_isf_ml")] = P[:, model.param_index("v_isf0_ml")]
        # The resting CO and MAP that normalise lactate and urine are the drawn patient's own.
        rest = comp.surrogate(drivers(jnp.asarray(X), jnp.asarray(P), u))
        P[:, i_co0] = np.asarray(rest["co_l_min"]) * P[:, model.param_index("size_factor")]
        P[:, i_map0] = np.asarray(rest["map_mmhg"])
        sig = signals(0.0, jnp.asarray(X), jnp.asarray(P), u)
        bsa = np.sqrt(demo["height_cm"].to_numpy() * demo["weight_kg"].to_numpy() / 3600.0)
        out = pd.DataFrame(
            {
                k: np.asarray(sig[k])
                for k in (
                    "map_mmhg",
                    "hr_bpm",
                    "co_l_min",
                    "spo2_pct",
                    "cvp_mmhg",
                    "surrogate_domain_excess",
                )
            }
        )
        out["ci_l_min_m2"] = out["co_l_min"] / bsa
        ok = out["surrogate_domain_excess"].to_numpy() == 0.0
        for k, (lo, hi) in RESTING_LIMITS.items():
            ok &= out[k].between(lo, hi).to_numpy()
        tried += m
        take = np.flatnonzero(ok)[: n - accepted]
        kept_prof.append(demo.iloc[take])
        kept_p.append(P[take])
        kept_x.append(X[take])
        kept_rest.append(out.iloc[take])
        accepted += take.size
        if accepted >= n:
            break
    if accepted < n:
        raise RuntimeError(
            f"only {accepted} of {n} virtual patients met the resting limits after {tried} draws;"
            " lower the spread"
        )
    return Population(
        model=model,
        profiles=pd.concat(kept_prof, ignore_index=True),
        params=np.vstack(kept_p),
        states=np.vstack(kept_x),
        resting=pd.concat(kept_rest, ignore_index=True),
        acceptance_rate=n / tried,
        seed=seed,
    )


def _named(
    model: Model, x: jax.Array, p: jax.Array, u: jax.Array
) -> tuple[dict[str, jax.Array], dict[str, jax.Array], dict[str, jax.Array]]:
    xs, ps, us = model.split(x, p, u)
    s = model.signals_named(jnp.asarray(0.0), xs, ps, us)
    return dict(xs), dict(ps), s
