"""What-if: branch the twin's posterior under alternative treatment plans and rank them.

The plans, outcomes, objective and constraints are the model's: its spec declares them
(:class:`vitaltwin.model.WhatIf`; the ward model's is
:data:`vitaltwin.physiology.ward_whatif.WARD_WHATIF`). A plan becomes interventions of the same
vocabulary scenarios use, which change the model's inputs on its step grid.

Every plan starts from the same posterior ensemble (the same members, so differences between
plans come from the plans and not from sampling: common random numbers) and runs the model over
the horizon under the plan's inputs. Outcomes are distributions: event probabilities (see
:mod:`vitaltwin.twin._forecast`), minutes an event's condition held, and quantiles of observables
at the horizon.

:func:`optimize` ranks plans by a stated clinical objective (lower is better) among those meeting
the constraints; each plan gets a short explanation of why it ranks where it does. This is
decision support: it shows the uncertainty of every plan and never changes a treatment by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vitaltwin.model import (
    InterventionContext,
    PlanConstraints,
    PlanObjective,
    TreatmentPlan,
    WhatIf,
    apply_changes,
)
from vitaltwin.twin._forecast import Trajectories, run_schedule

if TYPE_CHECKING:
    from vitaltwin.twin._twin import PatientTwin


RECORD_MIN = 5.0
"""Outcomes are read on a grid of about this many minutes (a whole number of model steps)."""


def whatif_of(twin: PatientTwin) -> WhatIf:
    """The what-if the twin's model declares (ValueError when it declares none)."""
    if twin.spec.whatif is None:
        raise ValueError(f"the model {twin.spec.name!r} declares no what-if (TwinSpec.whatif)")
    return twin.spec.whatif


def schedule(twin: PatientTwin, plan: TreatmentPlan, hours: float) -> np.ndarray:
    """Inputs per model step over the horizon: the twin's current inputs changed by the plan's
    interventions (times rounded to the step grid)."""
    ctx = InterventionContext(end_s=hours * 3600.0, blood_volume_ml=twin.profile.blood_volume_ml)
    changes = [c for i in plan.interventions() for c in i.input_changes(ctx)]
    return apply_changes(twin.schedule(hours), twin.model.input_names, changes, twin.layout.dt_s)


def _outcomes(twin: PatientTwin, traj: Trajectories) -> dict[str, np.ndarray]:
    end = traj.values[:, :, -1, :]
    out: dict[str, np.ndarray] = {}
    for o in whatif_of(twin).outcomes:
        if o.kind == "probability":
            out[o.column] = traj.probability(o.of)
        elif o.kind == "mean_minutes":
            out[o.column] = traj.minutes_held(o.of).mean(axis=1)
        else:
            v = end[..., twin.spec.index(o.of)]
            out[o.column] = np.median(v, axis=1) if o.q == 0.5 else np.quantile(v, o.q, axis=1)
    return out


def compare(
    twin: PatientTwin, plans: Sequence[TreatmentPlan], hours: float = 6.0
) -> tuple[pd.DataFrame, Trajectories]:
    """Outcome distributions of each plan from the twin's current posterior: columns ``plan``,
    ``treatment`` and the outcomes the model declares (:class:`vitaltwin.model.Outcome`)."""
    if not plans:
        raise ValueError("no plans to compare")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise ValueError(f"plan names must be unique: {names}")
    whatif_of(twin)
    sched = np.stack([schedule(twin, p, hours) for p in plans])
    k = len(plans)
    traj = run_schedule(
        twin.layout,
        np.broadcast_to(twin.members, (k, *twin.members.shape)),
        np.broadcast_to(twin.base, (k, twin.base.shape[0])),
        sched,
        record_every=max(1, round(RECORD_MIN * 60.0 / twin.layout.dt_s)),
    )
    table = pd.DataFrame(
        {"plan": names, "treatment": [p.describe() for p in plans], **_outcomes(twin, traj)}
    )
    return table, traj


def optimize(
    twin: PatientTwin,
    candidates: Sequence[TreatmentPlan] | None = None,
    hours: float = 6.0,
    objective: PlanObjective | None = None,
    constraints: PlanConstraints | None = None,
) -> pd.DataFrame:
    """Rank feasible plans by expected cost (lower first); infeasible ones are listed last with
    the constraint they break. Objective, constraints and candidates default to the model's
    (:attr:`TwinSpec.whatif`). Columns: the outcomes of :func:`compare`, ``cost``, ``rank``,
    ``feasible``, ``explanation``."""
    spec = whatif_of(twin)
    objective = objective or spec.objective
    constraints = constraints or spec.constraints
    plans = list(candidates) if candidates is not None else spec.candidates()
    broken = {p.name: constraints.violations(p, twin.profile) for p in plans}
    feasible = [p for p in plans if not broken[p.name]]
    if not feasible:
        raise ValueError("no candidate plan meets the constraints")
    inputs = dict(zip(twin.model.input_names, map(float, twin.inputs), strict=True))
    table, _ = compare(twin, feasible, hours)
    amounts = [p.treatment(inputs) for p in feasible]
    cost = pd.Series(0.0, index=table.index)
    for key, w in objective.weights().items():
        if key in table:
            cost = cost + w * table[key]
        elif all(key in a for a in amounts):
            cost = cost + w * pd.Series([a[key] for a in amounts], index=table.index)
        else:
            raise ValueError(f"objective weight {key!r} is neither an outcome nor a treatment")
    table["cost"] = cost
    table = table.sort_values("cost", kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    table["feasible"] = True
    table["explanation"] = _explain(table, spec)
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


def _explain(t: pd.DataFrame, spec: WhatIf) -> list[str]:
    best = t.iloc[0]
    labelled = [(o.column, o.label) for o in spec.outcomes if o.label]
    out = []
    for i, r in t.iterrows():
        core = spec.summary({str(k): v for k, v in r.items()})
        if i == 0:
            nxt = t.iloc[1] if len(t) > 1 else None
            why = "lowest expected cost"
            if nxt is not None:
                why += f" ({r.cost:.0f} vs {nxt.cost:.0f} for '{nxt.plan}')"
        else:
            gaps = []
            for col, label in labelled:
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
