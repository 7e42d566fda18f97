"""What a twin needs to know about a model, declared next to the model: :class:`TwinSpec`.

The twin (:mod:`vitaltwin.twin`) is generic: an ensemble of any composed :class:`Model`, updated
by a filter. Everything that depends on the model is declared here, by the model's author, once:

* the **observables**: which clinical codes measure which model output, with the observation
  error (instrument and representation) and the model's domain (:class:`Observable`);
* the **estimated parameters** (bounded; estimated in a logit coordinate);
* the **process noise**: the model's error per state, and the random walk of the parameters;
* physiological **limits** members are projected into after an update, and states that cannot
  be negative;
* charted values that set a model **input** rather than being observed (FiO2);
* optional **model-discrepancy** settings for real charts;
* the **events** a forecast reports (a threshold crossed, possibly for a sustained time);
* how a patient's **baseline** (parameters and resting state) is made from demographics;
* optionally, the **what-if** the model offers: treatment plans, outcomes, objective and
  constraints (:class:`~vitaltwin.model.WhatIf`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from vitaltwin.data.schema import METHODS
from vitaltwin.data.vocabulary import code
from vitaltwin.model._component import Model, Vars
from vitaltwin.model._whatif import WhatIf


@dataclass(frozen=True)
class Observable:
    """One measured quantity: the LOINC codes that carry it, the model output (or state) it
    measures, its error SDs (instrument and model representation, combined in quadrature) and
    the model's domain ``[domain_low, domain_high]`` in the vocabulary's unit.

    ``sd_instrument`` is the error of a value whose measurement method is not stated;
    ``sd_by_method`` gives other instrument SDs by method
    (:data:`vitaltwin.data.schema.METHODS`), e.g. an arterial line's pressures beside the
    cuff's."""

    name: str
    output: str
    loinc: tuple[str, ...]
    sd_instrument: float
    sd_model: float
    domain_low: float
    domain_high: float
    sd_by_method: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for c in self.loinc:
            code(c)  # KeyError naming a code the vocabulary does not know
        if not (self.sd_instrument >= 0 and self.sd_model >= 0 and self.sd > 0):
            raise ValueError(f"observable {self.name}: error SDs must be >= 0, not both 0")
        for method, sd in self.sd_by_method:
            if method not in METHODS:
                raise ValueError(
                    f"observable {self.name}: method {method!r} is not one of {METHODS}"
                )
            if not (sd >= 0 and np.hypot(sd, self.sd_model) > 0):
                raise ValueError(
                    f"observable {self.name}: the {method} SD must be >= 0, not 0 with sd_model"
                )
        if not self.domain_low < self.domain_high:
            raise ValueError(f"observable {self.name}: domain_low must be < domain_high")

    def sd_instrument_for(self, method: str | None) -> float:
        """The instrument SD of a value measured by ``method`` (None: not stated)."""
        return dict(self.sd_by_method).get(method or "", self.sd_instrument)

    @property
    def sd(self) -> float:
        return float(np.hypot(self.sd_instrument, self.sd_model))

    @property
    def unit(self) -> str:
        """The canonical UCUM unit (vocabulary) of the observable's codes."""
        return code(self.loinc[0]).unit

    @property
    def low(self) -> float:
        """Lowest value assimilated: the vocabulary's plausible range within the model's domain."""
        return max(self.domain_low, *(code(c).low for c in self.loinc))

    @property
    def high(self) -> float:
        """Highest value assimilated (see :attr:`low`)."""
        return min(self.domain_high, *(code(c).high for c in self.loinc))


@dataclass(frozen=True)
class Event:
    """An event a forecast reports: ``observable`` below (or above) ``threshold`` for at least
    ``sustained_min`` minutes in a row (0: at any time)."""

    name: str
    observable: str
    threshold: float
    below: bool
    sustained_min: float = 0.0


@dataclass(frozen=True)
class ChartedInput:
    """A charted code that sets a model input (clipped to ``[low, high]``) instead of being
    observed, e.g. FiO2."""

    loinc: str
    input: str
    low: float
    high: float


@dataclass(frozen=True)
class InitialUnknown:
    """An unknown of the initial state that personalization fits with the parameters.

    ``kind="softplus"``: the states are set to ``softplus(w)`` (a nonnegative load, such as an
    initial pathogen load); ``kind="log_ratio"``: the states are multiplied by ``exp(w)`` (a
    ratio to the resting value, such as the blood volume). ``w`` has a Gaussian prior
    ``(prior_mean, prior_sd)``."""

    name: str
    states: tuple[str, ...]
    kind: Literal["softplus", "log_ratio"]
    prior_mean: float
    prior_sd: float

    def value(self, w: float) -> float:
        """The fitted quantity for the coordinate ``w`` (the load, or the ratio)."""
        return float(jax.nn.softplus(w)) if self.kind == "softplus" else float(np.exp(w))


Baseline = Callable[[Model, Any], tuple[np.ndarray, np.ndarray]]
"""``(model, patient profile) -> (parameters, resting state)``."""


@dataclass(frozen=True, eq=False)
class TwinSpec:
    """Everything the generic twin needs to run a model (see the module docstring).

    Compiled functions are cached per spec object, so a spec is compared by identity: declare
    one per model, as a module-level constant next to the model."""

    name: str
    build_model: Callable[[], Model]
    baseline: Baseline
    observables: tuple[Observable, ...]
    estimated: tuple[str, ...]
    process_sd_per_sqrt_h: dict[str, float]
    param_sd_per_sqrt_h: float
    dt_s: float
    nonnegative: tuple[str, ...] = ()
    state_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    charted_inputs: tuple[ChartedInput, ...] = ()
    discrepancy: tuple[tuple[str, float], ...] = ()
    """Recommended discrepancy for real patients' charts (observable, stationary SD)."""
    discrepancy_tau_h: float = 48.0
    events: tuple[Event, ...] = ()
    initial_unknowns: tuple[InitialUnknown, ...] = ()
    """Initial-state unknowns personalization fits with the parameters."""
    whatif: WhatIf | None = None
    """Treatment plans, outcomes, objective and constraints of the what-if (None: none)."""

    def __post_init__(self) -> None:
        names = [o.name for o in self.observables]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: an observable is declared twice")
        codes = [c for o in self.observables for c in o.loinc]
        if len(set(codes)) != len(codes):
            raise ValueError(f"{self.name}: a LOINC code is given to two observables")
        for e in self.events:
            self.index(e.observable)
        for n, _ in self.discrepancy:
            self.index(n)
        events = {e.name for e in self.events}
        for o in self.whatif.outcomes if self.whatif else ():
            if o.kind == "end_quantile":
                self.index(o.of)
            elif o.of not in events:
                raise ValueError(f"{self.name}: what-if outcome {o.column} reads unknown event")
        if not self.dt_s > 0:
            raise ValueError(f"{self.name}: dt_s must be > 0")

    @cached_property
    def model(self) -> Model:
        """The model, built once per spec (building another would compile everything again)."""
        m = self.build_model()
        for n in self.estimated:
            m.parameter(n)
        for n in (*self.process_sd_per_sqrt_h, *self.nonnegative, *self.state_limits):
            m.state_index(n)
        provided = {n for c in m.components for n in c.provides}
        for o in self.observables:
            if o.output not in m.state_names and o.output not in provided:
                raise ValueError(f"{self.name}: observable {o.name} reads unknown {o.output!r}")
        for ci in self.charted_inputs:
            m.input_index(ci.input)
        for iu in self.initial_unknowns:
            for n in iu.states:
                m.state_index(n)
        return m

    # -- the observation vector -----------------------------------------------------------------
    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observables)

    @cached_property
    def by_loinc(self) -> dict[str, int]:
        """Position in the observation vector of each LOINC code observed."""
        return {c: i for i, o in enumerate(self.observables) for c in o.loinc}

    @cached_property
    def sd(self) -> np.ndarray:
        return np.array([o.sd for o in self.observables])

    @cached_property
    def low(self) -> np.ndarray:
        return np.array([o.low for o in self.observables])

    @cached_property
    def high(self) -> np.ndarray:
        return np.array([o.high for o in self.observables])

    @cached_property
    def inputs_by_loinc(self) -> dict[str, ChartedInput]:
        return {ci.loinc: ci for ci in self.charted_inputs}

    def index(self, name: str) -> int:
        """Position of an observable (``"MAP"``) in the observation vector."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no observable {name!r}; known: {', '.join(self.names)}") from None

    def observables_of(self, x: Array, signals: Vars) -> Array:
        """The observation vector ``(..., m)`` from states ``(..., n_states)`` and the signals
        already computed for them (outputs that are states are read from ``x``)."""
        m = self.model
        cols = [
            x[..., m.state_index(o.output)] if o.output in m.state_names else signals[o.output]
            for o in self.observables
        ]
        return jnp.stack(cols, axis=-1)

    def observe(self, x: Array, p: Array, u: Array) -> Array:
        """Model-predicted observations ``(..., m)`` for states ``(..., n_states)``."""
        return self.observables_of(x, self.model.signals(0.0, x, p, u))
