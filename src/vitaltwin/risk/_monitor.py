"""Monitoring a deployed risk model: input drift, performance and calibration over time windows,
and the retraining policy that acts on them.

Input drift is the population stability index per feature over the training deciles (plus a
bin for missing values): ``PSI = sum (a - e) ln(a / e)`` with ``e`` the training fraction and
``a`` the window's (Yurdakul B, "Statistical properties of population stability index", PhD
thesis, Western Michigan University, 2018: PSI < 0.1 no shift, 0.1-0.25 moderate, > 0.25 major).

Retraining policy (:class:`RetrainingPolicy`, enforced by :func:`monitor`, written out in the
README): in a window with at least ``min_positive`` positive hours, the AUROC and the
calibration slope are estimated with 95 % percentile intervals from ``n_boot`` bootstrap
resamples of the window's *patients* (hours of one stay are not independent). A *breach* is an
AUROC more than ``max_auroc_drop`` below the model's development AUROC or a calibration slope
outside ``slope_range``. It triggers *retrain* when the whole interval lies beyond the limit (the
window shows the model has degraded), and *investigate* when only the point estimate does (the
window cannot tell a degraded model from sampling noise; a few dozen septic stays estimate a
slope poorly, and Riley RD et al., "Minimum sample size for external validation of a clinical
prediction model with a binary outcome", Stat Med 40:4230-4251, 2021, ask for a slope's
interval no wider than 0.2). More than ``max_drifted_features`` features with PSI above
``psi_major`` trigger *investigate*. A model flagged *retrain* cannot be promoted over a
challenger that is not (:func:`may_promote`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import roc_auc_score

from vitaltwin.risk._evaluate import calibration, patient_bootstrap
from vitaltwin.risk._model import RiskModel, bin_fractions

PSI_FLOOR = 1e-4  # fractions are floored so an empty bin does not make PSI infinite


def psi(expected: npt.NDArray[np.float64], actual: npt.NDArray[np.float64]) -> float:
    e = np.maximum(expected, PSI_FLOOR)
    a = np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class RetrainingPolicy:
    max_auroc_drop: float = 0.05
    slope_range: tuple[float, float] = (0.8, 1.2)
    psi_major: float = 0.25
    max_drifted_features: int = 10
    min_positive: int = 50
    n_boot: int = 200
    seed: int = 0


@dataclass
class WindowReport:
    window: str
    rows: int
    positives: int
    auroc: float
    calibration_slope: float
    calibration_intercept: float
    drifted_features: list[str]
    auroc_ci95: tuple[float, float] = (float("nan"), float("nan"))
    slope_ci95: tuple[float, float] = (float("nan"), float("nan"))
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class MonitoringReport:
    model_version: str
    reference_auroc: float
    policy: RetrainingPolicy
    windows: list[WindowReport]
    psi: pd.DataFrame  # features x windows

    @property
    def decision(self) -> str:
        acts = {a.split(":")[0] for w in self.windows for a in w.actions}
        return "retrain" if "retrain" in acts else ("investigate" if acts else "ok")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "reference_auroc": self.reference_auroc,
            "decision": self.decision,
            "policy": vars(self.policy),
            "windows": [vars(w) for w in self.windows],
        }


def _action(sure: bool, breach: str) -> str:
    """The policy's action on a breach: retrain when its whole interval is past the limit."""
    if sure:
        return f"retrain: {breach}"
    return f"investigate: {breach}; the interval reaches the limit"


def _judge(
    r: WindowReport,
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.float64],
    patient: npt.NDArray[Any],
    reference_auroc: float,
    policy: RetrainingPolicy,
) -> None:
    """Performance and calibration of one window, with their intervals and the actions."""
    r.auroc = float(roc_auc_score(y, p))
    r.calibration_intercept, r.calibration_slope = calibration(y, p)
    ci = patient_bootstrap(
        patient,
        y,
        {
            "auroc": lambda i, _: roc_auc_score(y[i], p[i]),
            "slope": lambda i, _: calibration(y[i], p[i])[1],
        },
        policy.n_boot,
        policy.seed,
    )
    nan = float("nan")  # no resample held both classes
    a_lo, a_hi = ci.get("auroc", [nan, nan])
    s_lo, s_hi = ci.get("slope", [nan, nan])
    r.auroc_ci95, r.slope_ci95 = (a_lo, a_hi), (s_lo, s_hi)
    drop = reference_auroc - r.auroc
    if drop > policy.max_auroc_drop:
        r.actions.append(
            _action(
                # the interval's upper end still too low: degraded beyond sampling noise
                reference_auroc - a_hi > policy.max_auroc_drop,
                f"AUROC {r.auroc:.3f} (95% CI {a_lo:.3f}-{a_hi:.3f}) is {drop:.3f} below the "
                f"development {reference_auroc:.3f} (limit {policy.max_auroc_drop})",
            )
        )
    lo, hi = policy.slope_range
    if not lo <= r.calibration_slope <= hi:
        r.actions.append(
            _action(
                s_hi < lo or s_lo > hi,
                f"calibration slope {r.calibration_slope:.2f} (95% CI {s_lo:.2f}-{s_hi:.2f}) "
                f"outside [{lo}, {hi}]",
            )
        )


def monitor(
    model: RiskModel,
    features: pd.DataFrame,
    y: npt.NDArray[np.int64],
    window: npt.NDArray[Any],
    patient: npt.NDArray[Any],
    reference_auroc: float,
    model_version: str = "",
    policy: RetrainingPolicy = RetrainingPolicy(),
) -> MonitoringReport:
    """Apply ``policy`` to each time window (``window``: a label per row, in time order;
    ``patient``: the stay of each row, each stay's rows contiguous, the unit of the
    bootstrap)."""
    p = model.predict_proba(features)
    ref = model.reference_
    labels = list(dict.fromkeys(window.tolist()))
    psi_table = pd.DataFrame(index=list(ref.bins), columns=[str(w) for w in labels], dtype=float)
    reports = []
    for w in labels:
        sel = window == w
        for c, edges in ref.bins.items():
            frac = bin_fractions(features.loc[sel, c].to_numpy(np.float64), np.asarray(edges))
            psi_table.loc[c, str(w)] = psi(np.asarray(ref.fractions[c]), frac)
        yy, pp, pt = y[sel], p[sel], patient[sel]
        ok = yy >= 0
        yy, pp, pt = yy[ok], pp[ok], pt[ok]
        pos = int(yy.sum())
        drifted = psi_table.index[psi_table[str(w)] > policy.psi_major].tolist()
        r = WindowReport(
            str(w), int(yy.size), pos, float("nan"), float("nan"), float("nan"), drifted
        )
        if pos >= policy.min_positive and pos < yy.size:
            _judge(r, yy, pp, pt, reference_auroc, policy)
        else:
            r.notes.append(
                f"{pos} positive hours (< {policy.min_positive}): performance not judged"
            )
        if len(drifted) > policy.max_drifted_features:
            r.actions.append(f"investigate: {len(drifted)} features with PSI > {policy.psi_major}")
        reports.append(r)
    return MonitoringReport(model_version, reference_auroc, policy, reports, psi_table)


def may_promote(champion: MonitoringReport, challenger: MonitoringReport) -> tuple[bool, str]:
    """The policy's promotion rule: a challenger replaces the champion only if it is not itself
    flagged for retraining on the same windows and its mean AUROC is not lower."""
    if challenger.decision == "retrain":
        return False, "the challenger itself breaches the retraining policy"
    a = np.nanmean([w.auroc for w in champion.windows])
    b = np.nanmean([w.auroc for w in challenger.windows])
    if b < a:
        return False, f"challenger mean AUROC {b:.3f} < champion {a:.3f}"
    return True, f"challenger mean AUROC {b:.3f} >= champion {a:.3f}"
