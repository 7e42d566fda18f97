"""The twin runs any model with a TwinSpec: a two-state model declared only in this test."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pytest
from jax import Array

from vitaltwin.model import (
    ChartedInput,
    Component,
    Event,
    Input,
    InputChange,
    Intervention,
    InterventionContext,
    Model,
    Observable,
    Outcome,
    Output,
    Parameter,
    State,
    TwinSpec,
    Vars,
    WhatIf,
)
from vitaltwin.physiology import PatientProfile
from vitaltwin.twin import PatientTwin, TwinError, compare, optimize

T0 = datetime(2026, 5, 1, 6, tzinfo=UTC)
SRC = "test model (no physiology: a set point and a relaxation)"


class Fever(Component):
    """Temperature relaxing toward a set point raised by a pyrogen that decays; an antipyretic
    input lowers the set point."""

    name = "fever"
    states: ClassVar[tuple[State, ...]] = (
        State("temp_c", "Cel", 37.0, "core temperature"),
        State("pyrogen", "1", 0.0, "pyrogen load"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("set_c", "Cel", 37.0, 35.0, 39.0, 0.01, SRC, "afebrile set point"),
        Parameter("gain_c", "Cel", 2.0, 0.5, 4.0, 0.2, SRC, "fever per unit pyrogen"),
        Parameter("tau_h", "h", 1.0, 0.2, 4.0, 0.2, SRC, "time constant"),
    )
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("antipyretic_c", "Cel", 0.0, "set-point reduction by a drug"),
    )
    outputs: ClassVar[tuple[Output, ...]] = (Output("temp_c", "Cel", "8310-5", "trend", "temp"),)
    provides = ("temp_c",)

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        return {"temp_c": x["temp_c"]}

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        target = p["set_c"] + p["gain_c"] * x["pyrogen"] - u["antipyretic_c"]
        return {
            "temp_c": (target - x["temp_c"]) / (p["tau_h"] * 3600.0),
            "pyrogen": -x["pyrogen"] / (6.0 * 3600.0),
        }


def fever_model() -> Model:
    return Model([Fever()], name="test-fever")


def baseline(model: Model, profile: PatientProfile) -> tuple[np.ndarray, np.ndarray]:
    return model.default_params(), model.default_state()


class Antipyretic(Intervention):
    """Lower the set point by ``reduction_c`` from ``at_s``."""

    type: Literal["antipyretic"] = "antipyretic"
    reduction_c: float

    def input_changes(self, ctx: InterventionContext) -> list[InputChange]:
        return [InputChange(self.at_s, None, "antipyretic_c", self.reduction_c, "set")]


@dataclass(frozen=True)
class FeverPlan:
    name: str
    reduction_c: float = 0.0

    def describe(self) -> str:
        return f"antipyretic {self.reduction_c:g} C" if self.reduction_c else "nothing"

    def interventions(self) -> list[Intervention]:
        return [Antipyretic(at_s=0.0, reduction_c=self.reduction_c)] if self.reduction_c else []

    def treatment(self, inputs: Mapping[str, float]) -> dict[str, float]:
        return {"drug_c": self.reduction_c}


@dataclass(frozen=True)
class MaxDrug:
    max_c: float = 2.0

    def violations(self, plan: FeverPlan, profile: Any) -> list[str]:
        return [f"more than {self.max_c:g} C"] if plan.reduction_c > self.max_c else []


@dataclass(frozen=True)
class FeverCost:
    def weights(self) -> dict[str, float]:
        return {"fever_min_mean": 1.0, "drug_c": 10.0}  # a degree of drug costs 10 febrile min


FEVER_WHATIF = WhatIf(
    outcomes=(
        Outcome("p_fever", "probability", "fever", label="fever"),
        Outcome("fever_min_mean", "mean_minutes", "fever"),
        Outcome("temp_end_median", "end_quantile", "Temp"),
    ),
    objective=FeverCost(),
    constraints=MaxDrug(),
    candidates=lambda: [FeverPlan(n, float(n)) for n in ("1", "2", "3")] + [FeverPlan("none")],
    summary=lambda r: f"P(fever) {r['p_fever']:.0%}, {r['temp_end_median']:.1f} C at the end",
)


FEVER_TWIN = TwinSpec(
    name="test-fever",
    build_model=fever_model,
    baseline=baseline,
    observables=(Observable("Temp", "temp_c", ("8310-5",), 0.1, 0.1, 30.0, 43.0),),
    estimated=("set_c",),
    process_sd_per_sqrt_h={"temp_c": 0.05, "pyrogen": 0.02},
    param_sd_per_sqrt_h=0.05,
    dt_s=300.0,
    nonnegative=("pyrogen",),
    state_limits={"temp_c": (30.0, 44.0)},
    charted_inputs=(ChartedInput("8302-2", "antipyretic_c", 0.0, 2.0),),  # any code will do
    events=(Event("fever", "Temp", 38.0, below=False, sustained_min=30.0),),
    whatif=FEVER_WHATIF,
)


def observations(set_c: float, hours: float) -> pd.DataFrame:
    """Temperatures every 10 min of a patient whose true set point is ``set_c`` (at rest)."""
    rng = np.random.default_rng(1)
    times = [T0 + timedelta(minutes=10 * (k + 1)) for k in range(int(hours * 6))]
    values = set_c + rng.normal(0.0, 0.1, len(times))
    return pd.DataFrame({"effective_time": times, "loinc": "8310-5", "value": values})


def test_a_twin_of_a_model_declared_here_learns_its_parameter(tmp_path: Path) -> None:
    twin = PatientTwin("f1", PatientProfile(), T0, n_members=32, seed=2, spec=FEVER_TWIN)
    assert twin.model.name == "test-fever" and twin.layout.n_aug == 3
    prior = float(twin.parameters()["mean"].to_numpy()[0])
    reports = twin.assimilate(observations(37.8, hours=6.0))
    assert len(reports) == 36 and all(r.used == ("Temp",) for r in reports)
    post = float(twin.parameters()["mean"].to_numpy()[0])
    assert abs(prior - 37.0) < 0.2 and abs(post - 37.8) < 0.2
    # the forecast runs on the spec's 300 s grid and reports the spec's events
    fc = twin.forecast(hours=2.0, record_every_min=10)
    assert fc.values.shape[-1] == 1 and fc.minutes[0] == 10.0
    assert fc.probability("fever").shape == (1,)
    assert list(fc.bands()["unit"].unique()) == ["Cel"]  # the vocabulary's unit
    # outside the model's domain: rejected with the reason, not assimilated
    bad = pd.DataFrame(
        {"effective_time": [T0 + timedelta(hours=6, minutes=5)], "loinc": "8310-5", "value": 25.0}
    )
    assert twin.assimilate(bad)[0].rejected == ("Temp",)
    # a charted code the spec maps to an input sets it
    drug = pd.DataFrame(
        {"effective_time": [T0 + timedelta(hours=6, minutes=20)], "loinc": "8302-2", "value": 5.0}
    )
    twin.assimilate(drug)
    assert twin.inputs[twin.model.input_index("antipyretic_c")] == 2.0  # clipped to the range
    # save and load round-trip with the spec; loading as another model's twin is refused
    twin.save(tmp_path / "f1")
    back = PatientTwin.load(tmp_path / "f1", spec=FEVER_TWIN)
    np.testing.assert_array_equal(back.members, twin.members)
    with pytest.raises(TwinError):
        PatientTwin.load(tmp_path / "f1")


def test_what_if_runs_the_plans_the_model_declares() -> None:
    twin = PatientTwin("f2", PatientProfile(), T0, n_members=32, seed=3, spec=FEVER_TWIN)
    twin.assimilate(observations(38.6, hours=4.0))
    table, _ = compare(twin, [FeverPlan("none"), FeverPlan("1.5", 1.5)], hours=3.0)
    assert list(table.columns) == [
        "plan",
        "treatment",
        "p_fever",
        "fever_min_mean",
        "temp_end_median",
    ]
    none, drug = table.set_index("plan").loc[["none", "1.5"], "temp_end_median"]
    assert none > 38.3 and drug < none - 1.0  # the set point fell by 1.5 C, tau 1 h
    ranked = optimize(twin, hours=3.0)  # the spec's candidates, objective and constraints
    # about 180, 110 + 10 and 33 + 20 febrile minutes plus drug: the larger feasible dose first
    assert list(ranked.plan) == ["2", "1", "none", "3"]
    assert not ranked.set_index("plan").loc["3", "feasible"]
    why = ranked.set_index("plan")["explanation"].astype(str)
    assert "more than 2 C" in why["3"] and "P(fever) 100%" in why["none"]
    with pytest.raises(ValueError, match="neither an outcome nor a treatment"):
        optimize(twin, hours=1.0, objective=type("W", (), {"weights": lambda self: {"x": 1.0}})())


def test_a_spec_naming_unknown_quantities_is_refused() -> None:
    with pytest.raises(KeyError, match="no observable"):
        TwinSpec(
            "bad", fever_model, baseline, FEVER_TWIN.observables, ("set_c",), {}, 0.1, 60.0,
            events=(Event("x", "Pulse", 1.0, below=True),),
        )  # fmt: skip
    spec = TwinSpec("bad2", fever_model, baseline, FEVER_TWIN.observables, ("nope",), {}, 0.1, 60.0)
    with pytest.raises(KeyError):
        _ = spec.model
    with pytest.raises(KeyError, match="vocabulary"):
        Observable("X", "temp_c", ("0000-0",), 0.1, 0.1, 0.0, 1.0)
