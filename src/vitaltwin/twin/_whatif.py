"""What-if: branch the twin's posterior under alternative treatment plans and rank them.

A :class:`Plan` is a short form for the ward model's treatments; it becomes interventions of the
same vocabulary scenarios use (:mod:`vitaltwin.physiology.interventions`), which change the
model's inputs on its step grid.

Every plan starts from the same posterior ensemble (the same members, so differences between
plans come from the plans and not from sampling: common random numbers) and runs the ward model
over the horizon under the plan's inputs. Outcomes are distributions: event probabilities (see
:mod:`vitaltwin.twin._forecast`), minutes of hypotension, and bands of MAP and lactate at the end.

:func:`optimize` ranks plans by a stated clinical objective (:class:`Objective`, lower is better)
among those meeting the constraints (:class:`Constraints`); each plan gets a short explanation of
why it ranks where it does. This is decision support: it shows the uncertainty of every plan and
never changes a treatment by itself.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from vitaltwin.model import Intervention, InterventionContext, apply_changes
from vitaltwin.physiology.interventions import (
    AntibioticDose,
    FluidBolus,
    NorepinephrineRate,
    Oxygen,
)
from vitaltwin.twin._forecast import Trajectories, run_schedule

if TYPE_CHECKING:
    from vitaltwin.twin._twin import PatientTwin

MINUTE_S = 60.0


class Plan(BaseModel):
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


class Constraints(BaseModel):
    """Limits a plan must respect (defaults: Surviving Sepsis Campaign 2021 [evans2021] — 30
    mL/kg of crystalloid in the first hours; a second vasopressor is advised above ~0.25-0.5
    ug/kg/min of norepinephrine)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_fluid_ml_kg: float = Field(30.0, ge=0.0)
    max_ne_ug_kg_min: float = Field(0.5, ge=0.0)

    def violations(self, plan: Plan, weight_kg: float) -> list[str]:
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


class Objective(BaseModel):
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


def schedule(twin: PatientTwin, plan: Plan, hours: float) -> np.ndarray:
    """Inputs per model step over the horizon: the twin's current inputs changed by the plan's
    interventions (times rounded to the step grid)."""
    ctx = InterventionContext(end_s=hours * 3600.0, blood_volume_ml=twin.profile.blood_volume_ml)
    changes = [c for i in plan.interventions() for c in i.input_changes(ctx)]
    return apply_changes(twin.schedule(hours), twin.model.input_names, changes, twin.layout.dt_s)


def compare(
    twin: PatientTwin, plans: list[Plan], hours: float = 6.0
) -> tuple[pd.DataFrame, Trajectories]:
    """Outcome distributions of each plan from the twin's current posterior."""
    if not plans:
        raise ValueError("no plans to compare")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise ValueError(f"plan names must be unique: {names}")
    sched = np.stack([schedule(twin, p, hours) for p in plans])
    k = len(plans)
    traj = run_schedule(
        twin.layout,
        np.broadcast_to(twin.members, (k, *twin.members.shape)),
        np.broadcast_to(twin.base, (k, twin.base.shape[0])),
        sched,
        record_every=5,
    )
    i_map, i_lac = twin.spec.index("MAP"), twin.spec.index("Lactate")
    end = traj.values[:, :, -1, :]
    table = pd.DataFrame(
        {
            "plan": names,
            "treatment": [p.describe() for p in plans],
            "p_map_below_65_30min": traj.probability("map_below_65_30min"),
            "p_lactate_above_4": traj.probability("lactate_above_4"),
            "p_spo2_below_90": traj.probability("spo2_below_90"),
            "hypotension_min_mean": traj.minutes_held("map_below_65_30min").mean(axis=1),
            "map_end_q05": np.quantile(end[..., i_map], 0.05, axis=1),
            "map_end_median": np.median(end[..., i_map], axis=1),
            "map_end_q95": np.quantile(end[..., i_map], 0.95, axis=1),
            "lactate_end_median": np.median(end[..., i_lac], axis=1),
            "lactate_end_q95": np.quantile(end[..., i_lac], 0.95, axis=1),
        }
    )
    return table, traj


def default_candidates() -> list[Plan]:
    """A grid: bolus 0/250/500/1000 mL x norepinephrine unchanged/0.05/0.1/0.2 x meropenem
    now or not (32 plans)."""
    plans = []
    for fluid, ne, abx in itertools.product(
        (0.0, 250.0, 500.0, 1000.0), (None, 0.05, 0.1, 0.2), (None, 0.0)
    ):
        plan = Plan(name="", fluid_ml=fluid, ne_ug_kg_min=ne, antibiotic_at_min=abx)
        plans.append(plan.model_copy(update={"name": plan.describe()}))
    return plans


def optimize(
    twin: PatientTwin,
    candidates: list[Plan] | None = None,
    hours: float = 6.0,
    objective: Objective | None = None,
    constraints: Constraints | None = None,
) -> pd.DataFrame:
    """Rank feasible plans by expected cost (lower first); infeasible ones are listed last with
    the constraint they break. Columns: the outcomes of :func:`compare`, ``cost``, ``rank``,
    ``feasible``, ``explanation``."""
    objective = objective or Objective()
    constraints = constraints or Constraints()
    plans = candidates if candidates is not None else default_candidates()
    weight = twin.profile.weight_kg
    broken = {p.name: constraints.violations(p, weight) for p in plans}
    feasible = [p for p in plans if not broken[p.name]]
    if not feasible:
        raise ValueError("no candidate plan meets the constraints")
    current = twin.inputs[twin.model.input_index("ne_rate_ug_kg_min")]
    table, _ = compare(twin, feasible, hours)
    ne = np.array([current if p.ne_ug_kg_min is None else p.ne_ug_kg_min for p in feasible])
    fluid_l = np.array([p.fluid_ml for p in feasible]) / 1000.0
    table["cost"] = (
        table["hypotension_min_mean"]
        + objective.w_shock * table["p_map_below_65_30min"]
        + objective.w_lactate * table["p_lactate_above_4"]
        + objective.w_hypoxaemia * table["p_spo2_below_90"]
        + objective.w_fluid_per_l * fluid_l
        + objective.w_ne_per_ug_kg_min * ne
    )
    table = table.sort_values("cost", kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    table["feasible"] = True
    table["explanation"] = _explain(table)
    rest = [
        {
            "plan": p.name,
            "treatment": p.describe(),
            "feasible": False,
            "explanation": "; ".join(broken[p.name]),
        }
        for p in plans
        if broken[p.name]
    ]
    return pd.concat([table, pd.DataFrame(rest)], ignore_index=True) if rest else table


def _explain(t: pd.DataFrame) -> list[str]:
    best = t.iloc[0]
    out = []
    for i, r in t.iterrows():
        core = (
            f"P(MAP<65 for 30 min) {r.p_map_below_65_30min:.0%}, P(lactate>4) "
            f"{r.p_lactate_above_4:.0%}, {r.hypotension_min_mean:.0f} min below 65 expected, "
            f"MAP at end {r.map_end_median:.0f} (90 % band {r.map_end_q05:.0f}-{r.map_end_q95:.0f})"
        )
        if i == 0:
            nxt = t.iloc[1] if len(t) > 1 else None
            why = "lowest expected cost"
            if nxt is not None:
                why += f" ({r.cost:.0f} vs {nxt.cost:.0f} for '{nxt.plan}')"
        else:
            gaps = []
            for col, label in (
                ("p_map_below_65_30min", "sustained hypotension"),
                ("p_lactate_above_4", "lactate > 4"),
            ):
                d = r[col] - best[col]
                if d > 0.02:
                    gaps.append(f"{label} {d:+.0%}")
            why = f"cost {r.cost:.0f} vs {best.cost:.0f} for the first"
            if gaps:
                why += " (" + ", ".join(gaps) + " against it)"
            elif r.cost > best.cost:
                why += " (similar outcomes, more treatment)"
        out.append(f"{why}: {core}")
    return out
