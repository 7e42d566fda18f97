"""The patient twin: personalization, state estimation, forecasts, what-if (see README)."""

from vitaltwin.twin._enkf import GATE_SD, Analysis, analyse
from vitaltwin.twin._ensemble import (
    DISCREPANCY_TAU_H,
    ESTIMATED,
    VITAL_SIGN_DISCREPANCY,
    Layout,
    advance,
    initial_members,
    layout_for,
    predict,
)
from vitaltwin.twin._forecast import EVENTS, Trajectories, run_schedule
from vitaltwin.twin._observe import OBSERVABLES, Observable, observe
from vitaltwin.twin._twin import CycleReport, PatientTwin, TwinError, model_version

__all__ = [
    "DISCREPANCY_TAU_H",
    "ESTIMATED",
    "EVENTS",
    "GATE_SD",
    "OBSERVABLES",
    "VITAL_SIGN_DISCREPANCY",
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
    "layout_for",
    "model_version",
    "observe",
    "predict",
    "run_schedule",
]
