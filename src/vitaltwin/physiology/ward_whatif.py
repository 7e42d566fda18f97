"""The ward model's what-if (:data:`WARD_WHATIF`): plans of fluid, norepinephrine, meropenem and
oxygen, their outcomes, the default objective and the constraints.

A :class:`WardPlan` is a short form for the ward model's treatments; it becomes interventions of
the same vocabulary scenarios use (:mod:`vitaltwin.physiology.interventions`). Outcomes per plan
(see :class:`vitaltwin.model.Outcome`): the probabilities of the ward twin's events (sustained
hypotension, lactate above 4, SpO2 below 90), the mean minutes of MAP below 65 mmHg, and bands of
MAP and lactate at the horizon.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vitaltwin.model import Intervention, Outcome, WhatIf
from vitaltwin.physiology.interventions import (
    AntibioticDose,
    FluidBolus,
    NorepinephrineRate,
    Oxygen,
)

MINUTE_S = 60.0


class WardPlan(BaseModel):
    """A treatment plan over the horizon (times in minutes from now)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    fluid_ml: float = Field(0.0, ge=0.0, le=5000.0, description="crystalloid bolus volume")
    fluid_over_min: float = Field(30.0, gt=0.0, le=240.0)
    fluid_at_min: float = Field(0.0, ge=0.0)
    ne_ug_kg_min: float | None = Field(
        None, ge=0.0, le=3.0, description="norepinephrine rate from ne_at_min (None: unchanged)"
    )
    ne_at_min: float = Field(0.0, ge=0.0)
    antibiotic_at_min: float | None = Field(
        None, ge=0.0, description="meropenem 1 g over 30 min at this time (None: none)"
    )
    fio2: float | None = Field(None, ge=0.21, le=1.0, description="FiO2 from now (None: unchanged)")

    def describe(self) -> str:
        parts = []
        if self.fluid_ml:
            parts.append(f"{self.fluid_ml:g} mL over {self.fluid_over_min:g} min")
        if self.ne_ug_kg_min is not None:
            parts.append(f"norepinephrine {self.ne_ug_kg_min:g} ug/kg/min")
        if self.antibiotic_at_min is not None:
            parts.append(f"meropenem at +{self.antibiotic_at_min:g} min")
        if self.fio2 is not None:
            parts.append(f"FiO2 {self.fio2:g}")
        return ", ".join(parts) or "no change"

    def interventions(self) -> list[Intervention]:
        """The plan in the interventions' vocabulary (the same classes scenarios use)."""
        out: list[Intervention] = []
        if self.fluid_ml:
            out.append(
                FluidBolus(
                    type="fluid_bolus",
                    at_s=self.fluid_at_min * MINUTE_S,
                    volume_ml=self.fluid_ml,
                    duration_s=self.fluid_over_min * MINUTE_S,
                )
            )
        if self.ne_ug_kg_min is not None:
            out.append(
                NorepinephrineRate(
                    type="norepinephrine_rate",
                    at_s=self.ne_at_min * MINUTE_S,
                    rate_ug_kg_min=self.ne_ug_kg_min,
                )
            )
        if self.antibiotic_at_min is not None:
            out.append(
                AntibioticDose(
                    type="antibiotic",
                    at_s=self.antibiotic_at_min * MINUTE_S,
                    every_h=None,  # one dose of the intervention's standard 1 g over 30 min
                )
            )
        if self.fio2 is not None:
            out.append(Oxygen(type="oxygen", at_s=0.0, fio2=self.fio2))
        return out

    def treatment(self, inputs: Mapping[str, float]) -> dict[str, float]:
        """Litres of fluid and the norepinephrine rate (ug/kg/min) over the horizon (the current
        rate when the plan leaves it unchanged)."""
        ne = inputs["ne_rate_ug_kg_min"] if self.ne_ug_kg_min is None else self.ne_ug_kg_min
        return {"fluid_l": self.fluid_ml / 1000.0, "ne_ug_kg_min": ne}


class WardConstraints(BaseModel):
    """Limits a plan must respect (defaults: Surviving Sepsis Campaign 2021 [evans2021] — 30
    mL/kg of crystalloid in the first hours; a second vasopressor is advised above ~0.25-0.5
    ug/kg/min of norepinephrine)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_fluid_ml_kg: float = Field(30.0, ge=0.0)
    max_ne_ug_kg_min: float = Field(0.5, ge=0.0)

    def violations(self, plan: WardPlan, profile: Any) -> list[str]:
        """What ``plan`` breaks for a patient of ``profile.weight_kg``."""
        weight_kg = float(profile.weight_kg)
        out = []
        if plan.fluid_ml > self.max_fluid_ml_kg * weight_kg:
            out.append(
                f"fluid {plan.fluid_ml:g} mL > {self.max_fluid_ml_kg:g} mL/kg "
                f"({self.max_fluid_ml_kg * weight_kg:.0f} mL)"
            )
        if plan.ne_ug_kg_min is not None and plan.ne_ug_kg_min > self.max_ne_ug_kg_min:
            out.append(
                f"norepinephrine {plan.ne_ug_kg_min:g} > {self.max_ne_ug_kg_min:g} ug/kg/min"
            )
        return out


class WardObjective(BaseModel):
    """Expected cost of a plan, lower is better, in minute-equivalents of hypotension:
    ``E[minutes MAP < 65] + w_shock * P(MAP < 65 for >= 30 min) + w_lactate * P(lactate > 4)
    + w_hypoxaemia * P(SpO2 < 90) + w_fluid * litres + w_ne * norepinephrine ug/kg/min``.
    The weights are a statement of clinical priorities, to be set by the unit; the defaults
    make 30 minutes of sustained shock cost as much as an hour of hypotension and charge fluid
    and vasopressor a little so that the least treatment achieving the same is preferred."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    w_shock: float = 60.0
    w_lactate: float = 60.0
    w_hypoxaemia: float = 60.0
    w_fluid_per_l: float = 10.0
    w_ne_per_ug_kg_min: float = 20.0

    def weights(self) -> dict[str, float]:
        return {
            "hypotension_min_mean": 1.0,
            "p_map_below_65_30min": self.w_shock,
            "p_lactate_above_4": self.w_lactate,
            "p_spo2_below_90": self.w_hypoxaemia,
            "fluid_l": self.w_fluid_per_l,
            "ne_ug_kg_min": self.w_ne_per_ug_kg_min,
        }


def default_candidates() -> list[WardPlan]:
    """A grid: bolus 0/250/500/1000 mL x norepinephrine unchanged/0.05/0.1/0.2 x meropenem
    now or not (32 plans)."""
    plans = []
    for fluid, ne, abx in itertools.product(
        (0.0, 250.0, 500.0, 1000.0), (None, 0.05, 0.1, 0.2), (None, 0.0)
    ):
        plan = WardPlan(name="", fluid_ml=fluid, ne_ug_kg_min=ne, antibiotic_at_min=abx)
        plans.append(plan.model_copy(update={"name": plan.describe()}))
    return plans


def _summary(r: Mapping[str, Any]) -> str:
    return (
        f"P(MAP<65 for 30 min) {r['p_map_below_65_30min']:.0%}, P(lactate>4) "
        f"{r['p_lactate_above_4']:.0%}, {r['hypotension_min_mean']:.0f} min below 65 expected, "
        f"MAP at end {r['map_end_median']:.0f} "
        f"(90 % band {r['map_end_q05']:.0f}-{r['map_end_q95']:.0f})"
    )


WARD_WHATIF = WhatIf(
    outcomes=(
        Outcome(
            "p_map_below_65_30min",
            "probability",
            "map_below_65_30min",
            label="sustained hypotension",
        ),
        Outcome("p_lactate_above_4", "probability", "lactate_above_4", label="lactate > 4"),
        Outcome("p_spo2_below_90", "probability", "spo2_below_90"),
        Outcome("hypotension_min_mean", "mean_minutes", "map_below_65_30min"),
        Outcome("map_end_q05", "end_quantile", "MAP", q=0.05),
        Outcome("map_end_median", "end_quantile", "MAP", q=0.5),
        Outcome("map_end_q95", "end_quantile", "MAP", q=0.95),
        Outcome("lactate_end_median", "end_quantile", "Lactate", q=0.5),
        Outcome("lactate_end_q95", "end_quantile", "Lactate", q=0.95),
    ),
    objective=WardObjective(),
    constraints=WardConstraints(),
    candidates=default_candidates,
    summary=_summary,
)
"""The ward model's what-if (plans, outcomes, objective, constraints)."""
