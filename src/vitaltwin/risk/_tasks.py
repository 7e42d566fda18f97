"""Risk tasks: what is predicted, how a model of it is judged, and its name in the registry.

A task is one object (:class:`RiskTask`) in one place; the study, the registry, the CLI and the
monitor read everything task-specific from it. Adding a task is one more object in
:data:`RISK_TASKS`.

* ``sepsis``: the PhysioNet 2019 label (1 from 6 h before the Sepsis-3 onset onward); models
  are compared on the Challenge's normalized utility, the operating threshold maximizes it.
* ``deterioration``: sustained hypotension — charted MAP below 65 mmHg in ``sustain_h``
  consecutive hours (the Surviving Sepsis Campaign's MAP target, Evans L et al., Crit Care Med
  49:e1063-e1143, 2021) — starting within the next ``horizon_h`` hours. Only hours whose last
  charted MAP is at least 65 mmHg are eligible (a patient already hypotensive is not predicted,
  they are treated); others carry -1. Models are compared on AUROC; the threshold maximizes
  Youden's J.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from vitaltwin.risk._cohort import Cohort
from vitaltwin.risk._features import _ffill
from vitaltwin.risk._utility import patient_blocks

Task = Literal["sepsis", "deterioration"]
"""The name of a task in :data:`RISK_TASKS`."""


def sepsis_labels(cohort: Cohort) -> npt.NDArray[np.int64]:
    """The PhysioNet 2019 sepsis label of each grid row (-1 where the source has none)."""
    return cohort.grid["sepsis"].to_numpy(dtype=np.int64)


def deterioration_labels(
    cohort: Cohort, horizon_h: int = 6, sustain_h: int = 2, map_mmhg: float = 65.0
) -> npt.NDArray[np.int64]:
    """1 if sustained hypotension starts within the next ``horizon_h`` rows, 0 if not, -1 for
    rows not eligible (last charted MAP below ``map_mmhg``). Rows are hours (see
    :mod:`vitaltwin.risk._cohort`)."""
    g = cohort.grid
    pid = g["patient_id"].to_numpy()
    n = len(g)
    starts, lengths = patient_blocks(pid)
    start = np.repeat(starts, lengths)
    end = start + np.repeat(lengths, lengths) - 1  # last row of each row's patient
    m = g["MAP"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = m < map_mmhg
    onset = low.copy()
    for k in range(1, sustain_h):
        nxt = np.zeros(n, bool)
        nxt[:-k] = low[k:]
        onset &= nxt & (np.arange(n) + k <= end)
    c = np.concatenate([[0], np.cumsum(onset)])
    i = np.arange(n)
    hi = np.minimum(i + horizon_h, end)
    y = (c[hi + 1] - c[i + 1] > 0).astype(np.int64)
    last_map, _ = _ffill(m, start)
    with np.errstate(invalid="ignore"):
        y[last_map < map_mmhg] = -1
    return np.asarray(y, dtype=np.int64)


@dataclass(frozen=True)
class RiskTask:
    """One prediction task.

    Attributes:
        name: short name (``sepsis``).
        description: what is predicted, in words.
        labels: the label of every grid row (1, 0, or -1 for rows not predicted).
        criterion: the cross-validated figure models are compared on (``utility`` or ``auroc``).
        threshold_rule: how the operating threshold is chosen (``utility`` or ``youden``).
        utility: whether the PhysioNet 2019 utility applies (labels timed as the Challenge's).
        model_name: the model's name in the registry.
    """

    name: Task
    description: str
    labels: Callable[[Cohort], npt.NDArray[np.int64]]
    criterion: Literal["utility", "auroc"]
    threshold_rule: Literal["utility", "youden"]
    utility: bool
    model_name: str


SEPSIS = RiskTask(
    "sepsis",
    "sepsis (PhysioNet 2019 label: from 6 h before the Sepsis-3 onset)",
    sepsis_labels,
    "utility",
    "utility",
    True,
    "vitaltwin-sepsis",
)
DETERIORATION = RiskTask(
    "deterioration",
    "haemodynamic deterioration: MAP < 65 mmHg for 2 h starting within 6 h",
    deterioration_labels,
    "auroc",
    "youden",
    False,
    "vitaltwin-deterioration",
)
MATERIAL = 0.005
"""The least gain in a task's criterion (utility for sepsis, AUROC for deterioration) that
counts: a model with more assumptions (the twin features, the process features, an adaptation)
replaces a simpler one only when it gains more than this."""

RISK_TASKS: dict[str, RiskTask] = {t.name: t for t in (SEPSIS, DETERIORATION)}
TASKS: tuple[Task, ...] = (SEPSIS.name, DETERIORATION.name)


class UnknownTaskError(ValueError):
    """A task name that is not in :data:`RISK_TASKS`."""


def risk_task(name: str) -> RiskTask:
    """The task called ``name``; :class:`UnknownTaskError` naming the known ones otherwise."""
    try:
        return RISK_TASKS[name]
    except KeyError:
        known = list(RISK_TASKS)
        raise UnknownTaskError(f"unknown task {name!r}; expected one of {known}") from None


def labels_for(task: str, cohort: Cohort) -> npt.NDArray[np.int64]:
    """The labels of ``task`` for every grid row."""
    return risk_task(task).labels(cohort)
