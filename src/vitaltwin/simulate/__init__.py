"""Solvers, steady states, beat analysis and scenarios for the physiological models."""

from vitaltwin.simulate._beats import BEAT_COLUMNS, beat_table, trajectory_signals
from vitaltwin.simulate._run import SteadyState, Trajectory, simulate, steady_state
from vitaltwin.simulate._solver import DEFAULT_DT_S, make_integrator, partitioned_step

__all__ = [
    "BEAT_COLUMNS",
    "DEFAULT_DT_S",
    "SteadyState",
    "Trajectory",
    "beat_table",
    "make_integrator",
    "partitioned_step",
    "simulate",
    "steady_state",
    "trajectory_signals",
]
