"""Ensembles of a model: the augmented state, its propagation and process noise.

The model and everything the twin must know about it come from its declaration, a
:class:`vitaltwin.model.TwinSpec` (the ward model's is :data:`vitaltwin.physiology.WARD_TWIN`).
A member is the model's state vector followed by the estimated parameters in an unbounded
coordinate: ``phi = logit((theta - lower) / (upper - lower))`` within each parameter's
physiological bounds, so an update can never push a parameter out of them, and optionally by a
model-discrepancy state for some observables.

Model discrepancy: a minutes-scale model with a handful of states cannot reproduce everything
that sets a real patient's heart rate or saturation (pain, sedation, arrhythmia, lung disease the
model has no state for). Left out, such a persistent deviation is forced into the states and
parameters, or ignored as if it were white measurement noise; in both cases the one-hour forecast
pulls back to the model and loses to carrying the last value forward. Following bias-aware
filtering (Dee & da Silva 1998 [dee1998]; the discrepancy term of Kennedy & O'Hagan 2001
[kennedy2001]), each listed observable gets an additive discrepancy ``b`` estimated with the
state: an Ornstein-Uhlenbeck process with stationary SD ``sd`` and time constant ``tau``
(``b(t + dt) = b(t) exp(-dt/tau) + sd sqrt(1 - exp(-2 dt/tau)) xi``), so the twin follows a
persistent deviation and forecasts it decaying toward the model over ``tau``.

Between observations every member is integrated with the model (RK4 in equal steps of at most the
spec's step, 60 s for the ward model) under the inputs in force, then perturbed by process noise
whose variance grows with the time elapsed — the model's error (what it leaves out) and the slow
drift of a patient's parameters (a random walk on ``phi``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from vitaltwin.model import Model, TwinSpec
from vitaltwin.physiology import DEFAULT_TWIN
from vitaltwin.simulate import partitioned_step

SUSTAINED_S = 300.0
"""A vital sign gated by the innovation test in every cycle for this long (s), with no value of
it used in between, is taken as a real change: its discrepancy is reopened
(:meth:`Layout.reopen_discrepancy`) and the twin follows it. An artefact is brief (a flush, a
movement, a probe pulled off for a few seconds) or has its own signature
(:mod:`vitaltwin.twin._artefacts`); five minutes of consistent monitor values is a patient."""


@dataclass(frozen=True, eq=False)
class Layout:
    """Where things live in an augmented member, for one model's twin declaration
    (:class:`vitaltwin.model.TwinSpec`) and its noise settings."""

    spec: TwinSpec
    estimated: tuple[str, ...]
    param_sd_per_sqrt_h: float
    process_scale: float = 1.0
    discrepancy: tuple[tuple[str, float], ...] = ()
    """Observables with a discrepancy state, each with its stationary SD (observable units)."""
    discrepancy_tau_h: float = 6.0

    def __post_init__(self) -> None:
        for name, sd in self.discrepancy:
            self.spec.index(name)  # KeyError naming the known observables
            if not sd > 0:
                raise ValueError(f"discrepancy SD of {name} must be > 0, got {sd}")
        if len({name for name, _ in self.discrepancy}) != len(self.discrepancy):
            raise ValueError("an observable is listed twice in discrepancy")
        if not self.discrepancy_tau_h > 0:
            raise ValueError(f"discrepancy_tau_h must be > 0, got {self.discrepancy_tau_h}")

    @property
    def model(self) -> Model:
        return self.spec.model

    @property
    def dt_s(self) -> float:
        """The model's integration step (s)."""
        return self.spec.dt_s

    @property
    def n_states(self) -> int:
        return self.model.n_states

    @property
    def n_estimated(self) -> int:
        return len(self.estimated)

    @property
    def n_discrepancy(self) -> int:
        return len(self.discrepancy)

    @property
    def n_aug(self) -> int:
        return self.model.n_states + self.n_estimated + self.n_discrepancy

    @property
    def discrepancy_start(self) -> int:
        """Position of the first discrepancy state in a member (after states and parameters)."""
        return self.n_states + self.n_estimated

    def phi(self, members: Array) -> Array:
        """The estimated parameters of members ``(..., n_aug)`` in the logit coordinate."""
        return members[..., self.n_states : self.discrepancy_start]

    @property
    def discrepancy_obs(self) -> np.ndarray:
        """Positions in the observation vector of the observables with a discrepancy state."""
        return np.array([self.spec.index(name) for name, _ in self.discrepancy], dtype=int)

    @property
    def discrepancy_sd(self) -> np.ndarray:
        return np.array([sd for _, sd in self.discrepancy])

    def with_discrepancy(self, members: Array, y_model: Array) -> Array:
        """Observables ``(..., m)`` of the model plus each member's discrepancy."""
        if not self.discrepancy:
            return y_model
        b = members[..., self.discrepancy_start :]
        return y_model.at[..., self.discrepancy_obs].add(b)

    def decay(self, members: Array, duration_s: float | Array) -> Array:
        """The discrepancy's deterministic relaxation toward zero over ``duration_s``."""
        if not self.discrepancy:
            return members
        f = jnp.exp(-duration_s / (3600.0 * self.discrepancy_tau_h))
        return members.at[..., self.discrepancy_start :].multiply(f)

    def draw_discrepancy(self, n_members: int, rng: np.random.Generator) -> np.ndarray:
        """Initial discrepancies ``(N, n_discrepancy)`` from their stationary distribution."""
        out: np.ndarray = rng.standard_normal((n_members, self.n_discrepancy)) * self.discrepancy_sd
        return out

    def reopen_discrepancy(
        self, members: np.ndarray, observables: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[str]]:
        """Members ``(N, n_aug)`` with the discrepancy state of each observable in
        ``observables`` (indices; those without one are passed over) drawn afresh: the members'
        mean kept, their spread its stationary SD (centred draws). The twin forgets what it knew
        of that offset, so the next values move it: the response to a deviation that the
        innovation gate held back for :data:`SUSTAINED_S` (a real change, not an artefact).
        Returns the members and the names reopened."""
        out = members.copy()
        names = []
        d_obs = [int(j) for j in self.discrepancy_obs]
        for j in observables:
            if int(j) not in d_obs:
                continue
            k = d_obs.index(int(j))
            col = self.discrepancy_start + k
            e = np.asarray(rng.standard_normal(out.shape[0]))
            e = (e - e.mean()) / max(float(e.std(ddof=1)), 1e-12) * float(self.discrepancy_sd[k])
            out[:, col] = out[:, col].mean() + e
            names.append(self.discrepancy[k][0])
        return out, names

    @property
    def param_idx(self) -> np.ndarray:
        return np.array([self.model.param_index(n) for n in self.estimated])

    @property
    def lower(self) -> np.ndarray:
        return np.array([self.model.parameter(n).lower for n in self.estimated])

    @property
    def upper(self) -> np.ndarray:
        return np.array([self.model.parameter(n).upper for n in self.estimated])

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        q = np.clip((np.asarray(theta) - self.lower) / (self.upper - self.lower), 1e-9, 1 - 1e-9)
        out: np.ndarray = np.log(q / (1.0 - q))
        return out

    def to_theta(self, phi: Array) -> Array:
        lo, hi = jnp.asarray(self.lower), jnp.asarray(self.upper)
        return lo + (hi - lo) * jax.nn.sigmoid(phi)

    def params(self, members: Array, base: Array) -> Array:
        """Full parameter vectors ``(..., n_params)``: ``base`` with the members' estimates."""
        theta = self.to_theta(self.phi(members))
        p = jnp.broadcast_to(base, (*members.shape[:-1], base.shape[-1]))
        return p.at[..., self.param_idx].set(theta)

    def process_sd(self) -> np.ndarray:
        sd = np.zeros(self.n_aug)
        for name, v in self.spec.process_sd_per_sqrt_h.items():
            sd[self.model.state_index(name)] = v * self.process_scale
        sd[self.n_states : self.discrepancy_start] = self.param_sd_per_sqrt_h
        return sd

    def noise_sd(self, duration_s: float | Array) -> Array:
        """SD of the process noise added over ``duration_s``: random walks for states and
        parameters, the exact Ornstein-Uhlenbeck increment for discrepancies."""
        sd = jnp.asarray(self.process_sd()) * jnp.sqrt(duration_s / 3600.0)
        if not self.discrepancy:
            return sd
        ou = jnp.sqrt(1.0 - jnp.exp(-2.0 * duration_s / (3600.0 * self.discrepancy_tau_h)))
        return sd.at[..., self.discrepancy_start :].set(jnp.asarray(self.discrepancy_sd) * ou)

    def nonnegative(self) -> np.ndarray:
        return np.array([self.model.state_index(n) for n in self.spec.nonnegative], dtype=int)


def layout_for(
    spec: TwinSpec | None = None,
    estimated: tuple[str, ...] | None = None,
    param_sd_per_sqrt_h: float | None = None,
    process_scale: float = 1.0,
    discrepancy: tuple[tuple[str, float], ...] = (),
    discrepancy_tau_h: float = 6.0,
) -> Layout:
    """The layout of a model's twin (``spec``; the default model's when None) with its noise
    settings (``None``: the spec's). Compiled functions are cached per layout, and equal
    settings give the same layout object, so twins with the same settings share them."""
    s = DEFAULT_TWIN if spec is None else spec
    return _layout(
        s,
        s.estimated if estimated is None else tuple(estimated),
        float(s.param_sd_per_sqrt_h if param_sd_per_sqrt_h is None else param_sd_per_sqrt_h),
        float(process_scale),
        tuple((str(n), float(sd)) for n, sd in discrepancy),
        float(discrepancy_tau_h),
    )


@lru_cache(maxsize=16)
def _layout(
    spec: TwinSpec,
    estimated: tuple[str, ...],
    param_sd_per_sqrt_h: float,
    process_scale: float,
    discrepancy: tuple[tuple[str, float], ...],
    discrepancy_tau_h: float,
) -> Layout:
    return Layout(
        spec, estimated, param_sd_per_sqrt_h, process_scale, discrepancy, discrepancy_tau_h
    )


@partial(jax.jit, static_argnums=(0,))
def _advance(layout: Layout, z: Array, base: Array, u: Array, n_steps: Array, dt: Array) -> Array:
    model = layout.model
    xs, ps, us = model.split(z[..., : layout.n_states], layout.params(z, base), u)

    def step(_: int, xx: dict[str, Array]) -> dict[str, Array]:
        return partitioned_step(model, jnp.zeros(()), xx, dt, ps, us)

    xs = jax.lax.fori_loop(0, n_steps, step, dict(xs))
    z = jnp.concatenate([model.join_states(xs), z[..., layout.n_states :]], axis=-1)
    return layout.decay(z, n_steps * dt)


def advance(
    layout: Layout,
    members: ArrayLike,
    base: ArrayLike,
    inputs: ArrayLike,
    duration_s: float,
    rng: np.random.Generator | None,
) -> Array:
    """Integrate every member ``duration_s`` ahead under constant inputs, then add process noise.

    Shapes: members ``(B, N, n_aug)``, base ``(B, n_params)``, inputs ``(B, n_inputs)``. With
    ``rng=None`` no noise is added (a forecast of the model alone)."""
    if duration_s < 0:
        raise ValueError(f"cannot integrate backwards ({duration_s} s)")
    members = jnp.asarray(members)
    inputs = jnp.asarray(inputs)
    if duration_s == 0:
        return members
    n_steps = int(np.ceil(duration_s / layout.dt_s))  # equal steps of at most the model step
    b, n = members.shape[:2]
    z = _advance(
        layout,
        members,
        jnp.asarray(base)[:, None, :],
        jnp.broadcast_to(inputs[:, None, :], (b, n, inputs.shape[-1])),
        jnp.asarray(n_steps),
        jnp.asarray(duration_s / n_steps),
    )
    if rng is not None:
        z = perturb(layout, z, jnp.asarray(rng.standard_normal(z.shape)), duration_s)
    out: Array = z
    return out


def perturb(layout: Layout, members: Array, normals: Array, duration_s: float | Array) -> Array:
    """Process noise over ``duration_s``: standard ``normals`` (broadcastable to the members,
    members on the second-to-last axis) scaled by the model error per square root of an hour;
    quantities that cannot be negative are reflected at zero.

    The draws are centred over the members (and rescaled to unit variance): noise widens the
    ensemble without moving its mean, which with 16-64 members would otherwise wander by
    ``sd / sqrt(N)`` each cycle and show up as forecast error (the PhysioNet replay's one-hour
    heart-rate forecast drifted by 1.6 /min on average with uncentred draws, 0.6 without
    noise)."""
    n = normals.shape[-2]
    normals = (normals - normals.mean(axis=-2, keepdims=True)) * jnp.sqrt(n / (n - 1.0))
    z = members + normals * layout.noise_sd(duration_s)
    nonneg = jnp.zeros(layout.n_aug, bool).at[layout.nonnegative()].set(True)
    return jnp.where(nonneg, jnp.abs(z), z)


PHI_LIMIT = 7.0
"""Estimated parameters stay within sigmoid(+-7), i.e. 0.1 % of their bounds' range from each
bound: a linear update in the saturated tail of the sigmoid could otherwise run off."""


@partial(jax.jit, static_argnums=(0,))
def constrain(layout: Layout, members: Array) -> Array:
    """Members projected into the physiological domain after an analysis."""
    z = members.at[..., layout.n_states : layout.discrepancy_start].set(
        jnp.clip(layout.phi(members), -PHI_LIMIT, PHI_LIMIT)
    )
    z = z.at[..., layout.nonnegative()].set(jnp.maximum(z[..., layout.nonnegative()], 0.0))
    for name, (lo, hi) in layout.spec.state_limits.items():
        i = layout.model.state_index(name)
        z = z.at[..., i].set(jnp.clip(z[..., i], lo, hi))
    return z


@partial(jax.jit, static_argnums=(0,))
def predict(layout: Layout, members: Array, base: Array, inputs: Array) -> Array:
    """Predicted observations ``(B, N, m)`` of every member."""
    p = layout.params(members, base[:, None, :])
    u = jnp.broadcast_to(inputs[:, None, :], (*members.shape[:2], inputs.shape[-1]))
    return layout.with_discrepancy(
        members, layout.spec.observe(members[..., : layout.n_states], p, u)
    )


def initial_members(
    layout: Layout,
    x0: np.ndarray,
    base: np.ndarray,
    n_members: int,
    rng: np.random.Generator,
    spread: float = 1.0,
) -> np.ndarray:
    """An initial ensemble ``(N, n_aug)`` around one patient's state and parameters.

    Parameters are drawn from the population prior (log-normal with each parameter's declared
    ``cv``, scaled by ``spread``), states get the process noise of one hour, discrepancies their
    stationary distribution."""
    model = layout.model
    theta = np.array(base)[layout.param_idx]
    cv = np.array([max(model.parameter(n).cv, 0.05) for n in layout.estimated]) * spread
    draws = theta * np.exp(rng.standard_normal((n_members, len(theta))) * cv)
    draws = np.clip(draws, layout.lower + 1e-6, layout.upper - 1e-6)
    x = np.tile(x0, (n_members, 1))
    sd = layout.process_sd()[: layout.n_states] * spread
    x = x + rng.standard_normal(x.shape) * sd
    x[:, layout.nonnegative()] = np.abs(x[:, layout.nonnegative()])
    return np.concatenate(
        [x, layout.to_phi(draws), layout.draw_discrepancy(n_members, rng)], axis=1
    )
