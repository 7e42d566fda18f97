"""Declaring physiological models once and composing them (see :class:`Model`)."""

from vitaltwin.model._component import Component, Model, Vars
from vitaltwin.model._intervention import (
    InputChange,
    Intervention,
    InterventionContext,
    InterventionError,
    ParameterSetting,
    apply_changes,
)
from vitaltwin.model._population import sample_parameters
from vitaltwin.model._spec import Input, Output, Parameter, State
from vitaltwin.model._twinspec import (
    Baseline,
    ChartedInput,
    Event,
    InitialUnknown,
    Observable,
    TwinSpec,
)
from vitaltwin.model._whatif import (
    Outcome,
    PlanConstraints,
    PlanObjective,
    TreatmentPlan,
    WhatIf,
)

__all__ = [
    "Baseline",
    "ChartedInput",
    "Component",
    "Event",
    "InitialUnknown",
    "Input",
    "InputChange",
    "Intervention",
    "InterventionContext",
    "InterventionError",
    "Model",
    "Observable",
    "Outcome",
    "Output",
    "Parameter",
    "ParameterSetting",
    "PlanConstraints",
    "PlanObjective",
    "State",
    "TreatmentPlan",
    "TwinSpec",
    "Vars",
    "WhatIf",
    "apply_changes",
    "sample_parameters",
]
