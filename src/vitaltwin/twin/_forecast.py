"""Forecasts from an ensemble: trajectories under an input schedule, bands, event probabilities.

Every member is integrated on the model's grid (the spec's ``dt_s``) under a schedule of inputs
(one row per step, the same for every member of a patient or plan), recording the observables
every ``record_every`` steps. The events the model's spec declares
(:class:`vitaltwin.model.Event`; for the ward model: sustained hypotension, desaturation, high
lactate) are tracked at every step, on the members' noise-free outputs, with the minutes each
event's condition held.

Bands are quantiles over members. ``measurement=True`` adds each observable's measurement error
to the members before taking quantiles: the band a *measured* value should fall in, which is what
the phantom study checks for calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import Array

from vitaltwin.model import TwinSpec, Vars
from vitaltwin.simulate import partitioned_step, split_batch
from vitaltwin.twin._ensemble import Layout, perturb

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@partial(jax.jit, static_argnums=(0, 4))
def _run(
    layout: Layout, z: Array, base: Array, u_sched: Array, record_every: int, key: Array
) -> tuple[Array, Array, Array, Array]:
    """z (B, N, n_aug), base (B, n_p), u_sched (B, S, n_u) -> records (B, N, S/record_every, m),
    events (B, N, E) bool, minutes each event's condition held (B, N, E), final members.

    Process noise (the model error of :mod:`vitaltwin.twin._ensemble`) is added after every step,
    drawn per member and shared by every row of the batch: plans compared from one posterior see
    the same noise (common random numbers)."""
    model = layout.model
    spec = layout.spec
    dt = spec.dt_s
    b, n = z.shape[:2]
    ns = layout.n_states
    ev_obs = jnp.asarray([spec.index(e.observable) for e in spec.events], dtype=int)
    ev_thr = jnp.asarray([e.threshold for e in spec.events])
    ev_below = jnp.asarray([e.below for e in spec.events], dtype=bool)
    ev_min = jnp.asarray([e.sustained_min for e in spec.events])
    n_ev = len(spec.events)

    def signals(zz: Array, uu: Array) -> tuple[Vars, Vars, Vars, Vars]:
        p = layout.params(zz, base[:, None, :])
        xs, ps, us = model.split(zz[..., :ns], p, uu)
        return xs, ps, us, model.signals_named(jnp.zeros(()), xs, ps, us)

    def step(zz: Array, inp: tuple[Array, Array]) -> tuple[Array, Array]:
        u, k = inp
        uu = jnp.broadcast_to(u[:, None, :], (b, n, u.shape[-1]))
        xs, ps, us, s1 = signals(zz, uu)
        # at the start of this step
        y_start = layout.with_discrepancy(zz, spec.observables_of(zz[..., :ns], s1))
        x = model.join_states(partitioned_step(model, jnp.zeros(()), xs, dt, ps, us, s1))
        zz = layout.decay(jnp.concatenate([x, zz[..., ns:]], axis=-1), dt)
        zz = perturb(layout, zz, jax.random.normal(k, (n, layout.n_aug))[None], dt)
        return zz, y_start

    keys = jax.random.split(key, u_sched.shape[1])
    z_end, ys_start = jax.lax.scan(step, z, (jnp.swapaxes(u_sched, 0, 1), keys))
    u_last = jnp.broadcast_to(u_sched[:, -1, None, :], (b, n, u_sched.shape[-1]))
    y_last = layout.with_discrepancy(
        z_end, spec.observables_of(z_end[..., :ns], signals(z_end, u_last)[3])
    )
    ys = jnp.concatenate([ys_start[1:], y_last[None]], axis=0)  # at the end of each step

    def events(
        carry: tuple[Array, Array, Array], y: Array
    ) -> tuple[tuple[Array, Array, Array], None]:
        run, ev, held_min = carry
        v = y[..., ev_obs]
        cond = jnp.where(ev_below, v < ev_thr, v > ev_thr)
        run = jnp.where(cond, run + dt / 60.0, 0.0)
        ev = ev | (cond & (run >= ev_min))
        return (run, ev, held_min + cond * (dt / 60.0)), None

    init = (jnp.zeros((b, n, n_ev)), jnp.zeros((b, n, n_ev), bool), jnp.zeros((b, n, n_ev)))
    (_, ev, held_min), _ = jax.lax.scan(events, init, ys)
    rec = jnp.moveaxis(ys[record_every - 1 :: record_every], 0, 2)
    return rec, ev, held_min, z_end


@dataclass(frozen=True)
class Trajectories:
    """Ensemble trajectories of the observables for a batch (patients or plans)."""

    spec: TwinSpec
    minutes: np.ndarray  # (T,) minutes after the start
    values: np.ndarray  # (B, N, T, m)
    events: np.ndarray  # (B, N, E) bool, in the order of spec.events
    held_min: np.ndarray  # (B, N, E) minutes each event's condition held
    members_end: np.ndarray  # (B, N, n_aug)

    def _event(self, event: str) -> int:
        names = [e.name for e in self.spec.events]
        try:
            return names.index(event)
        except ValueError:
            raise KeyError(f"no event {event!r}; known: {', '.join(names)}") from None

    def probability(self, event: str) -> np.ndarray:
        """Fraction of members in which ``event`` occurs, per batch row."""
        return np.asarray(self.events[..., self._event(event)].mean(axis=1))

    def minutes_held(self, event: str) -> np.ndarray:
        """Minutes ``(B, N)`` during which ``event``'s condition held (e.g. MAP < 65 mmHg)."""
        return np.asarray(self.held_min[..., self._event(event)])

    def quantiles(
        self, q: tuple[float, ...] = QUANTILES, measurement: bool = False, seed: int = 0
    ) -> np.ndarray:
        """(len(q), B, T, m) quantiles over members (with measurement error if asked), within
        each observable's domain: a measurement cannot lie outside it (an SpO2 band stops at
        100 %), so members and measurement errors that would are counted at its edge."""
        v = self.values
        if measurement:
            v = v + np.random.default_rng(seed).standard_normal(v.shape) * self.spec.sd
        out: np.ndarray = np.clip(np.quantile(v, q, axis=1), self.spec.low, self.spec.high)
        return out

    def point(self, row: int = 0) -> pd.DataFrame:
        """The point forecast of one batch row: the ensemble median of every observable (one
        column each, in its unit) by minute after the start."""
        med = np.median(self.values[row], axis=0)  # (T, m)
        return pd.DataFrame(med, index=pd.Index(self.minutes, name="minute"),
                            columns=list(self.spec.names))  # fmt: skip

    def bands(self, row: int = 0, measurement: bool = False) -> pd.DataFrame:
        """A tidy table: minute, observable, quantiles — for one batch row."""
        qs = self.quantiles(measurement=measurement)[:, row]  # (5, T, m)
        frames = []
        for j, name in enumerate(self.spec.names):
            frames.append(
                pd.DataFrame(
                    {
                        "minute": self.minutes,
                        "observable": name,
                        "unit": self.spec.observables[j].unit,
                        **{f"q{int(q * 100):02d}": qs[k, :, j] for k, q in enumerate(QUANTILES)},
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


def run_schedule(
    layout: Layout,
    members: np.ndarray | Array,
    base: np.ndarray | Array,
    schedule: np.ndarray,
    record_every: int = 5,
    seed: int = 0,
) -> Trajectories:
    """Integrate ``members`` (B, N, n_aug) under ``schedule`` (B, S, n_inputs), one model step
    (``layout.dt_s``) per row, with process noise from ``seed``."""
    s = schedule.shape[1]
    if s % record_every:
        raise ValueError(f"schedule of {s} steps is not a multiple of record_every={record_every}")
    # With several devices (GPUs, or CPU cores exposed as devices) the batch is split.
    args = split_batch(jnp.asarray(members), jnp.asarray(base), jnp.asarray(schedule))
    rec, ev, low, z_end = _run(layout, *args, record_every, jax.random.PRNGKey(seed))
    minutes = np.arange(1, s // record_every + 1) * record_every * layout.dt_s / 60.0
    return Trajectories(
        layout.spec, minutes, np.asarray(rec), np.asarray(ev), np.asarray(low), np.asarray(z_end)
    )
