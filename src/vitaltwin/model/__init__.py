"""Declaring physiological models once and composing them (see :class:`Model`)."""

from vitaltwin.model._component import Component, Model, Vars
from vitaltwin.model._population import sample_parameters
from vitaltwin.model._spec import Input, Output, Parameter, State

__all__ = [
    "Component",
    "Input",
    "Model",
    "Output",
    "Parameter",
    "State",
    "Vars",
    "sample_parameters",
]
