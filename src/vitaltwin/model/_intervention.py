"""Interventions as data: each one says which model inputs it changes, when, and by how much.

One vocabulary serves scenarios (:mod:`vitaltwin.simulate.scenario`) and the twin's what-if
(:mod:`vitaltwin.twin`): an intervention is a pydantic model (JSON in, validated) whose
:meth:`Intervention.input_changes` returns :class:`InputChange` intervals, and whose
:meth:`Intervention.parameter_change` returns a parameter change, if it makes one. Runners apply
the changes without knowing the intervention's type; a new intervention is one class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from vitaltwin.model._component import Model


@dataclass(frozen=True)
class InputChange:
    """An input changed over ``[start_s, stop_s)`` (``stop_s=None``: to the end of the run):
    ``mode="add"`` adds ``value`` (rates of overlapping interventions add up), ``"set"``
    replaces the input's value."""

    start_s: float
    stop_s: float | None
    input: str
    value: float
    mode: Literal["add", "set"]


@dataclass(frozen=True)
class InterventionContext:
    """What an intervention may need to know to turn itself into inputs."""

    end_s: float
    """The end of the run (repeated doses stop there)."""
    blood_volume_ml: float
    """The patient's normal blood volume (a haemorrhage may be given as a fraction of it)."""


class InterventionError(ValueError):
    """An intervention that does not fit the model (an unknown parameter, say)."""


class ParameterSetting(BaseModel):
    """A parameter set to ``value``, or multiplied by ``factor`` (exactly one is given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameter: str
    value: float | None = None
    factor: float | None = None

    def apply(self, model: Model, p: np.ndarray) -> np.ndarray:
        """Parameters ``p`` with this change made."""
        if self.parameter not in model.param_names:
            raise InterventionError(f"unknown parameter {self.parameter!r}")
        i = model.param_index(self.parameter)
        new = self.value if self.value is not None else p[i] * float(self.factor or 1.0)
        return model.params_from({self.parameter: float(new)}, base=p)


class Intervention(BaseModel):
    """Base of every intervention: a ``type`` tag (the JSON discriminator) and a start time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float
    needs_inputs: ClassVar[tuple[str, ...]] = ()
    """Model inputs the intervention acts on (a model without them cannot take it)."""

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        """The inputs this intervention changes, and when."""
        return []

    def parameter_change(self) -> ParameterSetting | None:
        """A parameter change at ``at_s``, if the intervention makes one."""
        return None

    def describe(self, ctx: InterventionContext) -> str:
        """One line for event logs."""
        return type(self).__name__


def apply_changes(
    inputs: np.ndarray, names: tuple[str, ...], changes: list[InputChange], step_s: float
) -> np.ndarray:
    """Inputs per step ``(steps, n_inputs)`` (a copy of ``inputs``) with ``changes`` applied;
    change times are rounded to the step grid. ``names``: the model's input names."""
    u = np.array(inputs, dtype=np.float64, copy=True)
    n = u.shape[0]
    for ch in changes:
        lo = min(max(round(ch.start_s / step_s), 0), n)
        hi = n if ch.stop_s is None else min(max(round(ch.stop_s / step_s), 0), n)
        try:
            j = names.index(ch.input)
        except ValueError:
            raise KeyError(f"the model has no input {ch.input!r}") from None
        if ch.mode == "add":
            u[lo:hi, j] += ch.value
        else:
            u[lo:hi, j] = ch.value
    return u
