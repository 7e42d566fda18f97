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
interval no wider than 0.2). With a sepsis model, a window's Challenge utility more than
``max_utility_drop`` below the development utility is a breach too.

Two questions are kept apart, each window answering both: **has the population changed?** —
the share of hours the calibrated shift measure flags (about 1 % like the training data's; past
``max_flag_rate`` it changed), the alert rate against the model's development rate (outside
``alert_rate_range`` times it, the ward's burden changed), and more than ``max_drifted_features``
of the patient's own features (not the process features, :func:`vitaltwin.risk.process_features`,
which move with every change of routine) with PSI above ``psi_major``; and **has performance
dropped?** — the breaches above, judged only where outcomes exist. A changed population with
performance holding is *investigate* (check the case mix, the feeds, the alert burden); a drop
is *retrain* or *investigate* as above. A model flagged *retrain* cannot be promoted over a
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
from vitaltwin.risk._features import process_features
from vitaltwin.risk._model import RiskModel, bin_fractions
from vitaltwin.risk._tasks import risk_task
from vitaltwin.risk._utility import normalized_utility

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
    max_flag_rate: float = 0.03
    """Share of hours the shift measure may flag before the population counts as changed
    (three times the rate on data like the training data's)."""
    alert_rate_range: tuple[float, float] = (0.5, 2.0)
    """The window's alert rate relative to the development rate, outside which the burden
    changed."""
    max_utility_drop: float = 0.1
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
    alert_rate: float = float("nan")
    flag_rate: float = float("nan")
    utility: float = float("nan")
    population: str = "stable"  # "stable" | "changed: <why>"
    performance: str = "not judged"  # "holds" | "dropped: <why>" | "not judged"


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

    @property
    def population_changed(self) -> bool:
        return any(w.population != "stable" for w in self.windows)

    @property
    def performance_dropped(self) -> bool:
        return any(w.performance.startswith("dropped") for w in self.windows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "reference_auroc": self.reference_auroc,
            "decision": self.decision,
            "population_changed": self.population_changed,
            "performance_dropped": self.performance_dropped,
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
    reference_utility: float | None = None,
    alerts: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Performance and calibration of one window, with their intervals and the actions."""
    before = len(r.actions)
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
    if reference_utility is not None and alerts is not None:
        r.utility = normalized_utility(patient, y, alerts.astype(np.int8))
        if reference_utility - r.utility > policy.max_utility_drop:
            r.actions.append(
                f"investigate: utility {r.utility:.3f} is {reference_utility - r.utility:.3f} "
                f"below the development {reference_utility:.3f} (limit {policy.max_utility_drop})"
            )
    new = [a.split(": ", 1)[1] for a in r.actions[before:]]
    r.performance = f"dropped: {'; '.join(new)}" if new else "holds"


def monitor(
    model: RiskModel,
    features: pd.DataFrame,
    y: npt.NDArray[np.int64],
    window: npt.NDArray[Any],
    patient: npt.NDArray[Any],
    reference_auroc: float,
    model_version: str = "",
    policy: RetrainingPolicy = RetrainingPolicy(),
    reference_utility: float | None = None,
) -> MonitoringReport:
    """Apply ``policy`` to each time window (``window``: a label per row, in time order;
    ``patient``: the stay of each row, each stay's rows contiguous, the unit of the
    bootstrap). ``reference_utility``: the development utility of a sepsis model (its
    window utility is then judged too)."""
    p = model.predict_proba(features)
    alerts_all = p >= model.threshold_
    flags_all = model.low_confidence(features)
    dev_rate = getattr(model, "alert_rate_", None)
    utility_task = risk_task(model.task).utility
    process = set(process_features(model.reference_.bins))
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
        r.alert_rate = float(alerts_all[sel].mean())
        r.flag_rate = float(flags_all[sel].mean())
        if pos >= policy.min_positive and pos < yy.size:
            aa = alerts_all[sel][ok]
            ref_u = reference_utility if utility_task else None
            _judge(r, yy, pp, pt, reference_auroc, policy, ref_u, aa)
        else:
            r.notes.append(
                f"{pos} positive hours (< {policy.min_positive}): performance not judged"
            )
        changed = []
        if r.flag_rate > policy.max_flag_rate:
            changed.append(f"{r.flag_rate:.1%} of hours unlike the training data "
                           f"(limit {policy.max_flag_rate:.0%})")  # fmt: skip
        lo, hi = policy.alert_rate_range
        if dev_rate and not lo <= r.alert_rate / dev_rate <= hi:
            changed.append(f"alert rate {r.alert_rate:.3f} vs {dev_rate:.3f} in development")
        patient_drift = [c for c in drifted if c not in process]
        if len(patient_drift) > policy.max_drifted_features:
            changed.append(f"{len(patient_drift)} patient features with PSI > {policy.psi_major}")
        if changed:
            r.population = f"changed: {'; '.join(changed)}"
            r.actions.append(f"investigate: population changed ({'; '.join(changed)}); "
                             f"performance {r.performance.split(':')[0]}")  # fmt: skip
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
