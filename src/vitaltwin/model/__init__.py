"""Declaring physiological models once and composing them (see :class:`Model`)."""

from vitaltwin.model._component import Component, Model, Vars
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

__all__ = [
    "Baseline",
    "ChartedInput",
    "Component",
    "Event",
    "InitialUnknown",
    "Input",
    "Model",
    "Observable",
    "Output",
    "Parameter",
    "State",
    "TwinSpec",
    "Vars",
    "sample_parameters",
]
