"""The PhysioNet/CinC Challenge 2019 normalized utility, exactly as the Challenge scored it.

Reyna MA et al., "Early Prediction of Sepsis From Clinical Data: the PhysioNet/Computing in
Cardiology Challenge 2019", Crit Care Med 48(2):210-217, 2020 [reyna2020], section "Scoring"
and its Figure 2. Per patient, in row order: onset ``t_s`` = index of the first positive label +
6 h (the label turns on 6 h before the clinical onset). For a septic patient at row ``t`` with
``rel = t - t_s``:

* ``rel > 3``: the row scores 0 whatever is predicted;
* a positive prediction scores ``max((rel + 12) / 6, -0.05)`` for ``rel <= -6`` and
  ``(3 - rel) / 9`` for ``-6 < rel <= 3``;
* a negative prediction scores 0 for ``rel <= -6`` and ``-2 (rel + 6) / 9`` for ``-6 < rel <= 3``.

For a patient who never becomes septic a positive prediction scores -0.05, a negative one 0.
The normalized utility is ``(U - U0) / (U* - U0)`` with ``U`` the model's total over all rows of
all patients, ``U0`` that of never predicting and ``U*`` that of the ideal predictor (1 exactly on
rows ``max(0, t_s - 12)`` to ``min(t_s + 3, last row)`` of septic patients, 0 elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DT_EARLY = -12
DT_OPTIMAL = -6
DT_LATE = 3
MAX_U_TP = 1.0
MIN_U_FN = -2.0
U_FP = -0.05
U_TN = 0.0


@dataclass(frozen=True)
class Utility:
    """Totals over a cohort; ``normalized`` is the Challenge's score."""

    observed: float
    inaction: float
    best: float

    @property
    def normalized(self) -> float:
        return (self.observed - self.inaction) / (self.best - self.inaction)


def _onsets(
    starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], labels: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Per patient: the onset row (first positive label + 6), or +inf if never septic."""
    cum = np.concatenate([[0], np.cumsum(labels)])
    any_pos = cum[starts + lengths] > cum[starts]
    first = np.full(len(starts), np.inf)
    pos_idx = np.flatnonzero(labels)
    if pos_idx.size:
        # first positive index at or after each start
        k = np.searchsorted(pos_idx, starts)
        first[any_pos] = pos_idx[k[any_pos]] - starts[any_pos]
    return first - DT_OPTIMAL


def row_utility(
    rel: npt.NDArray[np.float64], septic: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Utility of each row given its time relative to onset (``inf`` rows of non-septic
    patients are not used), whether its patient is septic, and the binary prediction."""
    m1 = MAX_U_TP / (DT_OPTIMAL - DT_EARLY)
    b1 = -m1 * DT_EARLY
    m2 = -MAX_U_TP / (DT_LATE - DT_OPTIMAL)
    b2 = -m2 * DT_LATE
    m3 = MIN_U_FN / (DT_LATE - DT_OPTIMAL)
    b3 = -m3 * DT_OPTIMAL
    with np.errstate(invalid="ignore"):
        early = rel <= DT_OPTIMAL
        window = (rel > DT_OPTIMAL) & (rel <= DT_LATE)
        tp = np.where(early, np.maximum(m1 * rel + b1, U_FP), np.where(window, m2 * rel + b2, 0.0))
        fn = np.where(window, m3 * rel + b3, 0.0)
    septic_u = np.where(predicted, tp, fn)
    other_u = np.where(predicted, U_FP, U_TN)
    return np.where(septic, septic_u, other_u)


def patient_blocks(patient: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Starts and lengths of contiguous runs of equal patient identifiers."""
    p = np.asarray(patient)
    if p.ndim != 1:
        raise ValueError("patient identifiers must be one-dimensional")
    if p.size == 0:
        raise ValueError("no rows to score")
    change = np.flatnonzero(p[1:] != p[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    lengths = np.diff(np.concatenate([starts, [p.size]])).astype(np.int64)
    if len(np.unique(p[starts])) != len(starts):
        raise ValueError(
            "each patient's rows must be contiguous and in time order (a patient appears in "
            "more than one block)"
        )
    return starts, lengths


def patient_utilities(
    patient: npt.ArrayLike, label: npt.ArrayLike, predicted: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Per patient (in order of first appearance): the model's, never-predicting and ideal
    utility, shape ``(patients, 3)``. Summing rows and normalizing gives the Challenge score;
    resampling rows gives patient-bootstrap intervals."""
    lab = np.asarray(label)
    pred = np.asarray(predicted)
    if not (lab.shape == pred.shape == np.shape(patient)):
        raise ValueError(
            f"patient, label and predicted must have one value per row: shapes "
            f"{np.shape(patient)}, {lab.shape}, {pred.shape}"
        )
    for name, a in (("label", lab), ("predicted", pred)):
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0/1); found {np.unique(a)[:5]}")
    lab_b = lab.astype(bool)
    pred_b = pred.astype(bool)
    starts, lengths = patient_blocks(patient)
    onset = _onsets(starts, lengths, lab_b)
    row_in = np.arange(lab.size) - np.repeat(starts, lengths)
    rel = (row_in - np.repeat(onset, lengths)).astype(np.float64)
    septic = np.repeat(np.isfinite(onset), lengths)
    best = septic & (rel >= DT_EARLY) & (rel <= DT_LATE)
    per_row = np.stack(
        [
            row_utility(rel, septic, pred_b),
            row_utility(rel, septic, np.zeros_like(pred_b)),
            row_utility(rel, septic, best),
        ],
        axis=1,
    )
    return np.add.reduceat(per_row, starts, axis=0)


def utility(patient: npt.ArrayLike, label: npt.ArrayLike, predicted: npt.ArrayLike) -> Utility:
    """Challenge utility of binary ``predicted`` for rows grouped by ``patient`` (each patient's
    rows contiguous, in time order), with the 0/1 sepsis ``label`` of each row."""
    tot = patient_utilities(patient, label, predicted).sum(axis=0)
    return Utility(observed=float(tot[0]), inaction=float(tot[1]), best=float(tot[2]))


def normalized_utility(
    patient: npt.ArrayLike, label: npt.ArrayLike, predicted: npt.ArrayLike
) -> float:
    """The Challenge's normalized utility (1 = ideal, 0 = never predicting)."""
    return utility(patient, label, predicted).normalized
