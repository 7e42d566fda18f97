"""Solvers, steady states, beat analysis and scenarios for the physiological models."""

from vitaltwin.simulate._beats import BEAT_COLUMNS, beat_table, trajectory_signals
from vitaltwin.simulate._run import SteadyState, Trajectory, simulate, steady_state
from vitaltwin.simulate._solver import (
    DEFAULT_DT_S,
    batch_mesh,
    make_integrator,
    partitioned_step,
    split_batch,
)

__all__ = [
    "BEAT_COLUMNS",
    "DEFAULT_DT_S",
    "SteadyState",
    "Trajectory",
    "batch_mesh",
    "beat_table",
    "make_integrator",
    "partitioned_step",
    "simulate",
    "split_batch",
    "steady_state",
    "trajectory_signals",
]
