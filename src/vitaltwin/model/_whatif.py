"""What a model's what-if offers, declared next to the model: :class:`WhatIf`.

The twin's what-if (:func:`vitaltwin.twin.compare`, :func:`vitaltwin.twin.optimize`) is generic:
it branches the posterior under treatment plans and ranks them. What depends on the model is
declared here by the model's author:

* the **plans**: any object following :class:`TreatmentPlan` (a name, a description, the
  interventions it stands for, and the amounts of treatment an objective may charge for);
* the **outcomes** reported per plan (:class:`Outcome`: an event's probability, the mean minutes
  an event's condition held, a quantile of an observable at the horizon);
* the default **objective** (weights on outcomes and treatment amounts, lower cost is better) and
  **constraints** (limits a plan must respect for a given patient);
* the default **candidates** and a one-line **summary** of a plan's outcomes for explanations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from vitaltwin.model._intervention import Intervention


class TreatmentPlan(Protocol):
    """A named treatment plan over a what-if horizon."""

    @property
    def name(self) -> str: ...

    def describe(self) -> str:
        """The plan in words (``"500 mL over 30 min, norepinephrine 0.1 ug/kg/min"``)."""
        ...

    def interventions(self) -> list[Intervention]:
        """The plan in the interventions' vocabulary (the same classes scenarios use)."""
        ...

    def treatment(self, inputs: Mapping[str, float]) -> Mapping[str, float]:
        """Amounts of treatment an objective may charge for (e.g. ``fluid_l``), given the
        model's current inputs by name (a plan that leaves a rate unchanged keeps it)."""
        ...


class PlanConstraints(Protocol):
    """Limits a plan must respect for one patient."""

    def violations(self, plan: Any, profile: Any) -> list[str]:
        """What ``plan`` breaks for the patient ``profile`` (empty: feasible)."""
        ...


class PlanObjective(Protocol):
    """A plan's expected cost: a weighted sum of outcome columns and treatment amounts."""

    def weights(self) -> Mapping[str, float]:
        """Weight per outcome column or treatment amount, summed in this order."""
        ...


@dataclass(frozen=True)
class Outcome:
    """One column of the what-if table, from a plan's ensemble trajectories.

    ``kind="probability"``: fraction of members in which the event ``of`` occurs;
    ``"mean_minutes"``: mean over members of the minutes the event's condition held;
    ``"end_quantile"``: the ``q`` quantile over members of the observable ``of`` at the horizon
    (``q=0.5`` is the median). ``label`` names the outcome in explanations; outcomes with a
    label are the ones a plan is said to do worse on than the best plan."""

    column: str
    kind: Literal["probability", "mean_minutes", "end_quantile"]
    of: str
    q: float = 0.5
    label: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.q <= 1.0:
            raise ValueError(f"outcome {self.column}: q must be in [0, 1]")


@dataclass(frozen=True)
class WhatIf:
    """The what-if a model offers (see the module docstring)."""

    outcomes: tuple[Outcome, ...]
    objective: PlanObjective
    constraints: PlanConstraints
    candidates: Callable[[], list[Any]]
    """The plans :func:`vitaltwin.twin.optimize` ranks when none are given."""
    summary: Callable[[Mapping[str, Any]], str]
    """One line on a plan's outcomes, from its row of the outcome table."""

    def __post_init__(self) -> None:
        cols = [o.column for o in self.outcomes]
        if len(set(cols)) != len(cols):
            raise ValueError("a what-if outcome column is declared twice")
