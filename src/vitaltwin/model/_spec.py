"""Declarations of the quantities a physiological model is made of.

A model is declared once, as data: its states, parameters, inputs (interventions) and outputs
(observables). The numerical engine reads these declarations to lay out the state and parameter
vectors, to sample virtual patients from the population spread, and to label results with units
and clinical codes (LOINC for observables, UCUM for units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


def _check_name(kind: str, name: str) -> None:
    if not name.isidentifier():
        raise ValueError(f"{kind} name {name!r} must be a valid Python identifier")


@dataclass(frozen=True, slots=True)
class State:
    """A state variable of the model.

    Attributes:
        name: identifier, with its unit in the name where it has one (``v_lv_ml``).
        unit: UCUM unit code (``mL``, ``mm[Hg]``, ``1``).
        initial: default initial value, used before a steady state is found.
        description: what the state is, physically.
    """

    name: str
    unit: str
    initial: float
    description: str

    def __post_init__(self) -> None:
        _check_name("state", self.name)
        if not math.isfinite(self.initial):
            raise ValueError(f"state {self.name!r}: initial value must be finite")


@dataclass(frozen=True, slots=True)
class Parameter:
    """A model parameter with its physiological range and population spread.

    Attributes:
        name: identifier, unit in the name where there is one (``r_sys_mmhg_s_ml``).
        unit: UCUM unit code.
        default: value for the reference adult (see :mod:`vitaltwin.physiology.patient`).
        lower, upper: physiological bounds; values outside them are rejected.
        cv: coefficient of variation of the log-normal population distribution used to sample
            virtual patients (0 means the parameter is not varied between patients).
        source: literature source of the default value and of the equation it enters.
        description: what it means.
    """

    name: str
    unit: str
    default: float
    lower: float
    upper: float
    cv: float
    source: str
    description: str

    def __post_init__(self) -> None:
        _check_name("parameter", self.name)
        if not (self.lower <= self.default <= self.upper):
            raise ValueError(
                f"parameter {self.name!r}: default {self.default} outside "
                f"[{self.lower}, {self.upper}]"
            )
        if self.cv < 0:
            raise ValueError(f"parameter {self.name!r}: cv must be >= 0")
        if not self.source:
            raise ValueError(f"parameter {self.name!r}: a literature source is required")


@dataclass(frozen=True, slots=True)
class Input:
    """An exogenous input (an intervention or an external condition), piecewise constant in time.

    Attributes:
        name: identifier with unit (``infusion_ml_s``).
        unit: UCUM unit code.
        default: value when no action sets it (normally zero: no intervention).
        description: what it does.
    """

    name: str
    unit: str
    default: float
    description: str

    def __post_init__(self) -> None:
        _check_name("input", self.name)


@dataclass(frozen=True, slots=True)
class Output:
    """An observable the model produces, labelled for clinical use.

    Attributes:
        name: identifier with unit (``map_mmhg``).
        unit: UCUM unit code.
        loinc: LOINC code of the matching clinical observation, or ``None`` where none exists.
        kind: ``"waveform"`` for an instantaneous signal, ``"beat"`` for a value per heartbeat,
            ``"trend"`` for a beat-averaged or slow quantity of the ward-scale model.
        description: what it is.
    """

    name: str
    unit: str
    loinc: str | None
    kind: Literal["waveform", "beat", "trend"]
    description: str

    def __post_init__(self) -> None:
        _check_name("output", self.name)
