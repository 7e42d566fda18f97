"""Metrics of a risk model as a clinical prediction model is reported.

Discrimination (AUROC, AUPRC, hourly and per patient), calibration (intercept and slope of the
logistic recalibration, Cox DR, Biometrika 45:562-565, 1958; reliability curve), the operating
point (sensitivity, specificity, PPV, alerts per patient-day, lead time before onset), the
decision curve (net benefit, Vickers AJ & Elkin EB, Med Decis Making 26:565-574, 2006), the
PhysioNet 2019 utility, and 95 % percentile bootstrap intervals resampling patients (rows of a
patient are not independent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, roc_auc_score

from vitaltwin.risk._utility import DT_OPTIMAL, patient_blocks, patient_utilities

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Rows:
    """Scored rows: patient (contiguous, time order), hour, label (0/1), score, alert."""

    patient: npt.NDArray[Any]
    hour: npt.NDArray[np.int64]
    y: npt.NDArray[np.int64]
    score: FloatArray
    alert: npt.NDArray[np.bool_]

    def take(self, idx: npt.NDArray[np.int64]) -> Rows:
        return Rows(
            self.patient[idx], self.hour[idx], self.y[idx], self.score[idx], self.alert[idx]
        )


def calibration(y: npt.NDArray[np.int64], p: FloatArray) -> tuple[float, float]:
    """Calibration intercept (calibration-in-the-large: the offset ``a`` in
    ``logit P(y) = a + logit p``) and slope ``b`` of ``logit P(y) = a' + b logit p``. A perfectly
    calibrated model has 0 and 1."""
    lp = _logit(p)
    yy = y.astype(np.float64)

    def nll(theta: FloatArray, slope: bool) -> float:
        z = theta[0] + (theta[1] if slope else 1.0) * lp
        return float(np.sum(np.logaddexp(0.0, z) - yy * z))

    a = minimize(nll, np.zeros(1), args=(False,), method="BFGS").x[0]
    b = minimize(nll, np.array([0.0, 1.0]), args=(True,), method="BFGS").x[1]
    return float(a), float(b)


def recalibration(y: npt.NDArray[np.int64], p: FloatArray) -> tuple[float, float]:
    """Platt-style logistic recalibration ``logit p' = a + b logit p`` fitted by maximum
    likelihood (Platt J, Advances in Large Margin Classifiers, MIT Press, 1999): ``(a, b)``."""
    lp = _logit(p)
    yy = y.astype(np.float64)

    def nll(theta: FloatArray) -> float:
        z = theta[0] + theta[1] * lp
        return float(np.sum(np.logaddexp(0.0, z) - yy * z))

    a, b = minimize(nll, np.array([0.0, 1.0]), method="BFGS").x
    return float(a), float(b)


def _logit(p: FloatArray) -> FloatArray:
    eps = 1e-6
    q = np.clip(p, eps, 1 - eps)
    out: FloatArray = np.log(q / (1 - q))
    return out


def net_benefit(
    y: npt.NDArray[np.int64], p: FloatArray, thresholds: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Net benefit of acting on ``p >= t`` and of acting on everyone, at each threshold."""
    n = y.size
    prev = y.mean()
    nb = np.array(
        [
            np.sum((p >= t) & (y == 1)) / n - np.sum((p >= t) & (y == 0)) / n * t / (1 - t)
            for t in thresholds
        ]
    )
    nb_all = prev - (1 - prev) * thresholds / (1 - thresholds)
    return nb, nb_all


def _lead_times(rows: Rows) -> tuple[float, float]:
    """For patients with a sepsis onset (first label + 6 h): median hours from the first alert
    to onset among those alerted at or before onset, and the fraction so alerted."""
    starts, lengths = patient_blocks(rows.patient)
    leads = []
    n_septic = 0
    for s, ln in zip(starts, lengths, strict=True):
        y = rows.y[s : s + ln]
        if not y.any():
            continue
        n_septic += 1
        onset = rows.hour[s + int(np.argmax(y))] - DT_OPTIMAL
        a = rows.alert[s : s + ln] & (rows.hour[s : s + ln] <= onset)
        if a.any():
            leads.append(onset - rows.hour[s + int(np.argmax(a))])
    if not n_septic:
        return float("nan"), float("nan")
    med = float(np.median(leads)) if leads else float("nan")
    return med, len(leads) / n_septic


def _alerts_per_day(rows: Rows) -> float:
    """Alert episodes (an alert hour after a non-alert hour, or first hour) per patient-day."""
    first = np.concatenate([[True], rows.patient[1:] != rows.patient[:-1]])
    prev = np.concatenate([[False], rows.alert[:-1]])
    onsets = rows.alert & (first | ~prev)
    return float(onsets.sum() / (rows.y.size / 24.0))


def _per_patient(rows: Rows) -> tuple[npt.NDArray[np.int64], FloatArray]:
    starts, _ = patient_blocks(rows.patient)
    return (
        np.maximum.reduceat(rows.y, starts).astype(np.int64),
        np.maximum.reduceat(rows.score, starts),
    )


def discrimination(rows: Rows) -> dict[str, float]:
    yp, sp = _per_patient(rows)
    return {
        "auroc": float(roc_auc_score(rows.y, rows.score)),
        "auprc": float(average_precision_score(rows.y, rows.score)),
        "auroc_patient": float(roc_auc_score(yp, sp)),
        "auprc_patient": float(average_precision_score(yp, sp)),
    }


def auroc_by_negatives(rows: Rows) -> dict[str, float]:
    """The hourly AUROC split by where the negative hours come from: positive hours against the
    hours of patients who never become septic, and against the earlier (label 0) hours of
    patients who do. The second compares mostly *across* septic stays (one stay's positive hours
    against another's earlier hours); it bounds the pooled AUROC.

    ``auroc_within_stay`` is the mean, over septic stays that have earlier hours, of the AUROC of
    each stay's positive hours against its own earlier hours (``septic_stays_timed`` of them):
    how well the model times the onset inside one stay, which the pooled comparison hides.

    ``auroc_timing_ceiling`` measures the bound: the pooled AUROC the same scores would reach
    if every septic patient's earlier hours were ranked below all positive hours (perfect timing
    within each septic stay, the model's ranking of everything else unchanged)."""
    starts, lengths = patient_blocks(rows.patient)
    septic = np.repeat(np.maximum.reduceat(rows.y, starts) > 0, lengths)
    pos, neg = rows.y == 1, rows.y == 0
    before = neg & septic
    # perfect timing: each septic stay's earlier hours scored below every other hour
    timed = np.where(before, np.min(rows.score, initial=0.0) - 1.0, rows.score)
    out = {}
    for name, sel_neg, score in (
        ("auroc_vs_non_septic", neg & ~septic, rows.score),
        ("auroc_vs_septic_before", before, rows.score),
        ("auroc_timing_ceiling", neg, timed),
    ):
        sel = pos | sel_neg
        ok = pos.any() and sel_neg.any()
        out[name] = float(roc_auc_score(rows.y[sel], score[sel])) if ok else float("nan")
    per_stay = [
        roc_auc_score(rows.y[s : s + n], rows.score[s : s + n])
        for s, n in zip(starts, lengths, strict=True)
        if 0 < rows.y[s : s + n].sum() < n
    ]
    out["auroc_within_stay"] = float(np.mean(per_stay)) if per_stay else float("nan")
    out["septic_stays_timed"] = float(len(per_stay))
    return out


def _normalized(total: FloatArray) -> float:
    """Normalized utility from summed (model, never-predict, ideal) utilities."""
    return float((total[0] - total[1]) / (total[2] - total[1]))


Statistic = Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], float]
"""A figure of resampled rows: from the row indices and the picked patients' indices."""


def evaluate(
    rows: Rows,
    *,
    sepsis: bool,
    probabilities: bool = True,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """All figures of one model on one set of rows (``sepsis``: add the Challenge utility and
    lead times; ``probabilities``: scores are probabilities, so calibration applies)."""
    y, p, a = rows.y, rows.score, rows.alert
    tp = int(np.sum(a & (y == 1)))
    fp = int(np.sum(a & (y == 0)))
    fn = int(np.sum(~a & (y == 1)))
    tn = int(np.sum(~a & (y == 0)))
    out: dict[str, Any] = {
        "rows": int(y.size),
        "patients": int(np.unique(rows.patient).size),
        "prevalence": float(y.mean()),
        **discrimination(rows),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "ppv": tp / max(tp + fp, 1) if tp + fp else float("nan"),
        "alerts_per_patient_day": _alerts_per_day(rows),
    }
    if probabilities:
        out["calibration_intercept"], out["calibration_slope"] = calibration(y, p)
        frac, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
        out["reliability"] = {"mean_predicted": mean_pred.tolist(), "observed": frac.tolist()}
        ts = np.linspace(0.01, 0.5, 50)
        nb, nb_all = net_benefit(y, p, ts)
        out["decision_curve"] = {
            "threshold": ts.tolist(),
            "net_benefit": nb.tolist(),
            "treat_all": nb_all.tolist(),
        }
    stats: dict[str, Statistic] = {
        "auroc": lambda i, _: roc_auc_score(y[i], p[i]),
        "auprc": lambda i, _: average_precision_score(y[i], p[i]),
        "sensitivity": lambda i, _: np.mean(a[i][y[i] == 1]),
    }
    if sepsis:
        # per patient: model, never-predict and ideal utilities (additive over patients)
        parts = patient_utilities(rows.patient, rows.y, rows.alert.astype(np.int8))
        out["utility"] = _normalized(parts.sum(axis=0))
        stats["utility"] = lambda _, pick: _normalized(parts[pick].sum(axis=0))
        out["median_lead_time_h"], out["detected_before_onset"] = _lead_times(rows)
        out.update(auroc_by_negatives(rows))
    out["ci95"] = patient_bootstrap(rows.patient, y, stats, n_boot, seed)
    return out


def patient_bootstrap(
    patient: npt.NDArray[Any],
    y: npt.NDArray[np.int64],
    statistics: Mapping[str, Statistic],
    n_boot: int,
    seed: int,
) -> dict[str, list[float]]:
    """95 % percentile intervals of ``statistics`` over ``n_boot`` resamples of the patients
    (each one's rows contiguous) with replacement; resamples holding one class are skipped."""
    if n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    starts, lengths = patient_blocks(patient)
    k = starts.size
    values: dict[str, list[float]] = {m: [] for m in statistics}
    for _ in range(n_boot):
        pick = rng.integers(0, k, k)
        idx = np.concatenate([np.arange(starts[i], starts[i] + lengths[i]) for i in pick])
        if y[idx].min() == y[idx].max():
            continue
        for m, f in statistics.items():
            values[m].append(float(f(idx, pick)))
    return {
        m: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
        for m, v in values.items()
        if v
    }


__all__ = [
    "Rows",
    "auroc_by_negatives",
    "calibration",
    "discrimination",
    "evaluate",
    "net_benefit",
    "patient_bootstrap",
    "recalibration",
]
