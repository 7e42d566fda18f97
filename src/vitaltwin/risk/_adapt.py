"""Safe adaptation of a risk model at a new hospital: a challenger with its evidence, never
promoted automatically.

**Without labels (silent mode).** The model scores the new site's hours without showing them;
its threshold is reset so that the site's alert rate (alerts per patient-hour) equals the one
the model had in development — the burden clinicians agreed to — whatever the new site's score
distribution. A model is not recalibrated without outcomes: once the silent period's outcomes
are known, its calibration there is checked (intercept and slope; 0 and 1 when it transfers).

**With local labels.** Candidates are fitted on the site's adaptation patients and compared on
site patients held out of the adaptation: the source model as it is; the silent-mode threshold;
a logistic recalibration of the model's score (intercept and slope on the logit scale;
Platt 1999; the updating methods of Steyerberg, *Clinical Prediction Models*, 2nd ed. 2019,
ch. 20) with its operating threshold re-chosen on the adaptation patients; and the model
continued on them (:meth:`vitaltwin.risk.RiskModel.continue_training`: a site stage of boosters
starting from the source model's score, LightGBM ``init_score``, threshold chosen on its
out-of-fold scores). A candidate replaces
a simpler one only when it gains more than :data:`vitaltwin.risk.MATERIAL` on the held-out
patients (utility for sepsis, AUROC for deterioration).

:func:`learning_curve` repeats this with 0, 100, 500, 2,000 local patients, evaluated on the
same held-out patients each time: how many labelled local patients adaptation needs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from vitaltwin.risk._evaluate import Rows, _logit, calibration, evaluate, recalibration
from vitaltwin.risk._model import RiskModel, best_threshold
from vitaltwin.risk._tasks import MATERIAL, risk_task

FloatArray = npt.NDArray[np.float64]
SIMPLEST_FIRST = ("source", "silent threshold", "recalibrated", "continued")
LOCAL_PATIENTS = (0, 100, 500, 2000)
"""The learning curve's numbers of labelled local patients."""


class AdaptationError(ValueError):
    """Data that cannot adapt a model (says what is missing)."""


@dataclass(frozen=True)
class Adaptation:
    """The adapted model and the evidence: what changed, every candidate's figures on the
    held-out local patients (with labels), the silent-mode alert rates."""

    model: RiskModel
    chosen: str
    changes: list[str]
    silent: dict[str, float]
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration_check: dict[str, float] = field(default_factory=dict)
    patients: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "changes": self.changes,
            "silent": self.silent,
            "candidates": self.candidates,
            "calibration_check": self.calibration_check,
            "patients": self.patients,
            "threshold": self.model.threshold_,
            "recalibration": list(self.model.recalibration_),
        }


def silent_threshold(p: FloatArray, rate: float) -> float:
    """The threshold at which a share ``rate`` of the scores ``p`` alert."""
    if not 0 < rate < 1:
        raise AdaptationError(f"alert rate {rate}: a share of hours between 0 and 1")
    return float(np.quantile(p, 1.0 - rate))


def operating_point(
    model: RiskModel, threshold: float, recalibration_ab: tuple[float, float] | None = None
) -> RiskModel:
    """A copy of ``model`` with another threshold (and recalibration); the boosters are shared,
    the source is left as it was."""
    out = copy.copy(model)
    out.threshold_ = float(threshold)
    if recalibration_ab is not None:
        out.recalibration_ = (float(recalibration_ab[0]), float(recalibration_ab[1]))
    return out


def _recalibrated(model: RiskModel, y: npt.NDArray[np.int64], p: FloatArray) -> RiskModel:
    """``model`` with its score recalibrated to ``(y, p)`` (composed with its own
    recalibration: ``logit p' = a2 + b2 (a + b z)``), threshold re-chosen on the same rows
    later by the caller."""
    a2, b2 = recalibration(y, p)
    a, b = model.recalibration_
    return operating_point(model, model.threshold_, (a2 + b2 * a, b2 * b))


def _figures(rows: Rows, task: str) -> dict[str, float]:
    ev = evaluate(rows, sepsis=risk_task(task).utility, n_boot=0)
    keys = ("utility", "auroc", "calibration_intercept", "calibration_slope", "sensitivity",
            "specificity", "ppv", "alerts_per_patient_day")  # fmt: skip
    out = {k: float(ev[k]) for k in keys if k in ev}
    out["alert_rate"] = float(rows.alert.mean())
    return out


def _split(
    pid: npt.NDArray[Any], y: npt.NDArray[np.int64], fraction: float, seed: int
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Patients for adaptation and for evaluation, stratified by whether they have an event."""
    ids = np.unique(pid)
    event = np.array([y[pid == i].max() > 0 for i in ids])
    rng = np.random.default_rng(seed)
    held: list[Any] = []
    for flag in (True, False):
        group = ids[event == flag].copy()
        rng.shuffle(group)
        held.extend(group[: round(fraction * group.size)])
    evaluation = np.array(sorted(held), dtype=object)
    return np.setdiff1d(ids, evaluation), evaluation


def adapt(
    model: RiskModel,
    X: Any,
    y: npt.ArrayLike,
    pid: npt.ArrayLike,
    hour: npt.ArrayLike,
    *,
    alert_rate: float | None = None,
    labels: bool = True,
    evaluation_fraction: float = 0.3,
    min_patients: int = 50,
    seed: int = 0,
) -> Adaptation:
    """Adapt ``model`` to a new site's hours ``X`` (features), with outcomes ``y`` (0/1, -1
    unknown), patients ``pid`` and hours of stay ``hour``. ``alert_rate``: the target share of
    alerting hours (default: the model's own in development). ``labels=False``: silent mode
    only (outcomes unused even where present)."""
    yy, pp, hh = np.asarray(y, np.int64), np.asarray(pid), np.asarray(hour, np.int64)
    rate = _target_rate(model, alert_rate)
    p = model.predict_proba(X)
    known = yy >= 0
    ids = np.unique(pp[known])
    events = np.unique(pp[known & (yy == 1)])
    with_labels = labels and ids.size >= min_patients and events.size >= 5
    patients = {"site": int(np.unique(pp).size), "labelled": int(ids.size),
                "with_event": int(events.size)}  # fmt: skip
    if not with_labels:
        thr = silent_threshold(p, rate)
        adapted = operating_point(model, thr)
        silent = {
            "target_alert_rate": rate,
            "alert_rate_before": float(np.mean(p >= model.threshold_)),
            "alert_rate_after": float(np.mean(p >= thr)),
            "threshold_before": model.threshold_,
            "threshold_after": thr,
        }
        why = "" if labels else " (labels not used)"
        changes = [f"threshold {model.threshold_:.4f} -> {thr:.4f}: the site's alert rate "
                   f"{silent['alert_rate_before']:.4f} -> {silent['alert_rate_after']:.4f} of "
                   f"hours, the development rate{why}"]  # fmt: skip
        check = {}
        if ids.size and 0 < yy[known].sum() < known.sum():
            a, b = calibration(yy[known], p[known])
            check = {"calibration_intercept": a, "calibration_slope": b}
        return Adaptation(adapted, "silent threshold", changes, silent, {}, check, patients)
    train_ids, eval_ids = _split(pp[known], yy[known], evaluation_fraction, seed)
    return _compare(model, X, yy, pp, hh, p, rate, train_ids, eval_ids, patients)


def _target_rate(model: RiskModel, alert_rate: float | None) -> float:
    """``alert_rate``, else the share of hours the model alerted on in development."""
    rate = alert_rate if alert_rate is not None else getattr(model, "alert_rate_", None)
    if rate is None:
        raise AdaptationError(
            "the model does not record its development alert rate (saved by an older "
            "vitaltwin): give the target rate (--alert-rate)"
        )
    return float(rate)


def _compare(
    model: RiskModel,
    X: Any,
    y: npt.NDArray[np.int64],
    pid: npt.NDArray[Any],
    hour: npt.NDArray[np.int64],
    p: FloatArray,
    rate: float,
    train_ids: npt.NDArray[Any],
    eval_ids: npt.NDArray[Any],
    patients: dict[str, int],
) -> Adaptation:
    """Fit the candidates on ``train_ids``' hours, compare them on ``eval_ids``'."""
    task = model.task
    known = y >= 0
    tr = known & np.isin(pid, train_ids)
    ev = known & np.isin(pid, eval_ids)
    if not ev.any() or not 0 < y[ev].sum() < ev.sum():
        raise AdaptationError("the held-out local patients need hours with and without events")
    candidates: dict[str, RiskModel] = {"source": model}
    if tr.any():
        candidates["silent threshold"] = operating_point(model, silent_threshold(p[tr], rate))
    if tr.any() and 0 < y[tr].sum() < tr.sum():
        recal = _recalibrated(model, y[tr], p[tr])
        thr, _ = best_threshold(task, pid[tr], y[tr], _rescore(model, recal, p)[tr])
        candidates["recalibrated"] = operating_point(recal, thr)
        if not model.site_boosters_ and np.unique(pid[tr]).size >= model.inner_folds:
            candidates["continued"] = model.continue_training(X[tr], y[tr], pid[tr])
    figures: dict[str, dict[str, float]] = {}
    for name, m in candidates.items():
        # a candidate with boosters of its own is scored by them; the others share the
        # source's and rescale its scores
        s = m.predict_proba(X[ev]) if m.site_boosters_ else _rescore(model, m, p)[ev]
        figures[name] = _figures(Rows(pid[ev], hour[ev], y[ev], s, s >= m.threshold_), task)
    key = risk_task(task).criterion
    chosen = "source"
    for name in SIMPLEST_FIRST[1:]:
        if name in figures and figures[name][key] - figures[chosen][key] > MATERIAL:
            chosen = name
    m = candidates[chosen]
    changes = _changes(model, m, figures, chosen, key, int(train_ids.size))
    a, b = calibration(y[ev], p[ev])
    silent = {"target_alert_rate": rate}
    if "silent threshold" in candidates:
        silent["threshold_after"] = candidates["silent threshold"].threshold_
    patients = {**patients, "adaptation": int(train_ids.size), "evaluation": int(eval_ids.size)}
    check = {"calibration_intercept": a, "calibration_slope": b}
    return Adaptation(m, chosen, changes, silent, figures, check, patients)


def _source_logit(model: RiskModel, p: FloatArray) -> FloatArray:
    """The model's boosted logit behind its probabilities ``p`` (its recalibration undone)."""
    a, b = model.recalibration_
    out: FloatArray = (_logit(p) - a) / b
    return out


def _rescore(source: RiskModel, adapted: RiskModel, p: FloatArray) -> FloatArray:
    """``adapted``'s probabilities from ``source``'s (they share the boosters)."""
    a, b = adapted.recalibration_
    out: FloatArray = expit(a + b * _source_logit(source, p))
    return out


def _changes(
    source: RiskModel,
    m: RiskModel,
    figures: dict[str, dict[str, float]],
    chosen: str,
    key: str,
    n_local: int,
) -> list[str]:
    out = []
    if m.site_boosters_:
        out.append(f"boosting continued on {n_local} local patients: a site stage of "
                   f"{m.site_iterations_[0]} rounds added to the source "
                   "model's score (its boosters unchanged)")  # fmt: skip
    if m.threshold_ != source.threshold_:
        out.append(f"threshold {source.threshold_:.4f} -> {m.threshold_:.4f}")
    if m.recalibration_ != source.recalibration_ and not m.site_boosters_:
        (a0, b0), (a1, b1) = source.recalibration_, m.recalibration_
        out.append(f"recalibration (intercept, slope) ({a0:.3f}, {b0:.3f}) -> ({a1:.3f}, {b1:.3f})")
    before, after = figures["source"], figures[chosen]
    out.append(
        f"on the held-out local patients: {key} {before[key]:.3f} -> {after[key]:.3f}, "
        f"AUROC {before['auroc']:.3f} -> {after['auroc']:.3f}, calibration slope "
        f"{before['calibration_slope']:.2f} -> {after['calibration_slope']:.2f}, alerts per "
        f"patient-day {before['alerts_per_patient_day']:.2f} -> "
        f"{after['alerts_per_patient_day']:.2f}"
    )
    if chosen == "source":
        out.insert(0, "nothing gained materially: the source model is kept as it is")
    return out


def learning_curve(
    model: RiskModel,
    X: Any,
    y: npt.ArrayLike,
    pid: npt.ArrayLike,
    hour: npt.ArrayLike,
    sizes: Sequence[int] = LOCAL_PATIENTS,
    *,
    alert_rate: float | None = None,
    evaluation_fraction: float = 0.3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The adapted model's figures on the same held-out local patients after adapting on
    ``n`` labelled local patients, for each ``n`` of ``sizes`` that the site has (0: silent
    mode, the threshold reset on the adaptation patients' scores without their labels), and
    on every one of them when the site has fewer than the largest size (a small site's curve
    ends at all it has)."""
    yy, pp, hh = np.asarray(y, np.int64), np.asarray(pid), np.asarray(hour, np.int64)
    rate = _target_rate(model, alert_rate)
    known = yy >= 0
    pool, eval_ids = _split(pp[known], yy[known], evaluation_fraction, seed)
    order = np.random.default_rng(seed + 1).permutation(pool)
    p = model.predict_proba(X)
    out = []
    fit = [n for n in sizes if n <= order.size]
    if order.size < max(sizes, default=0) and order.size not in fit:
        fit.append(int(order.size))
    for n in fit:
        if n == 0:  # silent mode: no labels, the threshold from the whole pool's scores
            m = operating_point(model, silent_threshold(p[np.isin(pp, order)], rate))
            ev = known & np.isin(pp, eval_ids)
            fig = _figures(Rows(pp[ev], hh[ev], yy[ev], p[ev], p[ev] >= m.threshold_),
                           model.task)  # fmt: skip
            out.append({"local_patients": 0, "chosen": "silent threshold", **fig})
            continue
        got = _compare(model, X, yy, pp, hh, p, rate, order[:n], eval_ids, {})
        out.append({"local_patients": n, "chosen": got.chosen, **got.candidates[got.chosen]})
    return out


__all__ = [
    "LOCAL_PATIENTS",
    "Adaptation",
    "AdaptationError",
    "adapt",
    "learning_curve",
    "operating_point",
    "silent_threshold",
]
