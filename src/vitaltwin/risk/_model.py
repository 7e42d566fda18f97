"""LightGBM risk estimators for sepsis and hemodynamic deterioration.

:class:`RiskModel` follows scikit-learn's conventions: hyperparameters in ``__init__`` only,
learned attributes end in ``_``, inputs validated once in :meth:`RiskModel.fit`. Gradient-boosted
trees (Ke G et al., "LightGBM: a highly efficient gradient boosting decision tree", NeurIPS 2017)
handle the missing values of sparse ICU records natively (a missing value takes the learned
default branch), so nothing is imputed.

Fitting is cross-fitted over the *training* patients (never rows of a patient on both sides of
a split): they are dealt into ``inner_folds`` groups, and each group's booster is trained on the
other groups. The boosters grow together (LightGBM's ``cv``) and stop at one round count, the
best of their *mean* validation AUROC: choosing the tuning parameter on the averaged
cross-validation curve (Hastie T, Tibshirani R, Friedman J, The Elements of Statistical
Learning, 2nd ed., Springer 2009, section 7.10) rather than per fold, where a single fold's
noisy curve had stopped boosters of one ensemble anywhere from 90 to 489 rounds. Every training
patient thus gets an out-of-fold score, and those scores choose a logistic recalibration (Platt
1999: early stopping on AUROC leaves the raw probabilities under-dispersed) and the operating
threshold: for sepsis the one that maximizes the PhysioNet 2019 normalized utility, for
deterioration the one that maximizes Youden's J (sensitivity + specificity - 1), each averaged
over patient-bootstrap resamples (:func:`best_threshold`). A new row's score is the boosters'
mean on the logit scale, then recalibrated. No test data takes part. This is cross-fitting as
in Chernozhukov V et al., "Double/debiased machine learning", Econometrics Journal 21:C1-C68,
2018, with the fold models kept as a bagged ensemble (Breiman 1996), with heavy row and feature
subsampling (``bagging_fraction`` 0.3, ``feature_fraction`` 0.15). On the five development
folds of set A (raw features, sepsis), against per-fold early stopping, the common round count
moved the fold AUROC by +0.001 / -0.001 / +0.002 / -0.000 / -0.002 and the utility by +0.003 /
+0.004 / +0.006 / -0.007 / +0.001: no real difference in discrimination or calibration (fold
slopes 1.01 / 0.99 / 1.07 / 1.02 / 1.12 against 1.02 / 1.01 / 1.06 / 1.02 / 1.15), with one
round count per ensemble (130 to 216 over the folds, against 107 to 327 across members).

Optionally a second stage (``residual_features``, the hybrid model's twin estimates): the first
stage is fitted on the other features as above; its out-of-fold logit, recalibrated, is the
starting score (LightGBM ``init_score``) of a second cross-fitted ensemble on the residual
features alone, over the same inner folds and stopped the same way. This is stacked
generalization (Wolpert DH, Neural Networks 5:241-259, 1992) with the level-one learner boosting
the residual of the first stage: the second stage can only add what the residual features know
beyond the first stage's score, and when they know nothing it stops after a round or two and
leaves the score as it was. A new row's score is the first stage's mean logit, recalibrated,
plus the second stage's mean increment, recalibrated once more on the out-of-fold scores.

A fitted model can be continued at a new site (:meth:`RiskModel.continue_training`, the
"continued" candidate of :func:`vitaltwin.risk.adapt`): a third, *site* stage boosts from the
whole model's calibrated logit on the site's labelled patients (LightGBM ``init_score``),
cross-fitted over those patients' inner folds and stopped on their mean validation AUROC, with
small trees and a slow rate; the source boosters are kept unchanged. This is model updating by
extension (Steyerberg, *Clinical Prediction Models*, 2nd ed. 2019, ch. 20) in boosting's own
terms: with few local patients the site stage stops after a round or two and the score stays the
source model's, with more it learns what the site does differently.

Labels and the task-specific choices come from the task (:mod:`vitaltwin.risk._tasks`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score

from vitaltwin.risk._cohort import VARIABLE_NAMES
from vitaltwin.risk._evaluate import _logit, recalibration
from vitaltwin.risk._shift import ShiftReference
from vitaltwin.risk._tasks import TASKS, Task, risk_task
from vitaltwin.risk._utility import normalized_utility, patient_blocks, patient_utilities

FORMAT_VERSION = 4  # 3: second-stage (residual) boosters; 4: site-stage boosters
READABLE_FORMATS = (3, FORMAT_VERSION)
RANGE_FEATURES = (*VARIABLE_NAMES, "age_years")
"""The features the shift measure looks at (:class:`vitaltwin.risk.ShiftReference`): the
patient's measured values and age, not how often a unit measures them."""


class RiskModelError(ValueError):
    """Inputs a risk model cannot use; the message says which and why."""


def best_threshold(
    task: Task,
    patient: npt.NDArray[Any],
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.float64],
    n_candidates: int = 200,
    n_boot: int = 0,
    seed: int = 0,
) -> tuple[float, float]:
    """The operating threshold and its criterion value (the task's ``threshold_rule``: the
    Challenge utility for sepsis, Youden's J for deterioration) on the given rows (each
    patient's rows contiguous), over quantiles of ``p`` as candidates.

    ``n_boot = 0`` takes the candidate with the best criterion. With ``n_boot > 0`` the
    threshold is the mean of the best candidates of ``n_boot`` patient-bootstrap resamples:
    bagging the choice (Breiman L, "Bagging predictors", Machine Learning 24:123-140, 1996)
    steadies a maximum taken over a noisy curve, here a utility summed over a few hundred
    septic patients. The criterion value returned is the one at the chosen threshold."""
    cands = np.unique(np.quantile(p, np.linspace(0.0, 0.999, n_candidates)))
    starts, _ = patient_blocks(patient)
    by_utility = risk_task(task).threshold_rule == "utility"
    # per patient, per candidate: the additive parts of the criterion
    if by_utility:
        u_model = np.stack(
            [patient_utilities(patient, y, (p >= t).astype(np.int8))[:, 0] for t in cands], 1
        )
        base = patient_utilities(patient, y, np.zeros(y.size, np.int8))

        def criterion(w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            """``(resamples, candidates)`` from patient weights ``(resamples, patients)``."""
            u0 = w @ base[:, 1]
            out: npt.NDArray[np.float64] = (w @ u_model - u0[:, None]) / (w @ base[:, 2] - u0)[
                :, None
            ]
            return out
    else:
        alert = p[:, None] >= cands[None, :]
        pos, neg = y == 1, y == 0
        tp = np.add.reduceat(alert & pos[:, None], starts, axis=0).astype(np.float64)
        tn = np.add.reduceat(~alert & neg[:, None], starts, axis=0).astype(np.float64)
        n_pos = np.add.reduceat(pos, starts).astype(np.float64)
        n_neg = np.add.reduceat(neg, starts).astype(np.float64)

        def criterion(w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            with np.errstate(invalid="ignore", divide="ignore"):
                out: npt.NDArray[np.float64] = (
                    (w @ tp) / (w @ n_pos)[:, None] + (w @ tn) / (w @ n_neg)[:, None] - 1.0
                )
            return out

    full = criterion(np.ones((1, starts.size)))[0]
    if n_boot <= 0:
        k = int(np.argmax(full))
        return float(cands[k]), float(full[k])
    rng = np.random.default_rng(seed)
    w = rng.multinomial(starts.size, np.full(starts.size, 1.0 / starts.size), n_boot)
    crit = np.nan_to_num(criterion(w.astype(np.float64)), nan=-np.inf)
    t = float(np.mean(cands[np.argmax(crit, axis=1)]))
    # the criterion at the bagged threshold, on all rows
    k = int(np.searchsorted(cands, t, side="left"))
    if k < cands.size and cands[k] == t:
        return t, float(full[k])
    if by_utility:
        return t, normalized_utility(patient, y, (p >= t).astype(np.int8))
    return t, float(np.mean(p[y == 1] >= t) + np.mean(p[y == 0] < t) - 1.0)


@dataclass(frozen=True)
class FeatureReference:
    """What the training data looked like: per-feature ranges (low-confidence flags) and decile
    bins with their training fractions (population stability, :mod:`vitaltwin.risk._monitor`)."""

    low: dict[str, float]
    high: dict[str, float]
    bins: dict[str, list[float]]
    fractions: dict[str, list[float]]

    @classmethod
    def from_data(cls, X: pd.DataFrame) -> FeatureReference:
        low, high, bins, fracs = {}, {}, {}, {}
        for c in X.columns:
            v = X[c].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            if c in RANGE_FEATURES and v.size:
                low[c], high[c] = float(v.min()), float(v.max())
            edges = decile_edges(v)
            bins[c] = edges.tolist()
            fracs[c] = bin_fractions(X[c].to_numpy(dtype=np.float64), edges).tolist()
        return cls(low, high, bins, fracs)


def decile_edges(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The distinct deciles of the finite values ``v`` (none for no values): the bin edges of
    the population stability index."""
    v = v[np.isfinite(v)]
    out: npt.NDArray[np.float64] = (
        np.unique(np.quantile(v, np.linspace(0.1, 0.9, 9))) if v.size else np.array([])
    )
    return out


def bin_fractions(
    x: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Fractions of ``x`` in the bins cut at ``edges`` plus a last bin for missing values."""
    miss = ~np.isfinite(x)
    counts = np.bincount(np.searchsorted(edges, x[~miss], side="right"), minlength=len(edges) + 1)
    allc = np.append(counts, miss.sum()).astype(np.float64)
    out: npt.NDArray[np.float64] = allc / max(allc.sum(), 1.0)
    return out


class RiskModel(BaseEstimator):  # type: ignore[misc]
    """Cross-fitted ensemble of gradient-boosted trees, recalibrated and thresholded on the
    out-of-fold scores of all training patients.

    Learned attributes: ``boosters_`` (one per inner fold), ``iterations_`` (the rounds each
    keeps: the one count chosen on the mean validation AUROC), ``feature_names_``,
    ``recalibration_`` (intercept and slope on the logit scale), ``threshold_``,
    ``threshold_criterion_`` (utility or Youden's J at it), ``validation_auroc_`` (on the
    out-of-fold scores), ``oof_logit_`` (those scores before the recalibration, on the logit
    scale; after ``fit`` only, not saved), ``reference_``; with ``residual_features`` also
    ``residual_boosters_``, ``residual_iterations_`` and ``base_recalibration_`` (the first
    stage's, applied before the second stage adds its increment; ``(0, 1)`` without a second
    stage); ``site_boosters_`` and ``site_recalibration_`` after
    :meth:`continue_training` (empty and ``(0, 1)`` otherwise).
    """

    def __init__(
        self,
        *,
        task: Task = "sepsis",
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_data_in_leaf: int = 1000,
        feature_fraction: float = 0.15,
        bagging_fraction: float = 0.3,
        lambda_l2: float = 10.0,
        max_rounds: int = 3000,
        early_stopping_rounds: int = 200,
        inner_folds: int = 5,
        max_bin: int = 63,
        random_state: int = 0,
        threshold_bootstrap: int = 200,
        residual_features: tuple[str, ...] = (),
    ) -> None:
        self.task = task
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.inner_folds = inner_folds
        self.max_bin = max_bin
        self.random_state = random_state
        self.threshold_bootstrap = threshold_bootstrap
        self.residual_features = residual_features

    @classmethod
    def parse_params(cls, items: list[str]) -> dict[str, Any]:
        """Hyperparameters from ``NAME=VALUE`` strings (the command line's ``--param``), each
        value converted to the type of that hyperparameter's default; ``task`` and
        ``residual_features`` are not ones (the study sets them). Unknown names and values of
        the wrong type raise :class:`RiskModelError` naming the entry."""
        defaults = cls().get_params()
        defaults.pop("task")
        defaults.pop("residual_features")
        out: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            name, text = name.strip(), text.strip()
            if not sep or not name or not text:
                raise RiskModelError(f"model parameter {item!r}: expected NAME=VALUE")
            if name not in defaults:
                known = ", ".join(sorted(defaults))
                raise RiskModelError(
                    f"model parameter {item!r}: unknown name {name!r}; known: {known}"
                )
            kind = type(defaults[name])
            try:
                out[name] = kind(text)
            except ValueError as e:
                raise RiskModelError(
                    f"model parameter {item!r}: {text!r} is not a valid {kind.__name__}"
                ) from e
        return out

    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "auc",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "seed": self.random_state,
            "deterministic": True,
            "verbose": -1,
        }

    def fit(
        self,
        X: pd.DataFrame,
        y: npt.ArrayLike,
        patient: npt.ArrayLike,
        first_stage: RiskModel | None = None,
    ) -> RiskModel:
        """Fit on rows ``X`` with labels ``y`` (0/1; -1 rows are skipped) grouped by ``patient``
        (each patient's rows contiguous and in time order).

        ``first_stage``: a single-stage model already fitted on these rows with the same
        hyperparameters and the first stage's features; its boosters and out-of-fold logit are
        taken instead of fitting them again (they would come out identical)."""
        if self.task not in TASKS:
            raise RiskModelError(f"unknown task {self.task!r}; expected one of {list(TASKS)}")
        if self.inner_folds < 2:
            raise RiskModelError(f"inner_folds must be >= 2, got {self.inner_folds}")
        yk, pk, keep = self._labelled(X, y, patient, "training")
        splits = self._inner_splits(pk)
        missing = [c for c in self.residual_features if c not in X.columns]
        if missing:
            raise RiskModelError(f"residual features missing from X: {missing[:10]}")
        base = [str(c) for c in X.columns if c not in set(self.residual_features)]
        if not base:
            raise RiskModelError("every feature is a residual feature: the first stage has none")
        if first_stage is None:
            self.boosters_, oof = self._cross_fit(X[base].to_numpy(np.float32)[keep], yk, splits)
            logit_oof = _logit(oof)
        else:
            self._check_first_stage(first_stage, base, yk.size)
            self.boosters_, logit_oof = first_stage.boosters_, first_stage.oof_logit_
        self.base_recalibration_ = (0.0, 1.0)
        self.residual_boosters_: list[lgb.Booster] = []
        if self.residual_features:
            # the second stage boosts from the first stage's recalibrated out-of-fold logit
            self.base_recalibration_ = recalibration(yk, expit(logit_oof))
            init = self._recalibrated_logit(self.base_recalibration_, logit_oof)
            Xr = X[list(self.residual_features)].to_numpy(np.float32)[keep]
            self.residual_boosters_, increment = self._cross_fit(Xr, yk, splits, init=init)
            logit_oof = init + increment
        self.feature_names_ = [*base, *self.residual_features]
        self.site_boosters_: list[lgb.Booster] = []
        self.site_recalibration_ = (0.0, 1.0)
        self.oof_logit_: npt.NDArray[np.float64] = logit_oof
        self.recalibration_ = recalibration(yk, expit(logit_oof))
        p_oof = self._recalibrate(logit_oof)
        self.validation_auroc_ = float(roc_auc_score(yk, p_oof))
        self.threshold_, self.threshold_criterion_ = best_threshold(
            self.task, pk, yk, p_oof, n_boot=self.threshold_bootstrap, seed=self.random_state
        )
        self.reference_ = FeatureReference.from_data(X[keep])
        # the share of hours that alerted in development: what silent mode at a new site
        # resets the threshold to (:func:`vitaltwin.risk.adapt`)
        self.alert_rate_: float | None = float(np.mean(p_oof >= self.threshold_))
        measured = [c for c in RANGE_FEATURES if c in X.columns]
        self.shift_: ShiftReference | None = ShiftReference.from_data(
            X[keep], pk, measured, seed=self.random_state
        )
        return self

    def _labelled(
        self, X: pd.DataFrame, y: npt.ArrayLike, patient: npt.ArrayLike, whose: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[np.bool_]]:
        """The labelled rows' labels and patients, and which rows they are; RiskModelError for
        rows that cannot be fitted (``whose``: the rows' name in the message)."""
        yy, pid = np.asarray(y, dtype=np.int64), np.asarray(patient)
        if not (len(X) == yy.size == pid.size):
            raise RiskModelError(
                f"X, y and patient must have one entry per row: {len(X)}, {yy.size}, {pid.size}"
            )
        if not np.isin(yy, (-1, 0, 1)).all():
            raise RiskModelError("labels must be 0, 1 or -1 (not eligible)")
        keep = yy >= 0
        yk, pk = yy[keep], pid[keep]
        if yk.min(initial=1) == yk.max(initial=0):
            raise RiskModelError(f"{self.task}: {whose} labels hold a single class")
        n = np.unique(pk).size
        if n < self.inner_folds:
            raise RiskModelError(f"{n} {whose} patients cannot fill {self.inner_folds} inner folds")
        return yk, pk, keep

    def _inner_splits(
        self, pk: npt.NDArray[Any]
    ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """Training and validation rows of each inner fold: the patients of rows ``pk`` dealt
        round-robin in a random order."""
        patients = np.unique(pk)
        rng = np.random.default_rng(self.random_state)
        fold_of = np.empty(patients.size, np.int64)
        fold_of[rng.permutation(patients.size)] = np.arange(patients.size) % self.inner_folds
        inner = fold_of[np.searchsorted(patients, pk)]
        return [
            (np.flatnonzero(inner != j), np.flatnonzero(inner == j))
            for j in range(self.inner_folds)
        ]

    def continue_training(
        self,
        X: pd.DataFrame,
        y: npt.ArrayLike,
        patient: npt.ArrayLike,
        *,
        learning_rate: float = 0.02,
        num_leaves: int = 7,
        min_data_in_leaf: int | None = None,
        early_stopping_rounds: int = 100,
    ) -> RiskModel:
        """A copy of this model continued on a new site's labelled rows ``X``, ``y`` (0/1; -1
        skipped), ``patient``: a site stage of boosters starting from this model's calibrated
        logit (LightGBM ``init_score``), cross-fitted over the site patients' inner folds; its
        out-of-fold scores recalibrate it and choose its threshold (the task's criterion) and
        development alert rate. Small trees (``num_leaves``), a slow ``learning_rate`` and
        leaves of at least ``min_data_in_leaf`` rows (default: 1 % of the site's rows, at
        least 20). The source model is left as it was and its boosters are shared."""
        Xn = self._check(X)
        if self.site_boosters_:
            raise RiskModelError(
                "this model has been continued at a site already; continue its source"
            )
        yk, pk, keep = self._labelled(X, y, patient, "site")
        init = self._recalibrated_logit(self.recalibration_, self._boosted_logit(Xn[keep]))
        leaf = min_data_in_leaf if min_data_in_leaf is not None else max(20, yk.size // 100)
        params = {"learning_rate": learning_rate, "num_leaves": num_leaves,
                  "min_data_in_leaf": leaf}  # fmt: skip
        out = copy.copy(self)
        out.site_boosters_, increment = self._cross_fit(
            Xn[keep], yk, self._inner_splits(pk), init=init, params=params,
            stopping=early_stopping_rounds,
        )  # fmt: skip
        out.site_recalibration_ = self.recalibration_
        logit = init + increment
        out.recalibration_ = recalibration(yk, expit(logit))
        p = out._recalibrate(logit)
        out.validation_auroc_ = float(roc_auc_score(yk, p))
        out.threshold_, out.threshold_criterion_ = best_threshold(
            self.task, pk, yk, p, n_boot=self.threshold_bootstrap, seed=self.random_state
        )
        out.alert_rate_ = float(np.mean(p >= out.threshold_))
        return out

    def _check_first_stage(self, first: RiskModel, base: list[str], n_rows: int) -> None:
        if not hasattr(first, "oof_logit_"):
            raise RiskModelError("first_stage must be fitted in this session (not loaded)")
        if first.residual_features or first.get_params() != {
            **self.get_params(),
            "residual_features": (),
        }:
            raise RiskModelError("first_stage has other hyperparameters than this model")
        if first.feature_names_ != base or first.oof_logit_.size != n_rows:
            raise RiskModelError("first_stage was fitted on other features or rows")

    def _cross_fit(
        self,
        Xn: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64],
        splits: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
        init: npt.NDArray[np.float64] | None = None,
        params: Mapping[str, Any] | None = None,
        stopping: int | None = None,
    ) -> tuple[list[lgb.Booster], npt.NDArray[np.float64]]:
        """One booster per inner fold, grown together and cut at the round count with the best
        *mean* validation AUROC, and every row's out-of-fold output: a probability, or with
        ``init`` (a logit per row that boosting starts from) the boosters' raw-score increment
        on top of it. ``params`` override the model's hyperparameters, ``stopping`` its early
        stopping rounds (the site stage's)."""
        data = lgb.Dataset(Xn, y, init_score=init, params={"max_bin": self.max_bin})
        stop = self.early_stopping_rounds if stopping is None else stopping
        cv = lgb.cv(
            {**self._lgb_params(), **(params or {})},
            data,
            num_boost_round=self.max_rounds,
            folds=splits,
            stratified=False,
            callbacks=[lgb.early_stopping(stop, verbose=False)],
            return_cvbooster=True,
        )
        cvb = cast(lgb.CVBooster, cv["cvbooster"])  # there with return_cvbooster=True
        rounds = int(cvb.best_iteration)
        oof = np.zeros(y.size)
        boosters: list[lgb.Booster] = []
        for booster, (_, va) in zip(cvb.boosters, splits, strict=True):
            oof[va] = booster.predict(Xn[va], num_iteration=rounds, raw_score=init is not None)
            # keep only the chosen rounds (the saved text holds those alone)
            boosters.append(lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds)))
        return boosters, oof

    @staticmethod
    def _recalibrated_logit(
        ab: tuple[float, float], logit: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = ab[0] + ab[1] * logit
        return out

    @property
    def iterations_(self) -> list[int]:
        """The rounds each booster keeps (one count for all, chosen on the mean validation
        AUROC of the inner folds)."""
        return [int(b.current_iteration()) for b in self.boosters_]

    @property
    def residual_iterations_(self) -> list[int]:
        """The rounds each second-stage booster keeps (empty without ``residual_features``)."""
        return [int(b.current_iteration()) for b in self.residual_boosters_]

    @property
    def site_iterations_(self) -> list[int]:
        """The rounds each site-stage booster keeps (empty before :meth:`continue_training`)."""
        return [int(b.current_iteration()) for b in self.site_boosters_]

    def _check(self, X: pd.DataFrame) -> npt.NDArray[np.float32]:
        if not hasattr(self, "boosters_"):
            raise RiskModelError("this RiskModel is not fitted yet; call fit first")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise RiskModelError(f"features missing from the input: {missing[:10]}")
        return X[self.feature_names_].to_numpy(dtype=np.float32)

    def _recalibrate(self, logit: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Recalibrated probabilities from boosted scores on the logit scale."""
        out: npt.NDArray[np.float64] = expit(self._recalibrated_logit(self.recalibration_, logit))
        return out

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Probability of the positive class for each row (recalibrated)."""
        return self._recalibrate(self._boosted_logit(self._check(X)))

    def _later_stages(
        self,
    ) -> list[tuple[tuple[float, float], list[lgb.Booster], slice]]:
        """The stages after the first, in order: each one's recalibration of the score it
        starts from, its boosters and the feature columns they read (the second stage its
        residual features, the site stage all)."""
        n_base = len(self.feature_names_) - len(self.residual_features)
        stages = []
        if self.residual_boosters_:
            stages.append((self.base_recalibration_, self.residual_boosters_, slice(n_base, None)))
        if self.site_boosters_:
            stages.append((self.site_recalibration_, self.site_boosters_, slice(None)))
        return stages

    def _boosted_logit(self, Xn: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Every stage's logit, before the final recalibration: the first stage's inner-fold
        boosters averaged on the logit scale (each one's probabilities are what the
        recalibration was fitted to), then each later stage's mean increment added to the
        recalibrated score before it."""
        n_base = len(self.feature_names_) - len(self.residual_features)
        logits = [_logit(np.asarray(b.predict(Xn[:, :n_base]), np.float64)) for b in self.boosters_]
        logit: npt.NDArray[np.float64] = np.mean(logits, axis=0)
        for ab, boosters, cols in self._later_stages():
            increments = [b.predict(Xn[:, cols], raw_score=True) for b in boosters]
            logit = self._recalibrated_logit(ab, logit)
            logit = logit + np.mean(np.asarray(increments, np.float64), axis=0)
        return logit

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Alerts: probability at or above the operating threshold."""
        return self.predict_proba(X) >= self.threshold_

    def low_confidence(self, X: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Rows unlike the training data: the calibrated shift measure's flag
        (:class:`vitaltwin.risk.ShiftReference`: about 1 % of hours like the training data's);
        for a model saved before it, an input outside the range seen in training."""
        shift: ShiftReference | None = getattr(self, "shift_", None)
        if shift is not None:
            return shift.flag(X)
        flag = np.zeros(len(X), bool)
        for c, lo in self.reference_.low.items():
            v = X[c].to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"):
                flag |= (v < lo) | (v > self.reference_.high[c])
        return flag

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each feature's contribution to each row's score on the logit scale, before the
        recalibration: LightGBM's own SHAP values (TreeSHAP, ``pred_contrib``) averaged over the
        inner-fold boosters, plus the second stage's for its features and the site stage's
        (after :meth:`continue_training`); with the ``bias`` column they add up to the boosted
        logit the probability is recalibrated from."""
        Xn = self._check(X)
        names = list(self.feature_names_)
        n_base = len(names) - len(self.residual_features)
        base = np.mean(
            [np.asarray(b.predict(Xn[:, :n_base], pred_contrib=True)) for b in self.boosters_],
            axis=0,
        )
        out = pd.DataFrame(base[:, :n_base], columns=names[:n_base], index=X.index)
        out["bias"] = base[:, n_base]
        for name in names[n_base:]:  # the second stage's features: its contributions only
            out[name] = 0.0
        for (a, b), boosters, cols in self._later_stages():
            out = out * b  # the stage before enters this one through its recalibration
            out["bias"] += a
            inc = np.mean([np.asarray(r.predict(Xn[:, cols], pred_contrib=True))
                           for r in boosters], axis=0)  # fmt: skip
            out[names[cols]] += inc[:, :-1]
            out["bias"] += inc[:, -1]
        return out

    def top_factors(self, X: pd.DataFrame, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` features contributing most (by absolute SHAP value) to each row's score,
        with their signed contributions (logit scale; positive raises the risk)."""
        c = self.contributions(X).drop(columns="bias")
        values = c.to_numpy(dtype=np.float64)
        names = [str(f) for f in c.columns]
        k = min(k, values.shape[1])
        top = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
        return [[(names[j], float(values[i, j])) for j in row] for i, row in enumerate(top)]

    def explanation(
        self, X: pd.DataFrame, groups: Mapping[str, npt.ArrayLike] | None = None, k: int = 10
    ) -> dict[str, Any]:
        """What drives the scores of rows ``X``: the ``k`` features with the largest mean
        absolute SHAP contribution (logit scale) overall, with their share of the total, and
        within each group of each grouping in ``groups`` (e.g. ICU unit, sex, age band)."""
        c = self.contributions(X).drop(columns="bias").abs()

        def top(frame: pd.DataFrame) -> list[dict[str, float | str]]:
            mean = frame.mean(axis=0)
            total = float(mean.sum()) or 1.0
            best = mean.sort_values(ascending=False).head(k)
            return [{"feature": str(f), "mean_abs_shap": float(v), "share": float(v) / total}
                    for f, v in best.items()]  # fmt: skip

        out: dict[str, Any] = {"rows": len(c), "overall": top(c), "groups": {}}
        for name, labels in (groups or {}).items():
            lab = pd.Series(np.asarray(labels), index=c.index).fillna("unknown").astype(str)
            out["groups"][name] = {str(g): top(c[lab == g]) for g in sorted(lab.unique())}
        return out

    def importance(self) -> pd.Series:
        """Total gain of each feature (the second stage's after the first's, plus the site
        stage's), largest first."""
        n_base = len(self.feature_names_) - len(self.residual_features)
        gain = np.zeros(len(self.feature_names_))
        gain[:n_base] = np.mean([b.feature_importance("gain") for b in self.boosters_], axis=0)
        for _, boosters, cols in self._later_stages():
            gain[cols] += np.mean([b.feature_importance("gain") for b in boosters], axis=0)
        return pd.Series(gain, index=self.feature_names_).sort_values(ascending=False)

    # -- persistence: LightGBM's text format and JSON, no pickle --------------------------

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for j, b in enumerate(self.boosters_):
            b.save_model(str(directory / f"booster_{j}.txt"))
        for j, b in enumerate(self.residual_boosters_):
            b.save_model(str(directory / f"residual_{j}.txt"))
        for j, b in enumerate(self.site_boosters_):
            b.save_model(str(directory / f"site_{j}.txt"))
        shift: ShiftReference | None = getattr(self, "shift_", None)
        meta = {
            "format_version": FORMAT_VERSION,
            "params": self.get_params(),
            "feature_names": self.feature_names_,
            "iterations": self.iterations_,
            "residual_iterations": self.residual_iterations_,
            "base_recalibration": list(self.base_recalibration_),
            "site_iterations": self.site_iterations_,
            "site_recalibration": list(self.site_recalibration_),
            "threshold": self.threshold_,
            "recalibration": list(self.recalibration_),
            "threshold_criterion": self.threshold_criterion_,
            "validation_auroc": self.validation_auroc_,
            "reference": vars(self.reference_),
            "shift": None if shift is None else shift.to_dict(),
            "alert_rate": getattr(self, "alert_rate_", None),
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: Path) -> RiskModel:
        meta_path = directory / "model.json"
        if not meta_path.exists():
            raise RiskModelError(f"{directory}: no model.json (not a saved RiskModel)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") not in READABLE_FORMATS:
            raise RiskModelError(
                f"{directory}: model format {meta.get('format_version')}, this vitaltwin reads "
                f"{', '.join(map(str, READABLE_FORMATS))}"
            )
        m = cls(**meta["params"])
        m.boosters_ = [
            lgb.Booster(model_file=str(directory / f"booster_{j}.txt"))
            for j in range(len(meta["iterations"]))
        ]
        m.residual_boosters_ = [
            lgb.Booster(model_file=str(directory / f"residual_{j}.txt"))
            for j in range(len(meta["residual_iterations"]))
        ]
        a, b = meta["base_recalibration"]
        m.base_recalibration_ = (float(a), float(b))
        m.site_boosters_ = [  # format 3 has no site stage
            lgb.Booster(model_file=str(directory / f"site_{j}.txt"))
            for j in range(len(meta.get("site_iterations", [])))
        ]
        a, b = meta.get("site_recalibration", (0.0, 1.0))
        m.site_recalibration_ = (float(a), float(b))
        m.feature_names_ = list(meta["feature_names"])
        m.threshold_ = float(meta["threshold"])
        a, b = meta["recalibration"]
        m.recalibration_ = (float(a), float(b))
        m.threshold_criterion_ = float(meta["threshold_criterion"])
        m.validation_auroc_ = float(meta["validation_auroc"])
        m.reference_ = FeatureReference(**meta["reference"])
        m.shift_ = ShiftReference(**meta["shift"]) if meta.get("shift") else None
        m.alert_rate_ = meta.get("alert_rate")
        return m
