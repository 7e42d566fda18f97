"""The development and validation protocol of the risk models (TRIPOD+AI's "analysis").

Patient-level splits only: a stratified 20 % of patients (by whether they ever carry a positive
sepsis label) is the test split, never used for fitting, thresholds or choices; the other 80 %
are the development set, cross-validated in 5 stratified folds. In every fold (and for the final
model on the whole development set) :class:`RiskModel` cross-fits over its *training* patients
in inner folds: their out-of-fold scores choose the number of rounds, the recalibration and the
operating threshold. The baselines (qSOFA, SIRS, NEWS2) are scored on the same rows, with their
alert cut-off chosen on the training rows.

**Transfer** (leave-one-site-out): a model is worth what it does at a hospital it never saw, so
besides cross-validation each site of the development set (set A's ICU units: medical,
surgical, and the stays whose unit is not stated) is held out in turn: the model is fitted on the
other sites' development patients — its threshold chosen there too — and scored on the held-out
site. The pooled out-of-site scores are reported beside the pooled out-of-fold ones, per site as
well, and the feature set is chosen on them (:func:`champion_feature_set`), not on
cross-validation.

Feature sets: ``raw`` (vitals, labs, their ages and counts, windows, clinical scores,
demographics); ``physiology``: the raw set without the process features
(:func:`process_features`: measurement counts, hours since each measurement, hours of stay and
since hospital admission), which record how a unit works rather than how the patient is; and
``hybrid``: the raw model's stage followed by a second, residual stage on the twin's estimates
(:mod:`vitaltwin.risk._twin_features`) that boosts from the raw stage's out-of-fold score
(``RiskModel(residual_features=...)``). The second stage stops at the round count that best
improves the mean inner-fold AUROC, so it adds what the twin knows beyond the raw data, and
nearly nothing when that is nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from fairlearn.metrics import MetricFrame, equalized_odds_difference, false_positive_rate
from sklearn.metrics import recall_score, roc_auc_score

from vitaltwin.progress import SILENT, Progress
from vitaltwin.risk._adapt import AdaptationError, learning_curve
from vitaltwin.risk._cohort import VARIABLE_NAMES, Cohort
from vitaltwin.risk._evaluate import Rows, calibration, evaluate
from vitaltwin.risk._features import VITALS, FloatArray, process_features, raw_features
from vitaltwin.risk._model import RiskModel, best_threshold, bin_fractions, decile_edges
from vitaltwin.risk._monitor import psi
from vitaltwin.risk._tasks import MATERIAL, TASKS, Task, labels_for, risk_task
from vitaltwin.risk._utility import normalized_utility, patient_blocks

BASELINES = ("qsofa", "sirs", "news2")
FEATURE_SETS = ("raw", "physiology")
"""The feature sets every study fits (``hybrid`` too when twin features are given)."""
PREFERENCE = ("physiology", "raw", "hybrid")
"""Feature sets from the fewest assumptions to the most: a later one is chosen over an earlier
only when it gains more than :data:`MATERIAL` (the physiology set travels; the raw set adds how a
unit works; the hybrid needs the twin's replay to score)."""
UNKNOWN_SITE = "unit not stated"


def sites_of(cohort: Cohort) -> npt.NDArray[np.object_]:
    """The site of each grid row: the patient's site where the source gives sites (eICU: the
    hospital's region, :func:`vitaltwin.risk.eicu_cohort`), otherwise the ICU unit
    (:data:`UNKNOWN_SITE` when the source does not state it)."""
    pat = cohort.patients
    where = pat["icu_unit"]
    if "site" in pat.columns and pat["site"].notna().any():
        where = pat["site"]
    unit = where.reindex(cohort.grid["patient_id"].to_numpy())
    out: npt.NDArray[np.object_] = unit.fillna(UNKNOWN_SITE).astype(str).to_numpy(dtype=object)
    return out


AGE_BANDS = (0, 45, 65, 80, 200)
AGE_BAND_LABELS = ("<45", "45-64", "65-79", ">=80")
NOISE_SD = {"HR": 5.0, "O2Sat": 1.5, "Temp": 0.3, "SBP": 8.0, "MAP": 5.0, "DBP": 6.0, "Resp": 2.0}
"""Injected noise (SD) for the robustness check: about the instrument error of each vital sign
(the twin's observation operator, :data:`vitaltwin.twin._observe.OBSERVABLES`)."""


@dataclass(frozen=True)
class RiskStudyConfig:
    folds: int = 5
    test_fraction: float = 0.2
    seed: int = 2019
    n_boot: int = 200
    tasks: tuple[Task, ...] = TASKS
    twin: bool = True
    twin_members: int = 8
    missing_fractions: tuple[float, ...] = (0.2, 0.5)
    model_params: dict[str, Any] = field(default_factory=dict)
    feature_sets: tuple[str, ...] = FEATURE_SETS
    leave_site_out: bool = True
    min_site_patients: int = 50
    """Sites with fewer development patients (or fewer than 5 with an event) are never held
    out alone (their patients still train the others' models)."""


@dataclass(frozen=True)
class FoldResult:
    """One cross-validation fold of a model: AUROC, its threshold, utility (sepsis only)."""

    fold: int
    auroc: float
    threshold: float
    utility: float | None = None


@dataclass(frozen=True)
class CvResult:
    """A model (or baseline) in cross-validation: metrics of the pooled out-of-fold scores
    (:func:`vitaltwin.risk.evaluate`'s) and, for fitted models, each fold."""

    pooled: dict[str, Any]
    folds: list[FoldResult] = field(default_factory=list)


@dataclass(frozen=True)
class SiteResult:
    """One held-out site: its development patients scored by the cross-validation models
    (``within``: trained with patients of this site) and by the model fitted without the site
    (``transfer``), with the number of patients and of patients with an event."""

    site: str
    patients: int
    positive_patients: int
    within: dict[str, float]
    transfer: dict[str, float]


SITE_FIGURES = ("utility", "auroc", "auprc", "calibration_intercept", "calibration_slope",
                "sensitivity", "specificity", "ppv", "alerts_per_patient_day")  # fmt: skip


@dataclass(frozen=True)
class RobustnessResult:
    """The raw model on the test split with degraded inputs."""

    perturbation: str
    auroc: float
    sensitivity: float
    low_confidence_fraction: float
    utility: float | None = None


@dataclass(frozen=True)
class TaskResults:
    """Everything the study measured for one task: cross-validation and test metrics of every
    model and baseline (by name), and the robustness of the raw model."""

    cv: dict[str, CvResult]
    test: dict[str, dict[str, Any]]
    robustness: list[RobustnessResult]
    transfer: dict[str, CvResult] = field(default_factory=dict)
    """Pooled out-of-site figures of every model and baseline (leave-one-site-out)."""
    within_sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The cross-validated figures of the same patients (those of the held-out sites)."""
    sites: dict[str, list[SiteResult]] = field(default_factory=dict)
    shift: dict[str, Any] = field(default_factory=dict)
    adaptation: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    """Per model and held-out site, the learning curve of adapting the out-of-site model with
    0, 100, 500, 2,000 of the site's labelled patients (:func:`vitaltwin.risk.learning_curve`)."""
    """How the features differ between sites (:func:`site_shift`)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (a utility that does not apply is left out, not null)."""

        def plain(o: FoldResult | RobustnessResult) -> dict[str, Any]:
            return {k: v for k, v in asdict(o).items() if v is not None}

        return {
            "cv": {
                k: {
                    "pooled": v.pooled,
                    **({"folds": [plain(f) for f in v.folds]} if v.folds else {}),
                }
                for k, v in self.cv.items()
            },
            "test": self.test,
            "robustness": [plain(r) for r in self.robustness],
            "transfer": {k: {"pooled": v.pooled} for k, v in self.transfer.items()},
            "within_sites": self.within_sites,
            "sites": {k: [asdict(r) for r in v] for k, v in self.sites.items()},
            "shift": self.shift,
            "adaptation": self.adaptation,
        }


@dataclass
class RiskStudy:
    config: RiskStudyConfig
    cohort_summary: dict[str, Any]
    results: dict[str, TaskResults]
    models: dict[tuple[str, str], RiskModel]  # (task, feature set) -> final model
    test_scores: dict[str, pd.DataFrame]  # task -> per-row test scores of every model


def criterion(task: str) -> str:
    """The cross-validated figure models of ``task`` are compared on."""
    return risk_task(task).criterion


def selection_basis(study: RiskStudy, task: str) -> tuple[str, dict[str, CvResult]]:
    """What choices are made on: the leave-site-out figures when the study has them (the
    estimate of how a model travels), else cross-validation."""
    r = study.results[task]
    return ("leave-site-out", r.transfer) if r.transfer else ("cross-validation", r.cv)


def twin_gain(study: RiskStudy, task: str) -> float | None:
    """Hybrid minus raw in the pooled :func:`criterion` of the :func:`selection_basis` (None
    without twin features)."""
    _, basis = selection_basis(study, task)
    if "hybrid" not in basis:
        return None
    key = criterion(task)
    return float(basis["hybrid"].pooled[key] - basis["raw"].pooled[key])


def champion_feature_set(study: RiskStudy, task: str) -> str:
    """The feature set the final model uses: along :data:`PREFERENCE`, a set replaces the one
    chosen so far only when its pooled :func:`criterion` on the :func:`selection_basis` is
    higher by more than :data:`MATERIAL`."""
    _, basis = selection_basis(study, task)
    key = criterion(task)
    sets = [fs for fs in PREFERENCE if fs in basis]
    best = sets[0]
    for fs in sets[1:]:
        if basis[fs].pooled[key] - basis[best].pooled[key] > MATERIAL:
            best = fs
    return best


def split_patients(
    cohort: Cohort, test_fraction: float, folds: int, seed: int
) -> tuple[npt.NDArray[np.object_], dict[str, int]]:
    """Test patients and the fold of each development patient, stratified by sepsis."""
    g = cohort.grid
    septic = g.groupby("patient_id", sort=True)["sepsis"].max() > 0
    rng = np.random.default_rng(seed)
    test: list[str] = []
    fold: dict[str, int] = {}
    for flag in (True, False):
        ids = np.array(sorted(septic.index[septic == flag]), dtype=object)
        rng.shuffle(ids)
        n_test = round(test_fraction * ids.size)
        test.extend(ids[:n_test])
        for i, p in enumerate(ids[n_test:]):
            fold[str(p)] = i % folds
    return np.array(sorted(test), dtype=object), fold


def stay_lengths(cohort: Cohort) -> dict[str, Any]:
    """How long the stays are, by whether they turn septic: quartiles of the hours per stay
    (``septic`` / ``non_septic``), the fraction of never-septic hours after the first 48, the
    quartiles of how many hours each septic stay runs on after its first positive hour, and the
    pooled AUROC of the hour of the stay alone as a score for the sepsis label (None without
    both classes). A model learns the hour of the stay too; where stay lengths differ this much
    between the classes, that hour carries signal that another hospital's records need not
    share."""
    g = cohort.grid
    hour = g["hour"].to_numpy(np.float64)
    y = g["sepsis"].to_numpy(np.int64)
    starts, lengths = patient_blocks(g["patient_id"].to_numpy())
    septic = np.maximum.reduceat(y == 1, starts)
    never = np.repeat(~septic, lengths)
    first_positive = np.minimum.reduceat(np.where(y == 1, hour, np.inf), starts)[septic]
    last = hour[starts + lengths - 1][septic]

    def quartiles(x: npt.NDArray[Any]) -> list[float]:
        return np.quantile(x, [0.25, 0.5, 0.75]).tolist() if x.size else []

    ok = y >= 0
    both = 0 < y[ok].sum() < ok.sum()
    return {
        "septic": quartiles(lengths[septic]),
        "non_septic": quartiles(lengths[~septic]),
        "non_septic_hours_after_48h": float(np.mean(hour[never] >= 48)) if never.any() else None,
        "septic_hours_after_first_positive": quartiles(last - first_positive),
        "auroc_hour_of_stay": float(roc_auc_score(y[ok], hour[ok])) if both else None,
    }


def perturbed(cohort: Cohort, rng: np.random.Generator, noise: bool, drop: float) -> Cohort:
    """A copy of ``cohort`` with instrument noise on the vital signs and/or a fraction ``drop``
    of the measured values removed."""
    g = cohort.grid.copy()
    for v in VARIABLE_NAMES:
        x = g[v].to_numpy(dtype=np.float64).copy()
        m = np.isfinite(x)
        if noise and v in NOISE_SD:
            x[m] += rng.normal(0.0, NOISE_SD[v], m.sum())
        if drop > 0:
            x[m & (rng.random(x.size) < drop)] = np.nan
        g[v] = x
    return Cohort(g, cohort.patients, cohort.source)


def _rows(
    cohort: Cohort,
    mask: npt.NDArray[np.bool_],
    y: npt.NDArray[np.int64],
    score: npt.NDArray[np.float64],
    alert: npt.NDArray[np.bool_],
) -> Rows:
    """The grid rows selected by ``mask`` with their labels, scores and alerts."""
    g = cohort.grid
    return Rows(
        g["patient_id"].to_numpy()[mask],
        g["hour"].to_numpy(np.int64)[mask],
        y[mask],
        score[mask],
        alert[mask],
    )


def _subgroups(cohort: Cohort, rows: Rows, mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Fairlearn MetricFrames by sex, age band and ICU unit: sensitivity, false-positive rate,
    AUROC, calibration (observed vs mean predicted, slope), and the equalized-odds gap."""
    pat = cohort.patients.reindex(cohort.grid["patient_id"].to_numpy()[mask])
    groups = {
        "sex": pat["sex"].fillna("unknown").to_numpy(),
        "age_band": pd.cut(pat["age_years"], AGE_BANDS, right=False, labels=list(AGE_BAND_LABELS))
        .astype(str)
        .to_numpy(),
        "icu_unit": pat["icu_unit"].fillna("unknown").to_numpy(),
    }
    out: dict[str, Any] = {}
    for name, sf in groups.items():
        mf = MetricFrame(
            metrics={
                "sensitivity": partial(recall_score, zero_division=np.nan),
                "false_positive_rate": false_positive_rate,
                "n": lambda yt, yp: len(yt),
                "prevalence": lambda yt, yp: float(np.mean(yt)),
                "alert_rate": lambda yt, yp: float(np.mean(yp)),
            },
            y_true=rows.y,
            y_pred=rows.alert.astype(int),
            sensitive_features=sf,
        )
        table = mf.by_group
        if name == "age_band":  # youngest first, not in string order; no age last
            table = table.reindex([b for b in (*AGE_BAND_LABELS, "nan") if b in table.index])
        extra = []
        for grp in table.index:
            sel = sf == grp
            yy, pp = rows.y[sel], rows.score[sel]
            if 0 < yy.sum() < yy.size:
                auc = float(roc_auc_score(yy, pp))
                _, slope = calibration(yy, pp)
            else:
                auc, slope = float("nan"), float("nan")
            extra.append(
                {"auroc": auc, "mean_predicted": float(pp.mean()), "calibration_slope": slope}
            )
        table = pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)
        out[name] = {
            "by_group": table.reset_index()
            .rename(columns={table.index.name or "index": "group"})
            .to_dict(orient="records"),
            "equalized_odds_difference": float(
                equalized_odds_difference(rows.y, rows.alert.astype(int), sensitive_features=sf)
            ),
        }
    return out


def run_study(
    cohort: Cohort,
    cfg: RiskStudyConfig = RiskStudyConfig(),
    twin: pd.DataFrame | None = None,
    progress: Progress = SILENT,
) -> RiskStudy:
    """Cross-validate on the development patients, fit final models, evaluate on the test split
    (twin features are passed in: computing them is the caller's, see
    :func:`vitaltwin.risk.cached_twin_features`)."""
    g = cohort.grid
    pid = g["patient_id"].to_numpy()
    raw = raw_features(cohort)
    # built once: the folds and the final fit share them
    every = {"raw": raw, "physiology": raw.drop(columns=process_features(raw.columns))}
    unknown = sorted(set(cfg.feature_sets) - set(every))
    if unknown or "raw" not in cfg.feature_sets:
        raise ValueError(f"feature sets {list(cfg.feature_sets)}: 'raw' and any of "
                         f"{sorted(every)} (twin features add 'hybrid')")  # fmt: skip
    feature_sets = {k: every[k] for k in cfg.feature_sets} | (
        {} if twin is None else {"hybrid": pd.concat([raw, twin], axis=1)}
    )
    site = sites_of(cohort)
    for task in cfg.tasks:
        if problem := missing_outcome(cohort, task):
            raise ValueError(problem)

    test_ids, fold_of = split_patients(cohort, cfg.test_fraction, cfg.folds, cfg.seed)
    is_test = np.isin(pid, test_ids)
    fold = np.array([fold_of.get(str(p), -1) for p in pid])
    summary = {
        "source": cohort.source,
        "patients": cohort.n_patients,
        "rows": len(g),
        "septic_patients": int((g.groupby("patient_id")["sepsis"].max() > 0).sum()),
        "test_patients": len(test_ids),
        "development_patients": len(fold_of),
        "missing_fraction": {v: float(g[v].isna().mean()) for v in VARIABLE_NAMES},
        "stays": stay_lengths(cohort),
        "features": {n: list(X.columns) for n, X in feature_sets.items()},
        "sites": {
            str(k): int(v) for k, v in pd.Series(site).groupby(pid).first().value_counts().items()
        },
        "site_hospitals": _hospitals_per_site(cohort, site),
    }
    results: dict[str, TaskResults] = {}
    models: dict[tuple[str, str], RiskModel] = {}
    test_scores: dict[str, pd.DataFrame] = {}
    params = {"random_state": cfg.seed, **cfg.model_params}
    stages = {"hybrid": () if twin is None else tuple(map(str, twin.columns))}
    held_out_of = {
        t: _held_out_sites(cohort, site, fold, labels_for(t, cohort), cfg)
        for t in (cfg.tasks if cfg.leave_site_out else ())
    }
    n_fits = sum(len(feature_sets) * (cfg.folds + 1 + len(held_out_of.get(t, {})))
                 for t in cfg.tasks)  # fmt: skip
    job = progress.start("risk models", n_fits)
    try:
        for task in cfg.tasks:
            y = labels_for(task, cohort)
            ok = y >= 0
            sepsis = risk_task(task).utility
            # -- cross-validation on the development set ------------------------------------
            cv: dict[str, CvResult] = {}
            oof_of: dict[str, tuple[FloatArray, npt.NDArray[np.bool_]]] = {}
            raw_fold_models: list[RiskModel] = []  # the hybrid's first stage in each fold
            for fs, X in feature_sets.items():
                oof = np.full(len(g), np.nan)
                alerts = np.zeros(len(g), bool)
                per_fold = []
                for k in range(cfg.folds):
                    trn = ok & (fold >= 0) & (fold != k)
                    val = ok & (fold == k)
                    m = RiskModel(task=task, residual_features=stages.get(fs, ()), **params)
                    if fs == "raw":
                        raw_fold_models.append(m.fit(X[trn], y[trn], pid[trn]))
                    elif fs == "hybrid":
                        m.fit(X[trn], y[trn], pid[trn], first_stage=raw_fold_models[k])
                    else:
                        m.fit(X[trn], y[trn], pid[trn])
                    oof[val] = m.predict_proba(X[val])
                    alerts[val] = oof[val] >= m.threshold_
                    r = _rows(cohort, val, y, oof, alerts)
                    per_fold.append(
                        FoldResult(
                            k,
                            float(roc_auc_score(r.y, r.score)),
                            m.threshold_,
                            normalized_utility(r.patient, r.y, r.alert.astype(int))
                            if sepsis
                            else None,
                        )
                    )
                    job.advance()
                dev = ok & (fold >= 0)
                pooled = evaluate(
                    _rows(cohort, dev, y, oof, alerts),
                    sepsis=sepsis,
                    n_boot=0,
                )
                cv[fs] = CvResult(pooled, per_fold)
                oof_of[fs] = (oof, alerts)
            # baselines in CV: cut-off chosen on the training folds
            for b in BASELINES:
                s = raw[b].to_numpy(dtype=np.float64)
                alerts = np.zeros(len(g), bool)
                for k in range(cfg.folds):
                    trn = ok & (fold >= 0) & (fold != k)
                    val = ok & (fold == k)
                    thr, _ = best_threshold(task, pid[trn], y[trn], s[trn])
                    alerts[val] = s[val] >= thr
                dev = ok & (fold >= 0)
                oof_of[b] = (s, alerts)
                cv[b] = CvResult(
                    evaluate(
                        _rows(cohort, dev, y, s, alerts),
                        sepsis=sepsis,
                        probabilities=False,
                        n_boot=0,
                    )
                )
            # -- final models on the whole development set, evaluated on the test split -------
            test: dict[str, Any] = {}
            dev = ok & ~is_test
            te = ok & is_test
            scores = pd.DataFrame(
                {"patient_id": pid[te], "hour": g["hour"].to_numpy()[te], "y": y[te]}
            )
            for fs, X in feature_sets.items():
                m = RiskModel(task=task, residual_features=stages.get(fs, ()), **params)
                first = models.get((task, "raw")) if fs == "hybrid" else None
                m.fit(X[dev], y[dev], pid[dev], first_stage=first)
                models[(task, fs)] = m
                p = m.predict_proba(X)
                r_te = _rows(cohort, te, y, p, p >= m.threshold_)
                low = m.low_confidence(X[te])
                res = evaluate(r_te, sepsis=sepsis, n_boot=cfg.n_boot, seed=cfg.seed)
                res["threshold"] = m.threshold_
                res["iterations"] = m.iterations_
                res["residual_iterations"] = m.residual_iterations_
                res["low_confidence_fraction"] = float(low.mean())
                if low.any() and 0 < r_te.y[~low].sum() < (~low).sum():
                    res["auroc_confident_rows"] = float(
                        roc_auc_score(r_te.y[~low], r_te.score[~low])
                    )
                res["subgroups"] = _subgroups(cohort, r_te, te)
                res["importance"] = m.importance().head(25).to_dict()
                res["explanation"] = _explanation(cohort, m, X, te, cfg.seed)
                gain = m.importance()
                res["process_importance_share"] = float(
                    gain[gain.index.isin(process_features(gain.index))].sum()
                    / max(gain.sum(), 1e-12)
                )
                test[fs] = res
                scores[f"{fs}_probability"] = r_te.score
                scores[f"{fs}_alert"] = r_te.alert
                scores[f"{fs}_low_confidence"] = low
                job.advance()
            for b in BASELINES:
                s = raw[b].to_numpy(dtype=np.float64)
                thr, _ = best_threshold(task, pid[dev], y[dev], s[dev])
                test[b] = evaluate(
                    _rows(cohort, te, y, s, s >= thr),
                    sepsis=sepsis,
                    probabilities=False,
                    n_boot=cfg.n_boot,
                    seed=cfg.seed,
                )
                test[b]["threshold"] = thr
                scores[b] = s[te]
            # -- robustness of the raw model: noise and extra missingness on the test split ------
            robust: list[RobustnessResult] = []
            rng = np.random.default_rng(cfg.seed + 1)
            test_cohort = cohort.subset(test_ids)
            y_t = labels_for(task, test_cohort)
            ok_t = y_t >= 0
            m = models[(task, "raw")]
            for noise, drop in [(True, 0.0)] + [(False, f) for f in cfg.missing_fractions]:
                pc = perturbed(test_cohort, rng, noise, drop)
                Xp = raw_features(pc)
                # outcomes stay those of the unperturbed record: only the inputs degrade
                p = m.predict_proba(Xp)
                r = _rows(pc, ok_t, y_t, p, p >= m.threshold_)
                robust.append(
                    RobustnessResult(
                        "noise on vitals" if noise else f"{int(drop * 100)} % of values removed",
                        float(roc_auc_score(r.y, r.score)),
                        float(np.mean(r.alert[r.y == 1])),
                        float(m.low_confidence(Xp)[ok_t].mean()),
                        normalized_utility(r.patient, r.y, r.alert.astype(int)) if sepsis else None,
                    )
                )
            # -- transfer: each site held out of training in turn ------------------------------
            held_out = held_out_of.get(task, {})
            transfer, within, sites, curves = _leave_site_out(
                cohort, task, feature_sets, stages, params, held_out, site, fold, y, oof_of, job
            )
            shift = site_shift(raw, site, ok & (fold >= 0), cfg.seed) if held_out else {}
            results[task] = TaskResults(cv, test, robust, transfer, within, sites, shift, curves)
            test_scores[task] = scores
    finally:
        job.close()
    return RiskStudy(cfg, summary, results, models, test_scores)


def missing_outcome(cohort: Cohort, task: Task) -> str | None:
    """Why ``cohort`` cannot develop ``task`` (no hour with, or none without, its outcome), or
    None when it can."""
    y = labels_for(task, cohort)
    if (y == 1).any() and (y == 0).any():
        return None
    return (
        f"{cohort.source}: no {risk_task(task).description} to learn — "
        f"{int((y == 1).sum())} positive and {int((y == 0).sum())} negative hours "
        "(a source without that outcome cannot develop this task)"
    )


def _hospitals_per_site(cohort: Cohort, site: npt.NDArray[np.object_]) -> dict[str, int]:
    """How many hospitals each site's patients come from (empty when the source does not name
    hospitals)."""
    hosp = cohort.patients.get("hospital")
    if hosp is None or hosp.isna().all():
        return {}
    pid = cohort.grid["patient_id"].to_numpy()
    per = pd.DataFrame({"site": site, "hospital": hosp.reindex(pid).to_numpy()})
    return {str(k): int(v) for k, v in per.groupby("site")["hospital"].nunique().items()}


def _held_out_sites(
    cohort: Cohort,
    site: npt.NDArray[np.object_],
    fold: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    cfg: RiskStudyConfig,
) -> dict[str, int]:
    """The sites held out in turn (development patients of each), large enough to judge: at
    least ``cfg.min_site_patients`` development patients and 5 with an event of the task
    (``y``); none when fewer than two sites qualify."""
    g = cohort.grid
    dev = fold >= 0
    per = pd.DataFrame({"site": site[dev], "pid": g["patient_id"].to_numpy()[dev],
                        "event": y[dev] > 0})  # fmt: skip
    pat = per.groupby("pid").agg(site=("site", "first"), event=("event", "max"))
    count = pat.groupby("site").agg(n=("event", "size"), events=("event", "sum"))
    ok = count[(count["n"] >= cfg.min_site_patients) & (count["events"] >= 5)]
    return {str(k): int(v) for k, v in ok["n"].items()} if len(ok) >= 2 else {}


def _explanation(
    cohort: Cohort,
    model: RiskModel,
    X: pd.DataFrame,
    mask: npt.NDArray[np.bool_],
    seed: int,
    rows: int = 20_000,
) -> dict[str, Any]:
    """What drives the model's scores on the rows of ``mask`` (at most ``rows`` of them, drawn
    at random): mean absolute SHAP contributions overall and by ICU unit, sex and age band."""
    idx = np.flatnonzero(mask)
    if idx.size > rows:
        idx = np.sort(np.random.default_rng(seed).choice(idx, rows, replace=False))
    pat = cohort.patients.reindex(cohort.grid["patient_id"].to_numpy()[idx])
    groups = {
        "icu_unit": pat["icu_unit"].fillna(UNKNOWN_SITE).to_numpy(),
        "sex": pat["sex"].fillna("unknown").to_numpy(),
        "age_band": pd.cut(pat["age_years"], AGE_BANDS, right=False, labels=list(AGE_BAND_LABELS))
        .astype(str)
        .to_numpy(),
    }
    return model.explanation(X.iloc[idx], groups)


def flag_check(rows: Rows, flagged: npt.NDArray[np.bool_]) -> dict[str, float]:
    """Whether hours the shift measure flags really score worse: the flag rate, and AUROC and
    calibration slope of the flagged and the other hours (NaN where a group lacks either
    class)."""
    out = {"flag_rate": float(flagged.mean()) if flagged.size else float("nan")}
    for name, sel in (("flagged", flagged), ("not_flagged", ~flagged)):
        yy, pp = rows.y[sel], rows.score[sel]
        if 0 < yy.sum() < yy.size:
            out[f"auroc_{name}"] = float(roc_auc_score(yy, pp))
            out[f"calibration_slope_{name}"] = calibration(yy, pp)[1]
        else:
            out[f"auroc_{name}"] = out[f"calibration_slope_{name}"] = float("nan")
    return out


def _figures(ev: dict[str, Any]) -> dict[str, float]:
    return {k: float(ev[k]) for k in SITE_FIGURES if k in ev}


def _leave_site_out(
    cohort: Cohort,
    task: Task,
    feature_sets: dict[str, pd.DataFrame],
    stages: dict[str, tuple[str, ...]],
    params: dict[str, Any],
    held_out: dict[str, int],
    site: npt.NDArray[np.object_],
    fold: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    oof_of: dict[str, tuple[FloatArray, npt.NDArray[np.bool_]]],
    job: Any,
) -> tuple[
    dict[str, CvResult],
    dict[str, dict[str, Any]],
    dict[str, list[SiteResult]],
    dict[str, dict[str, list[dict[str, Any]]]],
]:
    """Leave-one-site-out over the development patients: every model and baseline fitted (or
    its cut-off chosen) without a site, scored on it; pooled and per site, beside the same
    patients' cross-validated scores (``oof_of``); and each out-of-site model's adaptation
    learning curve on its held-out site."""
    if not held_out:
        return {}, {}, {}, {}
    hour = cohort.grid["hour"].to_numpy()
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    pid = cohort.grid["patient_id"].to_numpy()
    ok = y >= 0
    sepsis = risk_task(task).utility
    dev = ok & (fold >= 0) & np.isin(site, list(held_out))
    raw = feature_sets["raw"]
    transfer: dict[str, CvResult] = {}
    within: dict[str, dict[str, Any]] = {}
    per_site: dict[str, list[SiteResult]] = {}
    raw_models: dict[str, RiskModel] = {}
    for name in [*feature_sets, *BASELINES]:
        probs = name in feature_sets  # a fitted model: probabilities, a shift flag

        def figures(rows: Rows) -> dict[str, float]:
            ev = evaluate(rows, sepsis=sepsis, probabilities=probs, n_boot=0)  # noqa: B023
            return _figures(ev)

        score, alerts = np.full(len(pid), np.nan), np.zeros(len(pid), bool)
        flagged = np.zeros(len(pid), bool)  # unlike the training sites' data (shift measure)
        results = []
        for s in held_out:
            trn = ok & (fold >= 0) & (site != s)
            val = ok & (fold >= 0) & (site == s)
            if probs:
                X = feature_sets[name]
                m = RiskModel(task=task, residual_features=stages.get(name, ()), **params)
                first = raw_models.get(s) if name == "hybrid" else None
                m.fit(X[trn], y[trn], pid[trn], first_stage=first)
                if name == "raw":
                    raw_models[s] = m
                score[val] = m.predict_proba(X[val])
                alerts[val] = score[val] >= m.threshold_
                flagged[val] = m.low_confidence(X[val])
                try:
                    curves.setdefault(name, {})[s] = learning_curve(
                        m, X[val], y[val], pid[val], hour[val], seed=params.get("random_state", 0)
                    )
                except AdaptationError:  # too few patients with events to hold some out
                    curves.setdefault(name, {})[s] = []
                job.advance()
            else:
                b = raw[name].to_numpy(dtype=np.float64)
                thr, _ = best_threshold(task, pid[trn], y[trn], b[trn])
                score[val], alerts[val] = b[val], b[val] >= thr
            r_out = _rows(cohort, val, y, score, alerts)
            out_of_site = figures(r_out) | (flag_check(r_out, flagged[val]) if probs else {})
            results.append(SiteResult(
                s, held_out[s], int(np.unique(r_out.patient[r_out.y == 1]).size),
                figures(_rows(cohort, val, y, *oof_of[name])), out_of_site,
            ))  # fmt: skip
        r_all = _rows(cohort, dev, y, score, alerts)
        pooled = evaluate(r_all, sepsis=sepsis, probabilities=probs, n_boot=0)
        if probs:
            pooled |= flag_check(r_all, flagged[dev])
        transfer[name] = CvResult(pooled)
        within[name] = figures(_rows(cohort, dev, y, *oof_of[name]))
        per_site[name] = results
    return transfer, within, per_site, curves


def site_shift(
    X: pd.DataFrame,
    site: npt.NDArray[np.object_],
    mask: npt.NDArray[np.bool_],
    seed: int,
    rows: int = 200_000,
) -> dict[str, Any]:
    """How far each feature's distribution at each site lies from the other sites' (population
    stability index over the others' deciles, missing values a bin of their own), on at most
    ``rows`` random rows of ``mask``: the largest PSI of each feature over the sites, the
    median of the process features (:func:`process_features`) and of the others, and the 15
    features that shift most."""
    idx = np.flatnonzero(mask)
    if idx.size > rows:
        idx = np.sort(np.random.default_rng(seed).choice(idx, rows, replace=False))
    values, where = X.to_numpy(dtype=np.float64)[idx], site[idx]
    names = [str(c) for c in X.columns]
    worst = np.zeros(len(names))
    for s in np.unique(where):
        here = where == s
        for j in range(len(names)):
            edges = decile_edges(values[~here, j])
            ref = bin_fractions(values[~here, j], edges)
            worst[j] = max(worst[j], psi(ref, bin_fractions(values[here, j], edges)))
    process = set(process_features(names))
    is_proc = np.array([n in process for n in names])
    top = np.argsort(-worst)[:15]
    return {
        "max_psi": dict(zip(names, worst.round(4).tolist(), strict=True)),
        "median_psi_process": float(np.median(worst[is_proc])) if is_proc.any() else None,
        "median_psi_physiology": float(np.median(worst[~is_proc])),
        "top": [
            {"feature": names[j], "psi": round(float(worst[j]), 4), "process": bool(is_proc[j])}
            for j in top
        ],
    }


__all__ = [
    "BASELINES",
    "MATERIAL",
    "VITALS",
    "RiskStudy",
    "RiskStudyConfig",
    "SiteResult",
    "champion_feature_set",
    "criterion",
    "flag_check",
    "missing_outcome",
    "process_features",
    "run_study",
    "selection_basis",
    "site_shift",
    "sites_of",
    "split_patients",
    "stay_lengths",
    "twin_gain",
]
