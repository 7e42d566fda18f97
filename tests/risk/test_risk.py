"""Risk models: the Challenge utility (exact), leakage-free features, labels, the estimator,
registry and monitoring."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from vitaltwin.cli import app
from vitaltwin.risk import (
    CHALLENGER,
    CHAMPION,
    VARIABLE_NAMES,
    Cohort,
    CohortError,
    OnlineScorer,
    Registry,
    RegistryError,
    RetrainingPolicy,
    RiskModel,
    RiskModelError,
    build_cohort,
    calibration,
    deterioration_labels,
    load_cohort,
    may_promote,
    monitor,
    normalized_utility,
    psi,
    raw_features,
    risk_task,
    utility,
)
from vitaltwin.risk._evaluate import Rows, auroc_by_negatives
from vitaltwin.risk._model import best_threshold

SET_A = Path(__file__).resolve().parents[3] / "shared/data/physionet2019/training_setA.parquet"
needs_set_a = pytest.mark.skipif(not SET_A.exists(), reason="shared PhysioNet set A not present")
EICU_DEMO = Path(__file__).resolve().parents[3] / "shared/data/eicu-demo"
QUICK: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_rounds": 200,
    "early_stopping_rounds": 20,
    "min_data_in_leaf": 50,
}


# -- utility ------------------------------------------------------------------------------


@needs_set_a
def test_utility_matches_the_challenge_fixtures_on_set_a() -> None:
    df = pd.read_parquet(SET_A)
    f = df.groupby("patient_id", sort=False)[["HR", "Resp", "Temp"]].ffill()
    crit = (f.HR > 90).astype(int) + (f.Resp > 20) + ((f.Temp > 38) | (f.Temp < 36))
    pid, lab = df["patient_id"].to_numpy(), df["SepsisLabel"].to_numpy()
    assert normalized_utility(pid, lab, (crit >= 2).astype(int).to_numpy()) == pytest.approx(
        0.10788668227906247, abs=1e-9
    )
    assert normalized_utility(pid, lab, np.ones(len(df), int)) == pytest.approx(
        -0.31923234675381607, abs=1e-9
    )


def test_utility_by_hand() -> None:
    # one septic patient: 20 rows, first label at row 10 -> onset row 16; one non-septic: 5 rows
    pid = np.array(["a"] * 20 + ["b"] * 5)
    lab = np.array([0] * 10 + [1] * 10 + [0] * 5)
    ones = np.ones(25, int)
    u = utility(pid, lab, ones)
    rel = np.arange(20) - 16.0
    expected = (
        sum(max((r + 12) / 6, -0.05) if r <= -6 else ((3 - r) / 9 if r <= 3 else 0.0) for r in rel)
        + 5 * -0.05
    )
    assert u.observed == pytest.approx(expected)
    never = sum(-2 * (r + 6) / 9 for r in rel if -6 < r <= 3)
    assert u.inaction == pytest.approx(never)
    ideal = np.zeros(25, int)
    ideal[4:20] = 1  # rows max(0, 16 - 12) .. min(16 + 3, 19)
    assert u.best == pytest.approx(utility(pid, lab, ideal).observed)
    assert normalized_utility(pid, lab, ideal) == pytest.approx(1.0)
    assert normalized_utility(pid, lab, np.zeros(25, int)) == pytest.approx(0.0)


def test_utility_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        utility(np.array(["a", "b", "a"]), np.zeros(3, int), np.zeros(3, int))
    with pytest.raises(ValueError, match="binary"):
        utility(np.array(["a", "a"]), np.zeros(2, int), np.array([0.2, 0.9]))


# -- a synthetic cohort in the canonical format ----------------------------------------------


def synthetic_cohort(n: int = 300, seed: int = 0) -> Cohort:
    """The grid of :func:`synthetic_tables`."""
    obs, pats, labels = synthetic_tables(n, seed)
    return build_cohort(obs, pats, labels, source="synthetic")


def synthetic_tables(
    n: int = 300, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Canonical tables for ``n`` patients; patients with ``sepsis`` get rising HR and
    temperature from 8 h before onset, and the PhysioNet-style label."""
    rng = np.random.default_rng(seed)
    adm = datetime(2020, 1, 1, tzinfo=UTC)
    obs, labels, pats = [], [], []
    for i in range(n):
        p = f"s{i:04d}"
        hours = int(rng.integers(20, 60))
        septic = rng.random() < 0.3
        onset = int(rng.integers(12, hours)) if septic else 10**6
        pats.append(
            {
                "patient_id": p,
                "sex": "male" if i % 2 else "female",
                "age_years": float(rng.uniform(20, 90)),
                "icu_admission_time": pd.Timestamp(adm),
                "hospital_admission_time": pd.Timestamp(adm) - pd.Timedelta(hours=5),
                "icu_unit": "MICU" if i % 3 else "SICU",
            }
        )
        for h in range(hours):
            ramp = max(0.0, h - (onset - 8))
            t = pd.Timestamp(adm) + pd.Timedelta(hours=h, minutes=10)
            vals = {
                "8867-4": 80 + 3 * ramp + rng.normal(0, 4),
                "8310-5": 37 + 0.15 * ramp + rng.normal(0, 0.2),
                "8478-0": 80 - 2.5 * ramp + rng.normal(0, 4),
                "9279-1": 16 + 0.6 * ramp + rng.normal(0, 1.5),
            }
            if h % 8 == 0:
                vals["2524-7"] = 1.0 + 0.2 * ramp
            for code, v in vals.items():
                obs.append({"patient_id": p, "effective_time": t, "loinc": code, "value": v})
            labels.append(
                {
                    "patient_id": p,
                    "time": pd.Timestamp(adm) + pd.Timedelta(hours=h),
                    "label": "sepsis_physionet2019",
                    "value": int(h >= onset - 6),
                }
            )
    return pd.DataFrame(obs), pd.DataFrame(pats), pd.DataFrame(labels)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return synthetic_cohort()


def test_cohort_grid_from_canonical_tables(cohort: Cohort) -> None:
    g = cohort.grid
    assert list(g.columns[:3]) == ["patient_id", "hour", "sepsis"]
    assert set(VARIABLE_NAMES) <= set(g.columns)
    assert g.groupby("patient_id")["hour"].apply(lambda h: (np.diff(h) == 1).all()).all()
    assert g["HR"].notna().all() and g["Lactate"].notna().mean() == pytest.approx(1 / 8, abs=0.03)


def test_any_canonical_export_loads(tmp_path: Path) -> None:
    obs, pats, labels = synthetic_tables(20, seed=4)
    obs.to_parquet(tmp_path / "observations.parquet")
    pats.to_parquet(tmp_path / "patients.parquet")
    labels.to_parquet(tmp_path / "labels.parquet")
    a = load_cohort(tmp_path)
    b = build_cohort(obs, pats, labels)
    pd.testing.assert_frame_equal(a.grid, b.grid)
    (tmp_path / "labels.parquet").unlink()  # no labels: every hour up to the last observation
    c = load_cohort(tmp_path)
    assert (c.grid["sepsis"] == -1).all() and len(c.grid) == len(b.grid)
    with pytest.raises(CohortError, match="no such file"):
        load_cohort(tmp_path / "nowhere")
    (tmp_path / "observations.parquet").unlink()
    with pytest.raises(CohortError, match=r"no observations\.parquet"):
        load_cohort(tmp_path)


def test_sites_are_the_sources_where_it_names_them_else_the_units() -> None:
    """A source that says where each patient was (eICU: the hospital's region) is held out by
    that; otherwise by ICU unit; a task the source has no outcome for is refused by name."""
    from vitaltwin.risk import RiskStudyConfig, run_study, sites_of
    from vitaltwin.risk._study import _hospitals_per_site

    obs, pats, labels = synthetic_tables(30, seed=5)
    by_unit = build_cohort(obs, pats, labels)
    assert set(sites_of(by_unit)) == {"MICU", "SICU"} and not _hospitals_per_site(
        by_unit, sites_of(by_unit)
    )
    ids = pats["patient_id"].to_numpy()
    where = pd.DataFrame(
        {"site": np.where(np.arange(30) < 10, "West", "South"),
         "hospital": [f"hospital {i % 4}" for i in range(30)]}, index=ids)  # fmt: skip
    by_region = build_cohort(obs, pats, labels, sites=where)
    site = pd.Series(sites_of(by_region), index=by_region.grid["patient_id"])
    assert site.groupby(level=0).first().to_dict() == where["site"].to_dict()
    assert _hospitals_per_site(by_region, sites_of(by_region)) == {"South": 4, "West": 4}
    unlabelled = build_cohort(obs, pats, None, sites=where)
    cfg = RiskStudyConfig(folds=2, tasks=("sepsis",), twin=False, model_params=QUICK)
    with pytest.raises(ValueError, match=r"no sepsis .* 0 positive and 0 negative hours"):
        run_study(unlabelled, cfg)


@pytest.mark.skipif(not EICU_DEMO.exists(), reason="eICU demo not in ../shared/data")
def test_the_eicu_demo_is_a_cohort_of_regions_of_hospitals() -> None:
    """The demo's stays, their sites the census regions of their hospitals; no sepsis
    labels, but cuff pressures enough to label sustained hypotension."""
    from vitaltwin.risk import labels_for, sites_of

    c = load_cohort(EICU_DEMO)
    pid = c.grid["patient_id"].to_numpy()
    site = pd.Series(sites_of(c), index=pid).groupby(level=0).first()
    assert set(site) == {"Midwest", "South", "West", "Northeast", "region not stated"}
    assert c.n_patients == 2326  # the stays with a value charted (of 2,520)
    assert c.patients["hospital"].nunique() == 185  # one hospital's stays chart none
    assert (c.grid["sepsis"] == -1).all() and c.grid["HR"].isna().all()
    y = labels_for("deterioration", c)
    positive = pd.Series(y == 1).groupby(pid).any()
    assert 500 < positive.sum() < c.n_patients / 2
    # asked for sepsis by name: refused with the reason, no traceback
    res = CliRunner().invoke(app, ["validate", "risk", "--data", str(EICU_DEMO), "--task",
                                   "sepsis", "--no-twin", "--no-register"])  # fmt: skip
    assert res.exit_code == 2 and "no sepsis" in res.output and "Traceback" not in res.output


def test_features_use_only_the_past(cohort: Cohort) -> None:
    full = raw_features(cohort)
    cut = cohort.grid["hour"] <= 15  # every stay truncated after hour 15
    trunc = Cohort(cohort.grid[cut].reset_index(drop=True), cohort.patients, "truncated")
    part = raw_features(trunc)
    pd.testing.assert_frame_equal(
        full[cut.to_numpy()].reset_index(drop=True), part.reset_index(drop=True)
    )
    # the ages, counts and scores mean what they say
    first = cohort.grid.index[cohort.grid["patient_id"] == "s0000"]
    f = full.loc[first]
    assert f["Lactate_age_h"].iloc[3] == 3 and f["HR_n"].iloc[4] == 5
    assert f["Lactate_age_h"].iloc[8] == 0


def test_deterioration_label_by_hand() -> None:
    maps = [80, 70, 60, 60, 80, 62, 90, 50, 50]
    grid = pd.DataFrame({"patient_id": "x", "hour": range(9), "sepsis": 0})
    for v in VARIABLE_NAMES:
        grid[v] = np.nan
    grid["MAP"] = maps
    c = Cohort(grid, pd.DataFrame(index=["x"]), "hand")
    y = deterioration_labels(c, horizon_h=2, sustain_h=2)
    # sustained starts at hours 2 and 7; hours with last MAP < 65 are not eligible
    assert y.tolist() == [1, 1, -1, -1, 0, -1, 1, -1, -1]


# -- the estimator ---------------------------------------------------------------------------


def test_risk_model_learns_saves_and_flags(cohort: Cohort, tmp_path: Path) -> None:
    X = raw_features(cohort)
    y = cohort.grid["sepsis"].to_numpy()
    pid = cohort.grid["patient_id"].to_numpy()
    m = RiskModel(**QUICK).fit(X, y, pid)
    assert m.validation_auroc_ > 0.8
    assert 0 < m.threshold_ < 1
    p = m.predict_proba(X)
    back = RiskModel.load(m.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.predict_proba(X), p)
    assert back.threshold_ == m.threshold_
    odd = X.iloc[:3].copy()
    odd["HR"] = [85.0, 400.0, np.nan]
    assert m.low_confidence(odd).tolist() == [False, True, False]
    with pytest.raises(RiskModelError, match="missing"):
        m.predict_proba(X.drop(columns=["HR"]))
    # LightGBM's SHAP contributions add up to the boosted logit the probability comes from
    c = m.contributions(X.iloc[:50])
    a, b = m.recalibration_
    np.testing.assert_allclose(expit(a + b * c.sum(axis=1)), p[:50], rtol=1e-5)
    top = m.top_factors(X.iloc[:50], k=3)
    assert all(len(t) == 3 for t in top)
    assert {f for t in top for f, _ in t} <= set(X.columns)
    with pytest.raises(RiskModelError, match="single class"):
        RiskModel(**QUICK).fit(X, np.zeros(len(X), int), pid)


def test_risk_model_cross_fits_an_ensemble(cohort: Cohort) -> None:
    X = raw_features(cohort)
    y = cohort.grid["sepsis"].to_numpy()
    pid = cohort.grid["patient_id"].to_numpy()
    m = RiskModel(**{**QUICK, "inner_folds": 3}).fit(X, y, pid)
    assert len(m.boosters_) == len(m.iterations_) == 3
    # every booster keeps the one round count chosen on the mean inner-fold validation AUROC
    assert [b.current_iteration() for b in m.boosters_] == m.iterations_
    assert len(set(m.iterations_)) == 1 and m.iterations_[0] < QUICK["max_rounds"]
    Xn = X.to_numpy(np.float32)
    single = [np.clip(np.asarray(b.predict(Xn)), 1e-6, 1 - 1e-6) for b in m.boosters_]
    z = np.mean([np.log(q / (1 - q)) for q in single], axis=0)
    a, b = m.recalibration_
    np.testing.assert_allclose(m.predict_proba(X), 1 / (1 + np.exp(-(a + b * z))), rtol=1e-10)
    # the members differ: each saw other patients
    assert not np.allclose(single[0], single[1])
    # out-of-fold scores are honest: below the ensemble's AUROC on rows it was trained on
    assert m.validation_auroc_ < roc_auc_score(y, m.predict_proba(X))
    with pytest.raises(RiskModelError, match="inner_folds"):
        RiskModel(inner_folds=1).fit(X, y, pid)
    few = np.isin(pid, np.unique(pid)[:2])
    with pytest.raises(RiskModelError, match="cannot fill"):
        RiskModel(**QUICK).fit(X[few], y[few], pid[few])


@pytest.mark.slow
def test_residual_stage_boosts_from_the_first_stage(cohort: Cohort, tmp_path: Path) -> None:
    X = raw_features(cohort)
    y = cohort.grid["sepsis"].to_numpy()
    pid = cohort.grid["patient_id"].to_numpy()
    # a weak first stage (temperature and demographics) and heart rate in the second
    keep = [c for c in X.columns if c.startswith("Temp")] + ["age_years", "male", "iculos_h"]
    X = X[keep + [c for c in X.columns if c.startswith("HR")]]
    hr = [c for c in X.columns if c.startswith("HR")]
    base = X.drop(columns=hr)
    one = RiskModel(**QUICK).fit(base, y, pid)
    two = RiskModel(**QUICK, residual_features=tuple(hr)).fit(X, y, pid)
    c = two.contributions(X.iloc[:40])  # through both stages, they add up to the logit
    np.testing.assert_allclose(
        expit(two.recalibration_[0] + two.recalibration_[1] * c.sum(axis=1)),
        two.predict_proba(X.iloc[:40]),
        rtol=1e-5,
    )
    # the first stage is the single-stage model on the other features, booster for booster
    assert two.iterations_ == one.iterations_
    assert two.feature_names_ == [*base.columns, *hr]
    Xb = base.to_numpy(np.float32)
    for b1, b2 in zip(one.boosters_, two.boosters_, strict=True):
        np.testing.assert_array_equal(b1.predict(Xb), b2.predict(Xb))
    # heart rate carries signal the rest does not: the second stage finds it out of fold
    assert len(two.residual_boosters_) == QUICK.get("inner_folds", 5)
    assert 1 - two.validation_auroc_ < 0.7 * (1 - one.validation_auroc_)
    # the score: first-stage mean logit, recalibrated, plus the mean second-stage increment
    q = np.clip(np.asarray([b.predict(Xb) for b in two.boosters_], np.float64), 1e-6, 1 - 1e-6)
    z1 = np.mean(np.log(q / (1 - q)), axis=0)
    a1, b1_ = two.base_recalibration_
    inc = np.mean([b.predict(X[hr].to_numpy(np.float32), raw_score=True)
                   for b in two.residual_boosters_], axis=0)  # fmt: skip
    a, b = two.recalibration_
    z = a + b * (a1 + b1_ * z1 + inc)
    np.testing.assert_allclose(two.predict_proba(X), 1 / (1 + np.exp(-z)), rtol=1e-6)
    back = RiskModel.load(two.save(tmp_path / "two"))
    np.testing.assert_array_equal(back.predict_proba(X), two.predict_proba(X))
    assert back.residual_iterations_ == two.residual_iterations_
    assert set(two.importance().index) == set(X.columns)
    # noise in the second stage: it stops early and changes little
    noisy = base.assign(noise=np.random.default_rng(1).normal(size=len(base)))
    three = RiskModel(**QUICK, residual_features=("noise",)).fit(noisy, y, pid)
    assert abs(three.validation_auroc_ - one.validation_auroc_) < 0.005
    with pytest.raises(RiskModelError, match="residual features missing"):
        RiskModel(**QUICK, residual_features=("nope",)).fit(X, y, pid)
    # a fitted first stage is taken as it is, not fitted again
    reuse = RiskModel(**QUICK, residual_features=tuple(hr)).fit(X, y, pid, first_stage=one)
    assert reuse.boosters_ is one.boosters_
    np.testing.assert_array_equal(reuse.predict_proba(X), two.predict_proba(X))
    for other, msg in (
        (RiskModel(**{**QUICK, "num_leaves": 7}).fit(base, y, pid), "other hyperparameters"),
        (RiskModel.load(one.save(tmp_path / "one")), "fitted in this session"),
        (RiskModel(**QUICK).fit(base.drop(columns=["male"]), y, pid), "other features"),
    ):
        with pytest.raises(RiskModelError, match=msg):
            RiskModel(**QUICK, residual_features=tuple(hr)).fit(X, y, pid, first_stage=other)


@pytest.mark.slow
def test_study_fits_the_hybrid_as_a_second_stage(cohort: Cohort) -> None:
    from vitaltwin.risk import RiskStudyConfig, run_study

    rng = np.random.default_rng(2)
    # stand-ins for the twin's estimates: one informative (a noisy copy of the charted heart
    # rate), one pure noise
    hr = raw_features(cohort)["HR"].to_numpy()
    twin = pd.DataFrame(
        {"twin_hr": hr + rng.normal(0, 2, hr.size), "twin_noise": rng.normal(size=hr.size)},
        index=cohort.grid.index,
    )
    cfg = RiskStudyConfig(
        folds=2,
        n_boot=5,
        tasks=("sepsis",),
        missing_fractions=(),
        model_params=QUICK,
        feature_sets=("raw",),
        leave_site_out=False,
    )  # fmt: skip  (transfer: its own test)
    study = run_study(cohort, cfg, twin)
    raw, hybrid = study.models[("sepsis", "raw")], study.models[("sepsis", "hybrid")]
    assert hybrid.residual_features == ("twin_hr", "twin_noise")
    assert hybrid.iterations_ == raw.iterations_ and raw.residual_boosters_ == []
    test = study.results["sepsis"].test
    assert test["hybrid"]["residual_iterations"] == hybrid.residual_iterations_
    assert len(test["hybrid"]["residual_iterations"]) == 5
    assert test["raw"]["residual_iterations"] == []
    assert study.cohort_summary["features"]["hybrid"][-2:] == ["twin_hr", "twin_noise"]
    # age bands youngest first in the subgroup table
    from vitaltwin.risk._study import AGE_BAND_LABELS

    bands = [g["group"] for g in test["raw"]["subgroups"]["age_band"]["by_group"]]
    assert len(bands) > 2 and bands == [b for b in AGE_BAND_LABELS if b in bands]


def test_model_params_from_the_command_line() -> None:
    assert RiskModel.parse_params(["num_leaves=7", " learning_rate = 0.02"]) == {
        "num_leaves": 7,
        "learning_rate": 0.02,
    }
    for bad, msg in (
        ("num_leaf=7", "unknown name 'num_leaf'"),
        ("num_leaves=0.5", "not a valid int"),
        ("num_leaves", "NAME=VALUE"),
        ("task=sepsis", "unknown name 'task'"),
    ):
        with pytest.raises(RiskModelError, match=msg):
            RiskModel.parse_params([bad])


def test_threshold_bagged_over_patient_resamples(cohort: Cohort) -> None:
    g = cohort.grid
    pid = g["patient_id"].to_numpy()
    y = g["sepsis"].to_numpy(np.int64)
    rng = np.random.default_rng(3)
    p = np.clip(0.02 + 0.3 * y + rng.normal(0, 0.1, y.size), 0.001, 0.999)
    # n_boot = 0: the plain best candidate, as a direct search finds it
    t0, u0 = best_threshold("sepsis", pid, y, p)
    cands = np.unique(np.quantile(p, np.linspace(0.0, 0.999, 200)))
    direct = [normalized_utility(pid, y, (p >= t).astype(int)) for t in cands]
    assert t0 == cands[int(np.argmax(direct))] and u0 == pytest.approx(max(direct), abs=1e-12)
    # bagged: inside the candidates' range, its utility reported at the bagged threshold
    tb, ub = best_threshold("sepsis", pid, y, p, n_boot=50, seed=1)
    assert cands[0] <= tb <= cands[-1] and tb != t0
    assert ub == pytest.approx(normalized_utility(pid, y, (p >= tb).astype(int)), abs=1e-12)
    assert best_threshold("sepsis", pid, y, p, n_boot=50, seed=1) == (tb, ub)
    # Youden's J the same way
    tj, j = best_threshold("deterioration", pid, y, p, n_boot=50, seed=1)
    assert j == pytest.approx(np.mean(p[y == 1] >= tj) + np.mean(p[y == 0] < tj) - 1.0)


def test_auroc_split_by_where_negatives_come_from() -> None:
    # patient a never septic; patient b septic from its third hour
    rows = Rows(
        np.array(["a", "a", "a", "b", "b", "b", "b"], dtype=object),
        np.array([0, 1, 2, 0, 1, 2, 3]),
        np.array([0, 0, 0, 0, 0, 1, 1]),
        np.array([0.1, 0.2, 0.5, 0.6, 0.3, 0.4, 0.7]),
        np.zeros(7, bool),
    )
    a = auroc_by_negatives(rows)
    # positives 0.4 and 0.7 against a's 0.1, 0.2, 0.5: 5 of 6 pairs ranked right
    assert a["auroc_vs_non_septic"] == pytest.approx(5 / 6)
    # against b's own earlier hours 0.6 and 0.3: 3 of 4
    assert a["auroc_vs_septic_before"] == pytest.approx(3 / 4)
    # b's earlier hours ranked last: only 0.4 < a's 0.5 remains wrong, 9 of 10 pairs
    assert a["auroc_timing_ceiling"] == pytest.approx(9 / 10)
    # within b's stay alone the same 3 of 4 pairs; one stay has earlier hours
    assert a["auroc_within_stay"] == pytest.approx(3 / 4)
    assert a["septic_stays_timed"] == 1


def test_within_stay_auroc_is_per_stay_not_pooled() -> None:
    # each septic stay's score rises at its label, but stay c sits higher throughout: pooled
    # against the septic stays' earlier hours the ranking is poor, within each stay it is perfect
    rows = Rows(
        np.array(["b", "b", "b", "c", "c", "c", "d", "d"], dtype=object),
        np.array([0, 1, 2, 0, 1, 2, 0, 1]),
        np.array([0, 0, 1, 0, 0, 1, 1, 1]),
        np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.5, 0.5]),
        np.zeros(8, bool),
    )
    a = auroc_by_negatives(rows)
    assert a["auroc_within_stay"] == 1.0 and a["septic_stays_timed"] == 2  # d: no earlier hours
    # positives 0.3, 0.8, 0.5, 0.5 against 0.1, 0.2, 0.6, 0.7: 10 of 16 pairs
    assert a["auroc_vs_septic_before"] == pytest.approx(10 / 16)


def test_calibration_of_calibrated_probabilities() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.6, 40_000)
    y = (rng.random(p.size) < p).astype(np.int64)
    a, b = calibration(y, p)
    assert abs(a) < 0.05 and abs(b - 1) < 0.06
    a2, _ = calibration(y, np.clip(p * 1.8, 0, 0.99))
    assert a2 < -0.2  # over-prediction shows as a negative intercept


# -- registry and monitoring --------------------------------------------------------------------


def test_registry_aliases_versions_on_scores_and_rollback(cohort: Cohort, tmp_path: Path) -> None:
    X = raw_features(cohort)
    y = cohort.grid["sepsis"].to_numpy()
    pid = cohort.grid["patient_id"].to_numpy()
    reg = Registry(tmp_path / "reg")
    m1 = RiskModel(**QUICK).fit(X, y, pid)
    m2 = RiskModel(**{**QUICK, "random_state": 5}).fit(X, y, pid)
    r1 = reg.register(
        "sepsis", m1, data_sha256="a" * 64, metrics={"cv_auroc": 0.9}, tags={"split": "seed=1"}
    )
    r2 = reg.register("sepsis", m2, data_sha256="a" * 64, metrics={"cv_auroc": 0.91})
    assert reg.version_of("sepsis", CHAMPION) == r1.version
    assert reg.version_of("sepsis", CHALLENGER) == r2.version
    # provenance tags are on the version itself (what `risk monitor --held-out` reads)
    assert reg.versions("sepsis").set_index("version").loc[int(r1.version), "split"] == "seed=1"
    scorer = reg.load("sepsis", CHAMPION)
    card = reg.card(scorer)  # the dashboard's model card
    assert card["model"] == f"sepsis v{r1.version} (champion)" and card["cv_auroc"] == "0.900"
    assert (
        card["training data (SHA-256)"] == "a" * 64 and "decision support" in card["intended use"]
    )
    s = scorer.score(cohort, X, explain=True, chunk=700)
    assert (s["model_version"] == r1.version).all() and (s["model_name"] == "sepsis").all()
    np.testing.assert_array_equal(s["probability"].to_numpy(), m1.predict_proba(X))
    # each score with its top contributing factors: the largest SHAP values of its row
    row = 1234
    shap = m1.contributions(X.iloc[[row]]).drop(columns="bias").iloc[0]
    top = json.loads(s["top_factors"].iloc[row])
    assert len(top) == 5 and top[0][0] == shap.abs().idxmax()
    assert top[0][1] == pytest.approx(shap[top[0][0]], abs=1e-4)
    assert reg.promote("sepsis") == r2.version
    assert reg.load("sepsis").version == r2.version
    assert reg.rollback("sepsis") == r1.version
    assert reg.load("sepsis", CHAMPION).version == r1.version
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback("sepsis")
    with pytest.raises(RegistryError, match="no model"):
        reg.load("nope")


@pytest.mark.slow
def test_monitoring_policy(cohort: Cohort) -> None:
    X = raw_features(cohort)
    y = cohort.grid["sepsis"].to_numpy()
    pid = cohort.grid["patient_id"].to_numpy()
    # fitted on half the patients, monitored on the other half in two windows
    fit = np.isin(pid, np.unique(pid)[::2])
    m = RiskModel(**QUICK).fit(X[fit], y[fit], pid[fit])
    X, y, pid = X[~fit], y[~fit], pid[~fit]
    window = np.arange(len(X)) * 2 // len(X)
    ok = monitor(m, X, y, window, pid, reference_auroc=m.validation_auroc_)
    assert ok.decision == "ok", ok.to_dict()
    assert {(w.population, w.performance) for w in ok.windows} == {("stable", "holds")}
    assert all(w.flag_rate < 0.03 and w.alert_rate > 0 for w in ok.windows)
    # older patients than any in training (age is no sepsis signal here): the population
    # changed, performance holds -- investigate the case mix, do not retrain
    older = monitor(m, X.assign(age_years=X["age_years"] + 60), y, window, pid,
                    reference_auroc=m.validation_auroc_)  # fmt: skip
    assert older.decision == "investigate" and older.population_changed
    assert not older.performance_dropped, older.to_dict()
    assert all(w.actions[-1].startswith("investigate: population changed (") and
               w.actions[-1].endswith("performance holds") for w in older.windows)  # fmt: skip
    for w in ok.windows:
        assert w.auroc_ci95[0] < w.auroc < w.auroc_ci95[1]
        assert w.slope_ci95[0] < w.calibration_slope < w.slope_ci95[1]
    # a point estimate past the limit whose interval still reaches it: investigate, not retrain
    first = window == 0
    just_past = ok.windows[0].auroc + RetrainingPolicy().max_auroc_drop + 1e-6
    unsure = monitor(m, X[first], y[first], window[first], pid[first], just_past)
    assert unsure.decision == "investigate", unsure.to_dict()
    assert unsure.windows[0].actions[0].startswith("investigate: AUROC")
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    # a shifted population and outcomes the model no longer predicts
    shifted = X.copy()
    for c in shifted.columns:
        if c.startswith(("HR", "Temp", "MAP", "Resp")):
            shifted[c] = shifted[c] + 3 * shifted[c].std()
    flipped = np.where(y >= 0, 1 - y, y)
    bad = monitor(m, shifted, flipped, window, pid, reference_auroc=m.validation_auroc_)
    assert bad.decision == "retrain" and bad.population_changed and bad.performance_dropped
    assert all(w.actions[0].startswith("retrain: AUROC") for w in bad.windows), bad.to_dict()

    class Overconfident(RiskModel):
        """The fitted model with its logits tripled: calibration slope about 1/3."""

        def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
            q = np.clip(m.predict_proba(X), 1e-9, 1 - 1e-9)
            out: npt.NDArray[np.float64] = 1 / (1 + (q / (1 - q)) ** -3)
            return out

    sharp = Overconfident()
    sharp.__dict__.update(m.__dict__)
    over = monitor(sharp, X, y, window, pid, reference_auroc=m.validation_auroc_)
    assert over.decision == "retrain", over.to_dict()
    for w in over.windows:
        assert w.slope_ci95[1] < 0.8
        assert any(a.startswith("retrain: calibration slope") for a in w.actions)
    assert any("PSI" in a for w in bad.windows for a in w.actions)
    allowed, why = may_promote(bad, ok)
    assert allowed, why
    assert not may_promote(ok, bad)[0]


@pytest.mark.slow
@needs_set_a
def test_validate_risk_command_end_to_end(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "validate", "risk", "--data", str(SET_A), "--patients", "400", "--folds", "2",
            "--boot", "10", "--quick", "--no-twin", "--out", str(tmp_path / "r"),
            "--registry", str(tmp_path / "reg"),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r" / "risk_report.html").read_text()
    assert "data:image/png;base64" in html and "Cross-validation" in html
    # set A's stay lengths and the per-stay AUROC are in the report
    assert "Hours per stay" in html and "Stay length differs between the classes" in html
    assert "within stay / timing ceiling" in html
    # set A's units held out in turn (those with 5 septic patients among these 400), beside
    # cross-validation of the same patients, and the feature set chosen on them
    assert "feature set chosen on the leave-site-out utility" in " ".join(res.output.split())
    assert "Transfer: each site held out of training" in html and "Most shifted" in html
    report = json.loads((tmp_path / "r" / "risk_report.json").read_text())["results"]["sepsis"]
    held = [s["site"] for s in report["sites"]["physiology"]]
    assert len(held) >= 2 and set(held) <= {"MICU", "SICU", "unit not stated"}
    assert report["within_sites"]["raw"]["auroc"] != report["transfer"]["raw"]["pooled"]["auroc"]
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(
        app,
        [
            "risk", "score", "--data", str(SET_A), "--out", str(out),
            "--registry", str(tmp_path / "reg"),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = pd.read_parquet(out)
    assert (s["model_version"] == "1").all() and s["probability"].between(0, 1).all()
    # held-out monitoring refuses data other than the model's own development set
    res = CliRunner().invoke(
        app,
        [
            "risk",
            "monitor",
            "--data",
            str(SET_A),
            "--held-out",
            "--registry",
            str(tmp_path / "reg"),
        ],
    )
    assert res.exit_code == 2 and "developed on" in res.output, res.output


@pytest.mark.slow
def test_twin_features_use_only_the_past() -> None:
    from vitaltwin.risk import twin_features

    c = synthetic_cohort(n=40, seed=3)
    first = c.grid.groupby("patient_id")["hour"].max()
    ids = first.index[first >= 24][:3].to_numpy()
    c = c.subset(ids)
    c = Cohort(c.grid[c.grid["hour"] < 24].reset_index(drop=True), c.patients, "equal stays")
    full = twin_features(c, n_members=8)
    cut = (c.grid["hour"] <= 12).to_numpy()
    part = twin_features(Cohort(c.grid[cut].reset_index(drop=True), c.patients, "cut"), n_members=8)
    np.testing.assert_allclose(full[cut].to_numpy(), part.to_numpy(), rtol=1e-9)
    assert np.isfinite(full.to_numpy()).all()
    assert full["twin_p_map_below_65"].between(0, 1).all()
    assert (full["twin_blood_volume_ml"] > 2000).all()


def test_stay_lengths_by_sepsis_status() -> None:
    from vitaltwin.risk import Cohort, stay_lengths

    # a: never septic, 60 h; b: never septic, 10 h; c: septic from hour 20, ends at hour 28
    pid = ["a"] * 60 + ["b"] * 10 + ["c"] * 29
    hour = [*range(60), *range(10), *range(29)]
    y = [0] * 70 + [0] * 20 + [1] * 9
    grid = pd.DataFrame({"patient_id": pid, "hour": hour, "sepsis": y})
    s = stay_lengths(Cohort(grid, pd.DataFrame(), "test"))
    assert s["septic"] == [29.0, 29.0, 29.0]
    assert s["non_septic"] == pytest.approx(np.quantile([60, 10], [0.25, 0.5, 0.75]).tolist())
    assert s["non_septic_hours_after_48h"] == pytest.approx(12 / 70)
    assert s["septic_hours_after_first_positive"] == [8.0, 8.0, 8.0]
    assert s["auroc_hour_of_stay"] == pytest.approx(roc_auc_score(y, hour))
    # no labels in the source: nothing is septic and the hour's AUROC is undefined
    unlabelled = stay_lengths(Cohort(grid.assign(sepsis=-1), pd.DataFrame(), "test"))
    assert unlabelled["septic"] == [] and unlabelled["auroc_hour_of_stay"] is None


# -- online scoring and the estimator contract ---------------------------------------------


def test_online_scoring_gives_the_batch_scores(cohort: Cohort) -> None:
    X = raw_features(cohort)
    g = cohort.grid
    m = RiskModel(**QUICK).fit(X, g["sepsis"].to_numpy(), g["patient_id"].to_numpy())
    batch = m.predict_proba(X)
    online = OnlineScorer(m)
    values = g[list(VARIABLE_NAMES)].to_numpy(dtype=np.float64)
    hours = g["hour"].to_numpy(dtype=np.int64)
    pat = cohort.patients
    for pid in ("s0000", "s0001", "s0002"):
        online.admit(
            pid,
            sex=str(pat["sex"][pid]),
            age_years=float(pat["age_years"][pid]),
            icu_admission_time=pd.Timestamp(pat["icu_admission_time"][pid]).to_pydatetime(),
            icu_unit=str(pat["icu_unit"][pid]),
            hosp_adm_h=float(pat["hosp_adm_h"][pid]),
        )
        for i in np.flatnonzero(g["patient_id"].to_numpy() == pid):
            # one patient-hour at a time, with only what was measured in it
            row = values[i]
            measured = {v: float(x) for v, x in zip(VARIABLE_NAMES, row, strict=True) if x == x}
            got = online.score(pid, int(hours[i]), measured)
            assert got.probability == batch[i], (pid, int(hours[i]))
            assert got.alert == (batch[i] >= m.threshold_)
    with pytest.raises(RiskModelError, match="in order"):
        online.score("s0000", 0, {})
    with pytest.raises(RiskModelError, match="not admitted"):
        online.score("nobody", 0, {})


def test_risk_model_follows_the_estimator_contract() -> None:
    from sklearn.base import clone

    m = RiskModel(task="deterioration", num_leaves=7, residual_features=("twin_a",))
    c = clone(m)
    assert c is not m and c.get_params() == m.get_params()
    assert c.set_params(num_leaves=9).num_leaves == 9
    with pytest.raises(TypeError):
        RiskModel("sepsis")  # type: ignore[call-arg]  # hyperparameters are keyword-only
    assert risk_task("deterioration").criterion == "auroc"
    with pytest.raises(ValueError, match="unknown task"):
        risk_task("delirium")


# -- transfer: leave-one-site-out, process features, site shift ------------------------------


def test_process_features_are_counts_intervals_and_time_in_stay(cohort: Cohort) -> None:
    from vitaltwin.risk import process_features

    cols = raw_features(cohort).columns
    proc = set(process_features(cols))
    assert {"HR_n", "HR_n24h", "HR_n6h", "Lactate_age_h", "labs_n24h", "iculos_h",
            "hosp_adm_h", "hospital_los_h"} <= proc  # fmt: skip
    assert not {"HR", "HR_change", "HR_mean6h", "HR_dev", "news2", "age_years", "male"} & proc
    assert 0.1 < len(proc) / len(cols) < 0.5


@pytest.mark.slow
def test_leave_site_out_never_trains_on_the_site_it_scores(
    cohort: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitaltwin.risk import RiskStudyConfig, process_features, run_study, sites_of

    trained_on: list[set[str]] = []
    fit = RiskModel.fit

    def recording_fit(self: RiskModel, X: pd.DataFrame, y: Any, pid: Any, **kw: Any) -> Any:
        trained_on.append(set(map(str, pid)))
        return fit(self, X, y, pid, **kw)

    monkeypatch.setattr(RiskModel, "fit", recording_fit)
    cfg = RiskStudyConfig(folds=2, n_boot=5, tasks=("sepsis",), missing_fractions=(),
                          model_params=QUICK, twin=False, min_site_patients=20)  # fmt: skip
    study = run_study(cohort, cfg)
    r = study.results["sepsis"]
    site = pd.Series(sites_of(cohort), index=cohort.grid["patient_id"]).groupby(level=0).first()
    held = [s.site for s in r.sites["raw"]]
    assert sorted(held) == ["MICU", "SICU"]
    # fits: (2 folds + final + 2 sites) x (raw, physiology); the last two of each feature
    # set are the leave-site-out ones, in the order of the held-out sites
    assert len(trained_on) == 10
    lso = trained_on[6:8] + trained_on[8:10]
    for ids, held_site in zip(lso, held * 2, strict=True):
        assert ids and not any(site[p] == held_site for p in ids)  # never its own site
    # every model and baseline pooled and per site, beside the site's within-CV figures
    assert set(r.transfer) == {"raw", "physiology", "qsofa", "sirs", "news2"}
    for per in r.sites.values():
        for s in per:
            assert s.patients > 20 and s.positive_patients >= 5
            assert {"auroc", "utility"} <= set(s.transfer) and {"auroc", "utility"} <= set(s.within)
    assert r.transfer["raw"].pooled["patients"] == sum(s.patients for s in r.sites["raw"])
    # each out-of-site model adapted at its site: silent mode first, then local labels
    curve = r.adaptation["raw"]["MICU"]
    assert curve[0]["local_patients"] == 0 and curve[0]["chosen"] == "silent threshold"
    sizes = [c["local_patients"] for c in curve]
    # the standard sizes the site has, then (a small site) every adaptation patient it has
    assert sizes == sorted(sizes) and set(sizes[1:-1]) <= {100, 500} and sizes[-1] < 2000
    # what drives the scores, overall and per subgroup (the sepsis signal: HR, Temp, MAP, Resp)
    e = r.test["raw"]["explanation"]
    assert any(x["feature"].startswith(("HR", "Temp", "MAP", "Resp")) for x in e["overall"][:3])
    assert 0 < sum(x["share"] for x in e["overall"]) <= 1 + 1e-9
    assert set(e["groups"]["icu_unit"]) == {"MICU", "SICU"} and set(e["groups"]["sex"]) == {
        "female",
        "male",
    }
    # the shift flag checked out of site: its rate, and AUROC flagged vs not
    assert 0 <= r.transfer["raw"].pooled["flag_rate"] <= 1
    assert {"flag_rate", "auroc_flagged", "auroc_not_flagged"} <= set(r.sites["raw"][0].transfer)
    assert "flag_rate" not in r.transfer["news2"].pooled  # a score has no training data
    # the physiology set holds no process feature; the shift summary covers every raw feature
    assert not set(process_features(study.cohort_summary["features"]["physiology"]))
    assert set(r.shift["max_psi"]) == set(study.cohort_summary["features"]["raw"])
    assert "transfer" in r.to_dict() and r.to_dict()["sites"]["raw"][0]["site"] in held


def test_the_feature_set_is_chosen_on_the_transfer_estimate() -> None:
    from vitaltwin.risk import RiskStudy, RiskStudyConfig, champion_feature_set
    from vitaltwin.risk._study import CvResult, TaskResults

    def res(**u: float) -> dict[str, CvResult]:
        return {k: CvResult({"utility": v}) for k, v in u.items()}

    cv = res(physiology=0.40, raw=0.45)  # within-site: the process features seem to help

    def study(transfer: dict[str, CvResult]) -> RiskStudy:
        results = {"sepsis": TaskResults(cv, {}, [], transfer)}
        return RiskStudy(RiskStudyConfig(), {}, results, {}, {})

    assert champion_feature_set(study({}), "sepsis") == "raw"  # no transfer figures: CV
    assert champion_feature_set(study(res(physiology=0.33, raw=0.30)), "sepsis") == "physiology"
    assert champion_feature_set(study(res(physiology=0.33, raw=0.334)), "sepsis") == "physiology"
    assert champion_feature_set(study(res(physiology=0.33, raw=0.34)), "sepsis") == "raw"


def test_site_shift_finds_the_feature_that_moved() -> None:
    from vitaltwin.risk import site_shift

    rng = np.random.default_rng(0)
    n = 4000
    site = np.where(np.arange(n) % 2 == 0, "A", "B").astype(object)
    X = pd.DataFrame({"HR": rng.normal(80, 10, n), "HR_n": rng.poisson(5, n).astype(float),
                      "MAP": rng.normal(75, 8, n)})  # fmt: skip
    X.loc[site == "B", "HR_n"] += 6  # site B charts more often
    got = site_shift(X, site, np.ones(n, bool), seed=0)
    assert got["top"][0] == {"feature": "HR_n", "psi": got["max_psi"]["HR_n"],
                             "process": True}  # fmt: skip
    assert got["max_psi"]["HR_n"] > 0.25 > got["max_psi"]["HR"] and got["max_psi"]["MAP"] < 0.1
    assert got["median_psi_process"] > got["median_psi_physiology"]


def test_the_shift_flag_is_calibrated_and_names_what_moved() -> None:
    """About 1 % of hours like the training data's are flagged; a unit mix-up (ionized calcium
    in mmol/L read as total calcium in mg/dL) is flagged on every hour and named; a small
    assay offset is not; one absurd value alone does not flag an hour."""
    from vitaltwin.risk import ShiftReference

    rng = np.random.default_rng(0)
    n = 40_000

    def hours() -> pd.DataFrame:
        X = pd.DataFrame({"HR": rng.normal(85, 15, n), "MAP": rng.normal(78, 11, n),
                          "Calcium": rng.normal(8.4, 0.7, n), "Lactate": rng.lognormal(0.4, 0.5, n),
                          "age_years": rng.uniform(18, 95, n).round()})  # fmt: skip
        X.loc[rng.random(n) < 0.7, "Lactate"] = np.nan  # measured on 30 % of hours
        return X

    pid = np.repeat(np.arange(n // 40), 40)
    ref = ShiftReference.from_data(hours(), pid, seed=1)
    rates = [float(ref.flag(hours()).mean()) for _ in range(3)]
    assert all(0.005 < r < 0.016 for r in rates), rates
    mixed = hours().assign(Calcium=rng.normal(1.15, 0.08, n))
    assert ref.flag(mixed).mean() > 0.99
    surprise = ref.surprise(mixed.head(3))["Calcium"]
    assert ref.drivers(mixed.head(3), k=1) == [[("Calcium", s)] for s in surprise]
    assert ref.flag(hours().assign(Calcium=lambda d: d["Calcium"] - 0.2)).mean() < 0.03
    # just below the training range (a more sensitive assay): no more surprising than the
    # training data's own last half percentile; far outside it (an HR of 400 /min): flagged
    lowest = ref.quantiles[ref.names.index("Calcium")][0]
    hair = ref.surprise(hours().head(100).assign(Calcium=lowest - 0.05))["Calcium"]
    assert (hair < -np.log10(0.5 / 200) + 0.05).all()
    assert ref.flag(hours().head(2000).assign(HR=400.0)).mean() == 1.0
    # kept by a saved model: the same flags after loading
    back = ShiftReference(**ref.to_dict())
    np.testing.assert_array_equal(back.p_value(mixed.head(50)), ref.p_value(mixed.head(50)))


# -- safe adaptation at a new site ----------------------------------------------------------


def _site_split(cohort: Cohort) -> tuple[RiskModel, pd.DataFrame, Any]:
    """A model fitted on the MICU patients; the SICU patients' features with their heart rate
    read 12 /min higher (another site's monitors and case mix)."""
    from vitaltwin.risk import sites_of

    g = cohort.grid
    X = raw_features(cohort)
    y = g["sepsis"].to_numpy(np.int64)
    pid = g["patient_id"].to_numpy()
    micu = sites_of(cohort) == "MICU"
    model = RiskModel(**QUICK).fit(X[micu], y[micu], pid[micu])
    shifted = X[~micu].copy()
    hr = [c for c in shifted.columns if c == "HR" or c.startswith(("HR_mean", "HR_m"))]
    shifted[hr] += 12.0
    return model, shifted, ~micu


def test_silent_mode_resets_the_threshold_to_the_development_alert_rate(cohort: Cohort) -> None:
    from vitaltwin.risk import adapt

    model, X, site = _site_split(cohort)
    g = cohort.grid[site]
    before = model.threshold_
    assert model.alert_rate_ is not None and 0 < model.alert_rate_ < 1
    got = adapt(model, X, g["sepsis"], g["patient_id"], g["hour"], labels=False)
    assert got.chosen == "silent threshold" and model.threshold_ == before  # source untouched
    p = got.model.predict_proba(X)
    rate = float(np.mean(p >= got.model.threshold_))
    assert rate == pytest.approx(model.alert_rate_, abs=2 / len(X))
    assert abs(float(np.mean(model.predict_proba(X) >= before)) - model.alert_rate_) > abs(
        rate - model.alert_rate_
    )
    assert got.changes[0].startswith(f"threshold {before:.4f} -> {got.model.threshold_:.4f}")
    assert set(got.calibration_check) == {"calibration_intercept", "calibration_slope"}
    # a target rate given by hand
    half = adapt(model, X, g["sepsis"], g["patient_id"], g["hour"], labels=False,
                 alert_rate=model.alert_rate_ / 2)  # fmt: skip
    assert np.mean(p >= half.model.threshold_) == pytest.approx(model.alert_rate_ / 2, abs=0.01)


def test_adaptation_with_local_labels_compares_candidates_on_held_out_patients(
    cohort: Cohort,
) -> None:
    from vitaltwin.risk import adapt, learning_curve

    model, X, site = _site_split(cohort)
    g = cohort.grid[site]
    args = (model, X, g["sepsis"], g["patient_id"], g["hour"])
    got = adapt(*args, min_patients=20)
    assert set(got.candidates) == {"source", "silent threshold", "recalibrated", "continued"}
    assert got.chosen in got.candidates and got.patients["evaluation"] > 0
    n = got.patients["adaptation"] + got.patients["evaluation"]
    assert n == g["patient_id"].nunique()
    best = max(got.candidates.values(), key=lambda f: f["utility"])["utility"]
    assert got.candidates[got.chosen]["utility"] >= best - 0.005 - 1e-12
    if got.chosen == "recalibrated":
        assert got.model.recalibration_ != model.recalibration_
    curve = learning_curve(*args, sizes=(0, 20, 10_000))
    pool = got.patients["adaptation"]  # the same split: 30 % of the site's patients held out
    assert 20 < pool < 10_000
    # a size larger than the site is skipped, and the curve ends at every patient it has
    assert [c["local_patients"] for c in curve] == [0, 20, pool]
    assert curve[0]["chosen"] == "silent threshold"
    assert all(np.isfinite(c["utility"]) for c in curve)


def test_continued_training_learns_what_a_site_does_differently(
    cohort: Cohort, tmp_path: Path
) -> None:
    """A site where what the source model reads carries nothing (its hours' features
    shuffled among its rows) and temperature marks the septic hours: boosting continued from
    the source model learns that on the adaptation patients and scores the held-out ones
    better; the source is unchanged, the SHAP contributions still add up to the score, and the
    continued model saves and loads."""
    from vitaltwin.risk import adapt

    model, X, site = _site_split(cohort)
    g = cohort.grid[site]
    y = g["sepsis"].to_numpy(np.int64)
    rng = np.random.default_rng(3)
    X = X.iloc[rng.permutation(len(X))].set_axis(X.index)
    temp = [c for c in X.columns if c == "Temp" or c.startswith(("Temp_m", "Temp_last"))]
    X.loc[y == 1, temp] += 1.5
    before = model.predict_proba(X)
    got = adapt(model, X, y, g["patient_id"], g["hour"], min_patients=20)
    assert got.chosen == "continued", got.candidates
    cont, src = got.candidates["continued"], got.candidates["source"]
    assert cont["auroc"] > src["auroc"] + 0.05 and cont["utility"] > src["utility"]
    assert any(c.startswith("boosting continued on ") for c in got.changes)
    np.testing.assert_array_equal(model.predict_proba(X), before)  # the source untouched
    assert not model.site_boosters_ and got.model.site_boosters_
    assert got.model.boosters_ is model.boosters_  # shared, not refitted
    c = got.model.contributions(X.head(200))
    a, b = got.model.recalibration_
    np.testing.assert_allclose(expit(a + b * c.sum(axis=1)), got.model.predict_proba(X.head(200)),
                               rtol=1e-6)  # fmt: skip
    back = RiskModel.load(got.model.save(tmp_path / "continued"))
    np.testing.assert_allclose(back.predict_proba(X), got.model.predict_proba(X), rtol=1e-12)
    with pytest.raises(RiskModelError, match="continued at a site already"):
        got.model.continue_training(X, y, g["patient_id"])


@pytest.mark.slow
@needs_set_a
def test_risk_adapt_on_a_site_held_out_of_training(tmp_path: Path) -> None:
    """Develop without set A's stays of unstated unit, adapt to them: a registered challenger
    (the champion unchanged) whose report says what changed."""
    reg = str(tmp_path / "reg")
    res = CliRunner().invoke(app, [
        "validate", "risk", "--data", str(SET_A), "--patients", "600", "--folds", "2",
        "--boot", "5", "--quick", "--no-twin", "--task", "sepsis", "--out", str(tmp_path / "r"),
        "--registry", reg, "--exclude-site", "unit not stated",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, [
        "risk", "adapt", "--data", str(SET_A), "--site", "unit not stated", "--patients", "400",
        "--registry", reg, "--out", str(tmp_path / "a"),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "adapted to unit not stated" in out and "as a challenger (not promoted)" in out
    report = json.loads((tmp_path / "a" / "adaptation.json").read_text())
    assert report["site"] == "unit not stated" and report["source"]["version"] == "1"
    assert report["changes"] and set(report["candidates"]) >= {"source", "silent threshold"}
    from vitaltwin.risk import Registry

    registry = Registry(Path(reg))
    assert registry.version_of("vitaltwin-sepsis", "champion") == "1"
    assert registry.version_of("vitaltwin-sepsis", "challenger") == "2"
    res = CliRunner().invoke(app, [
        "risk", "adapt", "--data", str(SET_A), "--site", "nowhere", "--registry", reg,
    ])  # fmt: skip
    assert res.exit_code == 2 and "the sites are" in res.output
