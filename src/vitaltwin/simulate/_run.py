"""Simulating one patient: trajectories, beat tables and the periodic steady state."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import pandas as pd

from vitaltwin.model import Model
from vitaltwin.simulate._beats import beat_table, trajectory_signals
from vitaltwin.simulate._solver import DEFAULT_DT_S, make_integrator


@dataclass
class Trajectory:
    """States recorded on a regular grid, with the parameters and inputs that produced them."""

    model: Model
    t_s: np.ndarray
    x: np.ndarray
    p: np.ndarray
    u: np.ndarray
    _signals: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def state(self, name: str) -> np.ndarray:
        return np.asarray(self.x[:, self.model.state_index(name)])

    def states(self) -> dict[str, np.ndarray]:
        return {n: self.state(n) for n in self.model.state_names}

    def signals(self) -> dict[str, np.ndarray]:
        if self._signals is None:
            self._signals = trajectory_signals(self.model, self.t_s, self.x, self.p, self.u)
        return self._signals

    def beats(self) -> pd.DataFrame:
        return beat_table(self.t_s, self.states(), self.signals())


def simulate(
    model: Model,
    x0: np.ndarray,
    p: np.ndarray,
    u: np.ndarray | None = None,
    duration_s: float = 10.0,
    dt: float = DEFAULT_DT_S,
    record_every: int = 1,
    t0: float = 0.0,
) -> Trajectory:
    """Integrate one patient for ``duration_s`` with constant ``p`` and ``u``.

    The initial point is included in the record. ``duration_s`` is rounded to a whole number
    of record intervals.
    """
    u = model.default_inputs() if u is None else np.asarray(u, dtype=np.float64)
    n_rec = round(duration_s / (dt * record_every))
    if n_rec < 1:
        raise ValueError(f"duration_s={duration_s} is shorter than one record interval")
    integ = make_integrator(model, dt, record_every, n_rec)
    _, rec = integ(jnp.asarray(x0), jnp.asarray(p), jnp.asarray(u), jnp.asarray(t0))
    x = np.vstack([np.asarray(x0)[None, :], np.asarray(rec)])
    t = t0 + dt * record_every * np.arange(n_rec + 1)
    return Trajectory(model, t, x, np.asarray(p), u)


@dataclass(frozen=True)
class SteadyState:
    """A periodic steady state: the last state reached and the last window's beat indices."""

    x: np.ndarray
    converged: bool
    time_s: float
    max_rel_change: float
    beats: pd.DataFrame


SECTION_PHASE = 0.9
"""Where in the cardiac cycle the Poincare section lies: late diastole, away from valve
events (linear interpolation across a valve closing would add an error of ~1e-3)."""


def _section_states(traj: Trajectory) -> np.ndarray:
    """States interpolated where the cardiac phase crosses ``k + SECTION_PHASE``."""
    phase = traj.state("phase_cycles") - SECTION_PHASE
    k = np.floor(phase)
    idx = np.flatnonzero(np.diff(k)) + 1
    frac = (k[idx] - phase[idx - 1]) / (phase[idx] - phase[idx - 1])
    out: np.ndarray = traj.x[idx - 1] + frac[:, None] * (traj.x[idx] - traj.x[idx - 1])
    return out


def steady_state(
    model: Model,
    p: np.ndarray,
    x0: np.ndarray | None = None,
    u: np.ndarray | None = None,
    dt: float = DEFAULT_DT_S,
    tol: float = 1e-5,
    window_s: float = 10.0,
    max_time_s: float = 900.0,
) -> SteadyState:
    """Integrate until the orbit closes: the periodic steady state.

    Convergence is judged on a Poincare section in late diastole: the state at the last
    crossing of the section in a window against the state one beat earlier, interpolated at
    the phase crossing. The largest change, relative to each state's magnitude (at least one
    unit), must be below ``tol``. Beat indices are not used for this: sampling their extrema
    on the step grid jitters by ~1e-4 from beat to beat. The returned state is the last recorded
    state (time origin reset to 0, phase kept).
    """
    if not 0 < window_s <= max_time_s:
        raise ValueError(f"need 0 < window_s <= max_time_s, got {window_s} and {max_time_s}")
    x = model.default_state() if x0 is None else np.asarray(x0, dtype=np.float64)
    keep = np.arange(model.n_states) != model.state_index("phase_cycles")
    elapsed = 0.0
    change = np.inf
    converged = False
    while not converged and elapsed < max_time_s:
        traj = simulate(model, x, p, u, window_s, dt, record_every=1)
        x = traj.x[-1]
        elapsed += window_s
        sec = _section_states(traj)
        if len(sec) >= 2:
            a, b = sec[-2][keep], sec[-1][keep]
            change = float(np.max(np.abs(b - a) / np.maximum(np.abs(b), 1.0)))
            converged = change < tol
    return SteadyState(x, converged, elapsed, change, traj.beats())
