"""The model layer: declarations are checked, components compose, JAX transforms work."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vitaltwin.model import Component, Model, Output, Parameter, State, Vars
from vitaltwin.physiology import Baroreceptors, Baroreflex, Circulation, cardiovascular_model
from vitaltwin.simulate import make_integrator


def test_parameter_default_outside_bounds_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        Parameter("r_mmhg_s_ml", "mm[Hg].s/mL", 5.0, 0.1, 2.0, 0.1, "a source", "resistance")


def test_parameter_needs_a_source() -> None:
    with pytest.raises(ValueError, match="source"):
        Parameter("r_mmhg_s_ml", "mm[Hg].s/mL", 1.0, 0.1, 2.0, 0.1, "", "resistance")


def test_names_must_be_identifiers() -> None:
    with pytest.raises(ValueError, match="identifier"):
        State("bad name", "mL", 1.0, "x")


def test_every_parameter_and_output_is_documented() -> None:
    model = cardiovascular_model()
    for q in model.parameters:
        assert q.source and q.unit and q.description
        assert q.lower <= q.default <= q.upper
    codes = {o.name: o.loinc for o in model.outputs}
    assert codes["hr_bpm"] == "8867-4"
    assert codes["map_mmhg"] == "8478-0"
    assert codes["sbp_mmhg"] == "8480-6"
    assert codes["dbp_mmhg"] == "8462-4"


class _Twice(Component):
    name = "twice"
    states: ClassVar[tuple[State, ...]] = (State("v_lv_ml", "mL", 1.0, "clash"),)

    def signals(self, t: jax.Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, jax.Array]:
        return {}

    def derivatives(self, t: jax.Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, jax.Array]:
        return {"v_lv_ml": jnp.asarray(0.0)}


def test_duplicate_names_across_components_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate state"):
        Model([Circulation(), _Twice()])


class _Pacer(Component):
    """A toy component that sets heart period through the baroreflex's signal name."""

    name = "pacer"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("pacer_dt_s", "s", -0.2, -0.5, 0.5, 0.0, "test", "period change"),
    )
    outputs: ClassVar[tuple[Output, ...]] = ()
    provides = ("baro_d_heart_period_s",)

    def signals(self, t: jax.Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, jax.Array]:
        return {"baro_d_heart_period_s": p["pacer_dt_s"]}

    def derivatives(self, t: jax.Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, jax.Array]:
        return {}


def test_components_compose_through_signals_without_editing_each_other() -> None:
    alone = Model([Circulation()])
    paced = Model([_Pacer(), Circulation()])
    x = jnp.asarray(alone.default_state())
    u = jnp.asarray(alone.default_inputs())
    s_alone = alone.signals(0.0, x, jnp.asarray(alone.default_params()), u)
    s_paced = paced.signals(0.0, x, jnp.asarray(paced.default_params()), u)
    assert float(s_alone["heart_period_s"]) == pytest.approx(60.0 / 72.0)
    assert float(s_paced["heart_period_s"]) == pytest.approx(60.0 / 72.0 - 0.2)


@pytest.mark.slow
def test_rhs_is_float64_jittable_vmappable_and_differentiable() -> None:
    model = Model([Baroreflex(), Baroreceptors(), Circulation()])
    x = jnp.asarray(model.default_state())
    p = jnp.asarray(model.default_params())
    u = jnp.asarray(model.default_inputs())
    dx = jax.jit(model.rhs)(0.0, x, p, u)
    assert dx.dtype == jnp.float64 and dx.shape == (model.n_states,)
    batch = jax.vmap(model.rhs, in_axes=(None, 0, 0, None))(
        0.0, jnp.stack([x, x]), jnp.stack([p, p * 1.01]), u
    )
    assert batch.shape == (2, model.n_states)

    # d(mean arterial volume after 2 s)/d(R_sys) by grad, against a central difference.
    i_r = model.param_index("r_sys_mmhg_s_ml")
    i_v = model.state_index("v_sa_ml")
    integ = make_integrator(model, 1e-3, 100, 20)

    def mean_arterial_volume(r: jax.Array) -> jax.Array:
        _, rec = integ(x, p.at[i_r].set(r), u, jnp.asarray(0.0))
        return jnp.mean(rec[:, i_v])

    r0 = p[i_r]
    g = float(jax.grad(mean_arterial_volume)(r0))
    h = 1e-5
    fd = float((mean_arterial_volume(r0 + h) - mean_arterial_volume(r0 - h)) / (2 * h))
    assert g > 0  # higher resistance keeps more blood in the arteries
    assert g == pytest.approx(fd, rel=1e-4)


def test_params_from_checks_bounds() -> None:
    model = cardiovascular_model()
    with pytest.raises(ValueError, match="r_sys_mmhg_s_ml"):
        model.params_from({"r_sys_mmhg_s_ml": 100.0})
    p = model.params_from({"r_sys_mmhg_s_ml": 1.5})
    assert p[model.param_index("r_sys_mmhg_s_ml")] == 1.5
    assert np.all(np.isfinite(p))
