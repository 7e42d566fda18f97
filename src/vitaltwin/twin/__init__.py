"""The patient twin: personalization, state estimation, forecasts, what-if (see README)."""

from vitaltwin.twin._enkf import GATE_SD, Analysis, analyse
from vitaltwin.twin._ensemble import ESTIMATED, Layout, advance, initial_members, predict
from vitaltwin.twin._forecast import EVENTS, Trajectories, run_schedule
from vitaltwin.twin._observe import OBSERVABLES, Observable, observe
from vitaltwin.twin._twin import CycleReport, PatientTwin, TwinError, model_version

__all__ = [
    "ESTIMATED",
    "EVENTS",
    "GATE_SD",
    "OBSERVABLES",
    "Analysis",
    "CycleReport",
    "Layout",
    "Observable",
    "PatientTwin",
    "Trajectories",
    "TwinError",
    "advance",
    "analyse",
    "initial_members",
    "model_version",
    "observe",
    "predict",
    "run_schedule",
]
