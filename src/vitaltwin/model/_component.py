"""Components and their composition into one model with a flat, JAX-friendly state vector.

A :class:`Component` is one physiological subsystem (the circulation, the baroreflex, later
oxygenation, inflammation, drugs). It declares its quantities and two pure functions:

* ``signals`` computes algebraic quantities (pressures, flows, effector outputs) from the
  current states, parameters, inputs and the signals of components earlier in the list;
* ``derivatives`` returns the time derivative of each of its own states.

Components talk to each other only through named signals: a component lists the signals it
``requires`` with a neutral value used when no other component provides them. So the
circulation runs alone (baroreflex signals are then zero), and adding the baroreflex changes
nothing in the circulation's code. :class:`Model` composes components, checks that names are
unique, and exposes a right-hand side ``rhs(t, x, p, u) -> dx/dt`` on flat float64 arrays that
``jax.jit``, ``jax.vmap`` and ``jax.grad`` can transform.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from vitaltwin.model._spec import Input, Output, Parameter, State

jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]

Vars = Mapping[str, Array]


class Component(ABC):
    """One physiological subsystem. Subclasses declare class attributes and two pure functions."""

    name: ClassVar[str]
    states: ClassVar[tuple[State, ...]] = ()
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    inputs: ClassVar[tuple[Input, ...]] = ()
    outputs: ClassVar[tuple[Output, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[Mapping[str, float]] = {}
    slow: ClassVar[bool] = False
    """True for components whose states change on a scale of seconds (reflexes, drugs):
    multirate solvers may update them once per step instead of at every stage."""

    def fingerprint(self) -> bytes:
        """Bytes that identify what the component computes beyond its declarations (trained
        weights, tables); part of a model's version. Empty for pure equations."""
        return b""

    def derived(self, p: Vars) -> dict[str, Array]:
        """Quantities that depend on parameters only, computed once per integration call
        rather than at every right-hand-side evaluation (names must not clash)."""
        return {}

    @abstractmethod
    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        """Algebraic signals of this component (every name in ``provides``)."""

    @abstractmethod
    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        """Time derivative of each state of this component, per second."""


class Model:
    """Components composed into one model with flat state, parameter and input vectors.

    Args:
        components: in evaluation order; a component may read the signals of any component
            before it, and states of any component.
        name: a label for reports.
    """

    def __init__(self, components: Sequence[Component], name: str = "model") -> None:
        if not components:
            raise ValueError("a model needs at least one component")
        self.components = tuple(components)
        self.name = name
        self.states = tuple(s for c in self.components for s in c.states)
        self.parameters = tuple(q for c in self.components for q in c.parameters)
        self.inputs = tuple(i for c in self.components for i in c.inputs)
        self.outputs = tuple(o for c in self.components for o in c.outputs)
        for kind, items in (
            ("state", self.states),
            ("parameter", self.parameters),
            ("input", self.inputs),
            ("output", self.outputs),
        ):
            names = [it.name for it in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {kind} names across components: {dup}")
        provided = [n for c in self.components for n in c.provides]
        dup = sorted({n for n in provided if provided.count(n) > 1})
        if dup:
            raise ValueError(f"signals provided by more than one component: {dup}")
        self.state_names = tuple(s.name for s in self.states)
        self.param_names = tuple(q.name for q in self.parameters)
        self.input_names = tuple(i.name for i in self.inputs)
        self._state_index = {n: i for i, n in enumerate(self.state_names)}
        self._param_index = {n: i for i, n in enumerate(self.param_names)}
        self._input_index = {n: i for i, n in enumerate(self.input_names)}
        self._neutral: dict[str, float] = {}
        for c in self.components:
            for sig, value in c.requires.items():
                if sig not in provided:
                    self._neutral[sig] = float(value)

    # ----------------------------------------------------------------- layout
    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_params(self) -> int:
        return len(self.parameters)

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    def _lookup(self, table: Mapping[str, int], kind: str, name: str) -> int:
        try:
            return table[name]
        except KeyError:
            raise KeyError(f"model {self.name!r} has no {kind} {name!r}") from None

    def state_index(self, name: str) -> int:
        return self._lookup(self._state_index, "state", name)

    def param_index(self, name: str) -> int:
        return self._lookup(self._param_index, "parameter", name)

    def input_index(self, name: str) -> int:
        return self._lookup(self._input_index, "input", name)

    def parameter(self, name: str) -> Parameter:
        return self.parameters[self.param_index(name)]

    def default_state(self) -> np.ndarray:
        return np.array([s.initial for s in self.states], dtype=np.float64)

    def default_params(self) -> np.ndarray:
        return np.array([q.default for q in self.parameters], dtype=np.float64)

    def default_inputs(self) -> np.ndarray:
        return np.array([i.default for i in self.inputs], dtype=np.float64)

    def params_from(
        self, values: Mapping[str, float], base: np.ndarray | None = None
    ) -> np.ndarray:
        """A parameter vector from ``base`` (defaults) with ``values`` replaced, bounds checked."""
        p = self.default_params() if base is None else np.array(base, dtype=np.float64)
        for name, value in values.items():
            spec = self.parameter(name)
            if not (spec.lower <= value <= spec.upper):
                raise ValueError(
                    f"parameter {name!r} = {value} outside its physiological bounds "
                    f"[{spec.lower}, {spec.upper}] {spec.unit}"
                )
            p[self.param_index(name)] = value
        return p

    # ------------------------------------------------------------- evaluation
    def split(self, x: Array, p: Array, u: Array) -> tuple[Vars, Vars, Vars]:
        """Flat vectors (last axis) to name -> array mappings; parameters come prepared."""
        xs = {n: x[..., i] for i, n in enumerate(self.state_names)}
        ps = self.prepare({n: p[..., i] for i, n in enumerate(self.param_names)})
        us = {n: u[..., i] for i, n in enumerate(self.input_names)}
        return xs, ps, us

    def prepare(self, ps: Vars) -> dict[str, Array]:
        """Parameters plus every component's derived quantities (see ``Component.derived``)."""
        out = dict(ps)
        for c in self.components:
            extra = c.derived(out)
            clash = set(extra) & set(out)
            if clash:
                raise RuntimeError(f"component {c.name!r} derives existing names {sorted(clash)}")
            out.update(extra)
        return out

    def signals_named(self, t: Array, xs: Vars, ps: Vars, us: Vars) -> dict[str, Array]:
        """All signals from named states and prepared parameters, in component order."""
        s: dict[str, Array] = {k: jnp.asarray(v) for k, v in self._neutral.items()}
        for c in self.components:
            out = c.signals(t, xs, ps, us, s)
            missing = set(c.provides) - set(out)
            if missing:
                raise RuntimeError(f"component {c.name!r} did not provide {sorted(missing)}")
            s.update(out)
        return s

    def signals(self, t: Array | float, x: Array, p: Array, u: Array) -> dict[str, Array]:
        """All algebraic signals (pressures, flows, ...) at one time point."""
        xs, ps, us = self.split(x, p, u)
        return self.signals_named(jnp.asarray(t), xs, ps, us)

    def rhs(self, t: Array | float, x: Array, p: Array, u: Array) -> Array:
        """dx/dt as a flat array, in the order of :attr:`state_names`. Pure; jit/vmap/grad-able."""
        xs, ps, us = self.split(x, p, u)
        d = self.rhs_named(jnp.asarray(t), xs, ps, us)
        return jnp.stack([d[n] for n in self.state_names], axis=-1)

    def rhs_named(self, t: Array, xs: Vars, ps: Vars, us: Vars) -> dict[str, Array]:
        """dx/dt on named scalars (or equally shaped arrays): the form the solvers loop over.

        Keeping states as separate arrays inside a compiled loop avoids a gather and a
        concatenation per right-hand-side evaluation, which dominate at one patient.
        ``ps`` must come from :meth:`prepare` (or :meth:`split`).
        """
        s = self.signals_named(t, xs, ps, us)
        return self.derivatives_given_signals(t, xs, ps, us, s)

    def derivatives_given_signals(
        self, t: Array, xs: Vars, ps: Vars, us: Vars, s: Vars, part: str = "all"
    ) -> dict[str, Array]:
        """Derivatives of the chosen components from already computed signals."""
        comps = self._part(part)
        d: dict[str, Array] = {}
        for c in comps:
            d.update(c.derivatives(t, xs, ps, us, s))
        expected = {st.name for c in comps for st in c.states}
        missing = expected - set(d)
        if missing:
            raise RuntimeError(f"no derivative returned for states {sorted(missing)}")
        return d

    def _part(self, part: str) -> tuple[Component, ...]:
        if part == "all":
            return self.components
        if part == "fast":
            return tuple(c for c in self.components if not c.slow)
        if part == "slow":
            return tuple(c for c in self.components if c.slow)
        raise ValueError(f"part must be 'all', 'fast' or 'slow', not {part!r}")

    @property
    def slow_state_names(self) -> tuple[str, ...]:
        return tuple(st.name for c in self.components if c.slow for st in c.states)

    def join_states(self, xs: Vars) -> Array:
        """Name -> array mapping back to a flat state vector (last axis)."""
        return jnp.stack([xs[n] for n in self.state_names], axis=-1)
