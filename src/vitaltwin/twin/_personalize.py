"""Personalization: which parameters the data identify, and fitting them to a patient.

Identifiability follows Brun et al. 2001 [brun2001]. Sensitivities of the observables to each
parameter are scaled by the parameter's prior uncertainty (its population ``cv``) and the
observable's error SD, so ``S[i, j] = cv_j * d y_i / d log theta_j / sd_i``: how many measurement
SDs the prior uncertainty of a parameter moves an observation. ``delta_msqr`` (root mean square
over observables) ranks single parameters; the collinearity index ``gamma = 1 / sqrt(min
eigenvalue(S~'S~))`` of a set (``S~``: columns scaled to unit length) says whether their effects
can be told apart (below 10-15: identifiable). A model's :class:`vitaltwin.model.TwinSpec` lists
the set its analysis supports in ``estimated`` (``tests/twin/test_twin.py`` checks the ward
model's).

Fitting is maximum a posteriori: the model is integrated over the first hours from the
patient's resting state with the estimated parameters and the spec's initial-state unknowns (for
the ward model an initial pathogen load and an initial blood-volume ratio: a patient may arrive
already infected or hypovolaemic); the negative log
posterior (Gaussian measurement errors, population priors) is half a sum of squared
standardised residuals, minimised by a trust-region Gauss-Newton method (scipy ``least_squares``)
with the residuals' Jacobian from JAX (forward mode through the whole integration: seven
unknowns, hundreds of residuals). Uncertainty is the Laplace approximation [mackay1992]: a
Gaussian at the optimum whose covariance is the inverse of the Gauss-Newton Hessian ``J'J``.
The twin's initial ensemble is drawn from it and integrated to the end of the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import Array
from scipy.optimize import least_squares

from vitaltwin.model import TwinSpec
from vitaltwin.physiology import DEFAULT_TWIN, PatientProfile
from vitaltwin.simulate import partitioned_step
from vitaltwin.twin._ensemble import Layout, layout_for
from vitaltwin.twin._twin import PatientTwin, TwinError

IDENTIFIABLE_DELTA = 0.1
"""A parameter whose prior uncertainty moves the observables by less than a tenth of a
measurement SD (root mean square over the ten observables) is not worth estimating."""
IDENTIFIABLE_GAMMA = 10.0
"""Largest collinearity index of an identifiable set (Brun 2001: 10-15)."""


def sensitivity(spec: TwinSpec, profile: PatientProfile) -> pd.DataFrame:
    """Scaled sensitivities ``S`` (observables x parameters with a population spread)."""
    model = spec.model
    base, x = spec.baseline(model, profile)
    names = [q.name for q in model.parameters if q.cv > 0]
    idx = np.array([model.param_index(n) for n in names])
    cv = np.array([model.parameter(n).cv for n in names])
    u = jnp.asarray(model.default_inputs())

    def y_of(log_theta: Array) -> Array:
        p = jnp.asarray(base).at[idx].set(jnp.exp(log_theta))
        return spec.observe(jnp.asarray(x), p, u)

    jac = np.asarray(jax.jacfwd(y_of)(jnp.log(jnp.asarray(base[idx]))))
    s = jac * cv[None, :] / spec.sd[:, None]
    return pd.DataFrame(s, index=list(spec.names), columns=names)


def collinearity(s: pd.DataFrame, names: tuple[str, ...] | list[str]) -> float:
    """Collinearity index of a parameter set (Brun 2001)."""
    sub = s[list(names)].to_numpy()
    sub = sub / np.linalg.norm(sub, axis=0, keepdims=True)
    lam = np.linalg.eigvalsh(sub.T @ sub)
    return float(1.0 / np.sqrt(max(lam.min(), 1e-300)))


def identifiability(
    spec: TwinSpec | None = None, profile: PatientProfile | None = None
) -> pd.DataFrame:
    """Per parameter: ``delta_msqr`` and whether the spec estimates it; most sensitive first."""
    spec = DEFAULT_TWIN if spec is None else spec
    s = sensitivity(spec, PatientProfile() if profile is None else profile)
    delta = np.sqrt((s.to_numpy() ** 2).mean(axis=0))
    out = pd.DataFrame(
        {"delta_msqr": delta, "estimated": [n in spec.estimated for n in s.columns]},
        index=s.columns,
    )
    return out.sort_values("delta_msqr", ascending=False)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Personalization:
    """The fit: MAP estimate, Laplace covariance (in the fitting coordinates) and the twin."""

    theta: pd.Series  # estimated parameters at the MAP
    initial: pd.Series  # the spec's initial-state unknowns at the MAP (e.g. initial_pathogen)
    covariance: np.ndarray
    sd: pd.Series  # posterior SD of each parameter (delta method on the Laplace covariance)
    neg_log_posterior: float
    iterations: int
    twin: PatientTwin


def _prior(layout: Layout, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prior mean and SD in the fitting coordinates (logit parameters, then initial values)."""
    theta = base[layout.param_idx]
    lo, hi = layout.lower, layout.upper
    cv = np.array([max(layout.model.parameter(n).cv, 0.05) for n in layout.estimated])
    # d phi / d log theta = theta (hi - lo) / ((theta - lo)(hi - theta))
    sd_phi = cv * theta * (hi - lo) / ((theta - lo) * (hi - theta))
    unknowns = layout.spec.initial_unknowns
    mean = np.concatenate([layout.to_phi(theta), [iu.prior_mean for iu in unknowns]])
    sd = np.concatenate([sd_phi, [iu.prior_sd for iu in unknowns]])
    return mean, sd


def _initial_state(layout: Layout, x_rest: Array, w: Array) -> Array:
    model = layout.model
    k = len(layout.estimated)
    x = x_rest
    for j, iu in enumerate(layout.spec.initial_unknowns):
        if iu.kind == "softplus":
            load = jax.nn.softplus(w[k + j])
            for n in iu.states:
                x = x.at[model.state_index(n)].set(load)
        else:
            ratio = jnp.exp(w[k + j])
            for n in iu.states:
                x = x.at[model.state_index(n)].multiply(ratio)
    return x


@partial(jax.jit, static_argnums=(0, 5))
def _residuals(
    layout: Layout,
    w: Array,
    data: tuple[Array, Array, Array, Array],
    prior: tuple[Array, Array, Array, Array],
    u: Array,
    n_steps: int,
) -> Array:
    """Standardised residuals: observations ``(value - predicted) / sd``, then the prior's
    ``(w - mean) / sd``; half their sum of squares is the negative log posterior."""
    step_idx, obs_idx, value, sd_obs = data
    x_rest, base, mean, sd = prior
    model = layout.model
    p = base.at[layout.param_idx].set(layout.to_theta(w[: len(layout.estimated)]))
    x0 = _initial_state(layout, x_rest, w)
    xs, ps, us = model.split(x0, p, u)

    def step(x: dict[str, Array], _: None) -> tuple[dict[str, Array], Array]:
        x = partitioned_step(model, jnp.zeros(()), x, layout.dt_s, ps, us)
        return x, layout.spec.observe(model.join_states(x), p, u)

    _, ys = jax.lax.scan(step, dict(xs), None, n_steps)
    pred = ys[step_idx, obs_idx]
    return jnp.concatenate([(value - pred) / sd_obs, (w - mean) / sd])


_jacobian = jax.jit(jax.jacfwd(_residuals, argnums=1), static_argnums=(0, 5))
"""Jacobian of :func:`_residuals` in ``w``, forward mode (a handful of unknowns, many
residuals)."""


def personalize(
    patient_id: str,
    profile: PatientProfile,
    observations: pd.DataFrame,
    start: datetime,
    hours: float = 6.0,
    n_members: int = 64,
    seed: int = 0,
    spec: TwinSpec | None = None,
    jacobian: str = "jax",
    discrepancy: tuple[tuple[str, float], ...] = (),
    discrepancy_tau_h: float = 48.0,
) -> Personalization:
    """Fit the twin to the first ``hours`` after ``start`` (columns ``effective_time``,
    ``loinc``, ``value``) and return it, ready at ``start + hours`` for live assimilation.
    ``jacobian="finite-difference"`` replaces JAX's Jacobian by scipy's two-point differences
    (for comparison). The fit is of the model alone; with ``discrepancy`` (see
    :class:`PatientTwin`) the twin's discrepancy states start from their stationary prior."""
    if jacobian not in ("jax", "finite-difference"):
        raise ValueError(f"jacobian must be 'jax' or 'finite-difference', not {jacobian!r}")
    layout = layout_for(spec)
    spec = layout.spec
    model = layout.model
    base, x_rest = spec.baseline(model, profile)
    dt = spec.dt_s
    n_steps = round(hours * 3600.0 / dt)
    end = start + timedelta(hours=hours)
    df = observations
    t = pd.to_datetime(df["effective_time"])
    if t.dt.tz is None:
        raise TwinError("effective_time must be timezone-aware (UTC)")
    sel = (t >= pd.Timestamp(start)) & (t < pd.Timestamp(end))
    step = ((t[sel] - pd.Timestamp(start)).dt.total_seconds() // dt).astype(int)
    obs_j = df.loc[sel, "loinc"].map(spec.by_loinc)
    vals = df.loc[sel, "value"].astype(float)
    ok = obs_j.notna() & vals.between(
        spec.low[obs_j.fillna(0).astype(int)], spec.high[obs_j.fillna(0).astype(int)]
    )
    # Each value is compared with the state at the end of its minute.
    step_idx = np.minimum(step[ok].to_numpy(), n_steps - 1)
    obs_idx = obs_j[ok].astype(int).to_numpy()
    mean, sd = _prior(layout, base)
    data = (
        jnp.asarray(step_idx),
        jnp.asarray(obs_idx),
        jnp.asarray(vals[ok].to_numpy()),
        jnp.asarray(spec.sd[obs_idx]),
    )
    prior = (jnp.asarray(x_rest), jnp.asarray(base), jnp.asarray(mean), jnp.asarray(sd))
    u = jnp.asarray(model.default_inputs())

    def fun(w: np.ndarray) -> np.ndarray:
        return np.asarray(_residuals(layout, jnp.asarray(w), data, prior, u, n_steps))

    def jac(w: np.ndarray) -> np.ndarray:
        return np.asarray(_jacobian(layout, jnp.asarray(w), data, prior, u, n_steps))

    res = least_squares(
        fun,
        mean,
        jac=jac if jacobian == "jax" else "2-point",
        method="trf",
        x_scale="jac",
        max_nfev=50,
    )
    w_map = res.x
    # Gauss-Newton Hessian of the negative log posterior at the optimum.
    hess = res.jac.T @ res.jac
    lam, vec = np.linalg.eigh(hess)
    cov = (vec / np.maximum(lam, 1e-12)) @ vec.T
    k = len(layout.estimated)
    theta_map = np.asarray(layout.to_theta(jnp.asarray(w_map[:k])))
    lo, hi = layout.lower, layout.upper
    dtheta = (theta_map - lo) * (hi - theta_map) / (hi - lo)
    sd_theta = dtheta * np.sqrt(np.diag(cov)[:k])

    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(w_map, cov, size=n_members)
    x0 = np.stack(
        [np.asarray(_initial_state(layout, jnp.asarray(x_rest), jnp.asarray(d))) for d in draws]
    )
    twin_layout = layout_for(spec, discrepancy=discrepancy, discrepancy_tau_h=discrepancy_tau_h)
    b = twin_layout.draw_discrepancy(n_members, rng)
    members = np.concatenate([x0, draws[:, :k], b], axis=1)
    twin = PatientTwin(
        patient_id,
        profile,
        start,
        n_members=n_members,
        seed=seed,
        members=members,
        spec=spec,
        discrepancy=discrepancy,
        discrepancy_tau_h=discrepancy_tau_h,
    )
    twin.advance_to(end)
    return Personalization(
        theta=pd.Series(theta_map, index=list(layout.estimated)),
        initial=pd.Series(
            [iu.value(float(w)) for iu, w in zip(spec.initial_unknowns, w_map[k:], strict=True)],
            index=[iu.name for iu in spec.initial_unknowns],
            dtype=float,
        ),
        covariance=cov,
        sd=pd.Series(sd_theta, index=list(layout.estimated)),
        neg_log_posterior=float(0.5 * res.fun @ res.fun),
        iterations=int(res.nfev),
        twin=twin,
    )
