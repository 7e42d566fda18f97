"""The patient twin: identifiability, the filter, gating, save/restore, forecasts, what-if,
personalization, and the phantom study on a small configuration."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from vitaltwin.physiology import (
    VITAL_SIGN_DISCREPANCY,
    WARD_TWIN,
    PatientProfile,
    WardConstraints,
    WardPlan,
    ward_baseline,
)
from vitaltwin.simulate import make_integrator
from vitaltwin.twin import (
    DemographicsWarning,
    PatientTwin,
    TwinError,
    analyse,
    collinearity,
    compare,
    identifiability,
    optimize,
    personalize,
    sensitivity,
)
from vitaltwin.twin._personalize import IDENTIFIABLE_DELTA, IDENTIFIABLE_GAMMA

ESTIMATED, OBSERVABLES = WARD_TWIN.estimated, WARD_TWIN.observables
pytestmark = pytest.mark.slow  # the module personalizes, tracks and replays real data

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
PROFILE = PatientProfile(age_years=64, sex="male", weight_kg=82, height_cm=178)


def _synthetic_patient(
    hours: float, infection: float, hr0: float = 86.0, every_min: int = 5, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Observations of a hidden patient (5-min vitals with instrument noise) and the truth."""
    m = WARD_TWIN.model
    p, x = ward_baseline(m, PROFILE)
    p[m.param_index("hr0_bpm")] = hr0
    p[m.param_index("r_sys_ratio0")] = 1.15
    x[m.state_index("infl_p")] = infection
    steps = round(hours * 60)
    integ = make_integrator(m, 60.0, 1, steps)
    u = m.default_inputs()
    _, rec = integ(jnp.asarray(x), jnp.asarray(p), jnp.asarray(u), jnp.asarray(0.0))
    y = np.asarray(WARD_TWIN.observe(rec, jnp.asarray(p)[None], jnp.asarray(u)[None]))
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(every_min - 1, steps, every_min):
        t = T0 + timedelta(minutes=k + 1)
        for j, o in enumerate(OBSERVABLES[:6]):
            rows.append((t, o.loinc[0], y[k, j] + rng.normal() * o.sd_instrument))
    return pd.DataFrame(rows, columns=["effective_time", "loinc", "value"]), y


def test_estimated_parameters_are_identifiable() -> None:
    ident = identifiability()
    assert (ident.loc[list(ESTIMATED), "delta_msqr"] >= IDENTIFIABLE_DELTA).all()
    s = sensitivity(WARD_TWIN, PatientProfile())
    assert collinearity(s, ESTIMATED) < IDENTIFIABLE_GAMMA
    # Contractility is left out because it is nearly a combination of the others.
    assert collinearity(s, [*ESTIMATED, "e_es_ratio0"]) > IDENTIFIABLE_GAMMA


def test_analysis_matches_the_kalman_filter_in_the_linear_gaussian_case() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1, 4000, 1))
    z = (z - z.mean()) / z.std(ddof=1)  # prior mean 0, variance 1
    res = analyse(z, z, np.array([[1.0]]), np.array([[True]]), np.array([[1.0]]), rtps=0.0)
    post = np.asarray(res.members)[0, :, 0]
    assert post.mean() == pytest.approx(0.5, abs=1e-9)  # K = 1/2
    assert post.var(ddof=1) == pytest.approx(0.5, abs=1e-9)
    assert bool(res.used[0, 0]) and not bool(res.gated[0, 0])


def test_implausible_and_outlying_values_are_rejected_or_gated_and_reported() -> None:
    twin = PatientTwin("p1", PROFILE, T0, n_members=32, seed=1)
    obs, _ = _synthetic_patient(1.0, 0.0)
    twin.assimilate(obs)
    t = twin.time + timedelta(minutes=5)
    bad = pd.DataFrame(
        {
            "effective_time": [t, t, t, t],
            "loinc": ["8867-4", "8478-0", "59408-5", "2160-0"],
            # HR impossible; MAP 190 an artefact (a flush); creatinine not modelled (ignored)
            "value": [400.0, 190.0, 97.0, 1.1],
            "source": ["monitor bed 4", "monitor bed 4", "monitor bed 4", "lab"],
        }
    )
    (report,) = twin.assimilate(bad)
    assert "HR" in report.rejected and "MAP" in report.gated and "SpO2" in report.used
    assert "MAP gated" in report.message() and "HR 400 /min rejected" in report.message()
    # the rejection says what value, which range, which code and source; the ignored code too
    assert report.rejections == (
        "HR 400 /min rejected: outside the twin's 20-250 (LOINC 8867-4, from monitor bed 4)",
    )
    assert report.ignored == ("2160-0",) and "2160-0" in report.message()
    status = {r["loinc"]: r["status"] for r in twin.assimilated[-3:]}
    assert status == {"8867-4": "rejected", "8478-0": "gated", "59408-5": "used"}
    assert [r["status"] for r in twin.assimilated].count("gated") == 1
    with pytest.raises(TwinError, match="before the twin's time"):
        twin.assimilate(obs.iloc[:1])


def test_a_real_patients_twin_fills_what_is_unknown_with_a_warning() -> None:
    with pytest.warns(DemographicsWarning, match=r"sex -> male, age -> 65 y, weight -> 88 kg"):
        twin = PatientTwin.for_patient("r1", T0, age_years=float("nan"), n_members=16)
    # real-data settings: the spec's model-discrepancy states are on
    assert twin.layout.discrepancy == WARD_TWIN.discrepancy
    assert twin.profile == PatientProfile(age_years=65, sex="male", weight_kg=88, height_cm=175)
    with pytest.warns(DemographicsWarning, match=r"age 15 y \(outside 18-100\) -> 18 y"):
        PatientTwin.for_patient("r2", T0, sex="female", age_years=15, weight_kg=60,
                                height_cm=165, n_members=16)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing filled in: no warning
        known = PatientTwin.for_patient("r3", T0, sex="female", age_years=70, weight_kg=60,
                                        height_cm=165, n_members=16)  # fmt: skip
    fc = known.forecast(hours=1.0)
    point = fc.point()
    assert list(point.columns) == list(WARD_TWIN.names) and len(point) == len(fc.minutes)
    np.testing.assert_allclose(point["MAP"], np.median(fc.values[0, :, :, 1], axis=0))


def test_save_and_restore_round_trip_exactly(tmp_path: Path) -> None:
    obs, _ = _synthetic_patient(2.0, 0.5)
    first, rest = (
        obs[obs.effective_time < T0 + timedelta(hours=1)],
        obs[obs.effective_time >= T0 + timedelta(hours=1)],
    )
    twin = PatientTwin("p2", PROFILE, T0, n_members=16, seed=4)
    twin.assimilate(first)
    twin.save(tmp_path / "twin")
    back = PatientTwin.load(tmp_path / "twin")
    assert np.array_equal(back.members, twin.members) and back.time == twin.time
    assert np.array_equal(back.base, twin.base) and back.assimilated == twin.assimilated
    assert back.log == twin.log
    # Restored, it continues exactly as the original (random state included).
    twin.assimilate(rest)
    back.assimilate(rest)
    assert np.array_equal(back.members, twin.members)
    (tmp_path / "twin" / "twin.json").write_text("{}")
    with pytest.raises(TwinError, match="format"):
        PatientTwin.load(tmp_path / "twin")


def test_forecast_bands_events_and_what_if() -> None:
    obs, _ = _synthetic_patient(6.0, 2.0)
    twin = PatientTwin("p3", PROFILE, T0, n_members=32, seed=2)
    reports = twin.assimilate(obs)
    assert all(np.isfinite(r.nis) for r in reports)
    fc = twin.forecast(hours=2.0)
    bands = fc.bands(measurement=True)
    q = bands[["q05", "q25", "q50", "q75", "q95"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all() and len(fc.minutes) == 24
    # a healthy SpO2 with its measurement error would reach above 100 %: the band stops there
    spo2 = bands[bands["observable"] == "SpO2"]
    assert spo2["q95"].max() == 100.0 and (spo2[["q05", "q50"]].to_numpy() < 100.0).all()
    for e in ("map_below_65_30min", "spo2_below_90", "lactate_above_4"):
        assert 0.0 <= float(fc.probability(e)[0]) <= 1.0
    table, _ = compare(
        twin, [WardPlan(name="nothing"), WardPlan(name="1 L", fluid_ml=1000.0)], hours=3.0
    )
    nothing, fluid = table.set_index("plan").loc[["nothing", "1 L"], "map_end_median"]
    assert fluid > nothing + 1.0  # a litre raises MAP in a septic, vasodilated patient
    ranked = optimize(
        twin,
        [
            WardPlan(name="none"),
            WardPlan(name="500", fluid_ml=500.0),
            WardPlan(name="4 L", fluid_ml=4000.0),
        ],
        hours=3.0,
        constraints=WardConstraints(max_fluid_ml_kg=30.0),
    )
    feasible = ranked[ranked.feasible]
    assert list(feasible["rank"]) == [1, 2] and feasible["cost"].is_monotonic_increasing
    assert "4 L" in set(ranked[~ranked.feasible].plan)
    assert "mL/kg" in str(ranked.set_index("plan").loc["4 L", "explanation"])
    assert all(len(x) > 20 for x in feasible["explanation"])


def test_personalization_recovers_identifiable_parameters() -> None:
    obs, _ = _synthetic_patient(6.0, 0.3, hr0=90.0)
    fit = personalize("p4", PROFILE, obs, T0, hours=6.0, n_members=16)
    assert fit.theta["hr0_bpm"] == pytest.approx(90.0, abs=3.0)
    assert fit.theta["r_sys_ratio0"] == pytest.approx(1.15, abs=0.12)
    assert (fit.sd > 0).all() and np.all(np.isfinite(fit.covariance))
    assert fit.twin.time == T0 + timedelta(hours=6)
    # with discrepancy states the fit is the same and the twin carries them from their prior
    fit_d = personalize(
        "p4", PROFILE, obs, T0, hours=6.0, n_members=16, discrepancy=VITAL_SIGN_DISCREPANCY
    )
    assert fit_d.theta.equals(fit.theta)
    assert fit_d.twin.members.shape == (16, fit.twin.layout.n_aug + len(VITAL_SIGN_DISCREPANCY))


def test_phantom_twins_track_better_than_persistence() -> None:
    from vitaltwin.validation.phantom import PhantomConfig, run_phantom

    res = run_phantom(PhantomConfig(n_patients=8, hours=10, n_members=16, seed=11))
    for name in ("HR", "MAP", "SpO2"):
        tr = res.tracking.to_dict("index")[name]
        fc = res.forecast.to_dict("index")[name]
        assert tr["twin_rmse"] < tr["persistence_rmse"]
        assert fc["twin_mae"] < fc["persistence_mae"]
    assert 0.0 <= res.pooled_coverage(90) <= 1.0
    assert res.gated_artefacts > 0.5  # most artefacts never reach the state


def test_short_cycle_blocks_agree_and_gate() -> None:
    """The 1 Hz cycle gives each patient the same result whatever the block size (blocks are a
    cache optimisation only), pulls the ensemble toward the observations and gates an artefact."""
    import jax

    from vitaltwin.twin._ensemble import initial_members, layout_for
    from vitaltwin.twin._track import cycle

    layout = layout_for(None)
    model = layout.model
    p, x = ward_baseline(model, PROFILE)
    rng = np.random.default_rng(4)
    b, n = 7, 16
    z = jnp.asarray(np.stack([initial_members(layout, x, p, n, rng) for _ in range(b)]))
    base = jnp.asarray(np.tile(p, (b, 1)))
    u = jnp.asarray(np.tile(model.default_inputs(), (b, 1)))
    y = np.tile(np.array([95.0, 75, 110, 60, 97, 14, 37, 1, 7, 14]), (b, 1))
    mask = np.zeros(y.shape, bool)
    mask[:, :2] = True
    y[3, 0] = 240.0  # an artefact in patient 3's heart rate
    key = jax.random.PRNGKey(1)
    whole, used, gated = (np.asarray(a) for a in cycle(layout, z, base, u, y, mask, key, block=b))
    for block in (1, 3):
        blocked = np.asarray(cycle(layout, z, base, u, y, mask, key, block=block)[0])
        np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=1e-12)
    assert gated[3, 0] and not used[3, 0]
    assert not gated[np.arange(b) != 3, 0].any() and used[:, 1].all()
    prior_map = np.asarray(
        WARD_TWIN.observe(z[..., : layout.n_states], layout.params(z, base[:, None, :]), u[:, None])
    )[..., 1].mean(1)
    post_map = np.asarray(
        WARD_TWIN.observe(
            jnp.asarray(whole[..., : layout.n_states]),
            layout.params(jnp.asarray(whole), base[:, None, :]),
            u[:, None],
        )
    )[..., 1].mean(1)
    assert (np.abs(post_map - 75.0) < np.abs(prior_map - 75.0)).all()


def test_model_discrepancy_is_an_ornstein_uhlenbeck_offset_on_its_observable() -> None:
    """A discrepancy state adds to its observable only, relaxes over tau, keeps its stationary
    SD under the exact OU noise, and process noise never moves the ensemble mean."""
    import jax

    from vitaltwin.twin._ensemble import advance, initial_members, layout_for, perturb, predict

    plain = layout_for(None)
    layout = layout_for(None, discrepancy=(("HR", 10.0), ("SpO2", 2.0)), discrepancy_tau_h=2.0)
    assert layout.n_aug == plain.n_aug + 2
    with pytest.raises(KeyError, match="no observable 'Pulse'"):
        layout_for(None, discrepancy=(("Pulse", 10.0),))
    with pytest.raises(ValueError, match="must be > 0"):
        layout_for(None, discrepancy=(("HR", 0.0),))
    model = layout.model
    p, x = ward_baseline(model, PROFILE)
    rng = np.random.default_rng(5)
    z = initial_members(layout, x, p, 4000, rng)[None]
    assert z[0, :, -2].std() == pytest.approx(10.0, rel=0.05)
    base, u = p[None], model.default_inputs()[None]
    y_with = np.asarray(predict(layout, jnp.asarray(z), jnp.asarray(base), jnp.asarray(u)))
    y_without = np.asarray(
        predict(plain, jnp.asarray(z[..., : plain.n_aug]), jnp.asarray(base), jnp.asarray(u))
    )
    diff = y_with - y_without
    np.testing.assert_allclose(diff[..., 0], z[..., -2], atol=1e-9)  # HR
    np.testing.assert_allclose(diff[..., 4], z[..., -1], atol=1e-9)  # SpO2
    np.testing.assert_allclose(np.delete(diff, [0, 4], axis=-1), 0.0, atol=1e-9)
    # deterministic relaxation: exp(-1 h / 2 h) after an hour without noise
    z1 = np.asarray(advance(layout, z, base, u, 3600.0, None))
    np.testing.assert_allclose(z1[..., -2:], z[..., -2:] * np.exp(-0.5), rtol=1e-12)
    # with noise the stationary SD is kept, and the ensemble mean does not move
    z2 = np.asarray(advance(layout, z, base, u, 3600.0, np.random.default_rng(6)))
    assert z2[0, :, -2].std() == pytest.approx(z[0, :, -2].std(), rel=0.08)
    normals = jax.random.normal(jax.random.PRNGKey(0), z.shape)
    moved = np.asarray(perturb(layout, jnp.asarray(z), normals, 3600.0))
    k = layout.n_states
    np.testing.assert_allclose(moved[0, :, k:].mean(0), z[0, :, k:].mean(0), atol=1e-9)


SET_A = Path(__file__).resolve().parents[3] / "shared/data/physionet2019/training_setA.parquet"


@pytest.mark.skipif(not SET_A.exists(), reason="shared PhysioNet set A not present")
def test_replay_on_real_charts_beats_persistence_for_map_and_spo2() -> None:
    """200 set-A patients hour by hour: with model discrepancy the twin's one-hour forecast of
    MAP and SpO2 beats carrying the last value forward; heart rate stays within 2 % of it (on
    2,000 patients it beats it by 0.6 %, too little to assert on 200)."""
    from vitaltwin.validation.replay import ReplayConfig, run_replay

    res = run_replay(SET_A, ReplayConfig(max_patients=200))
    t = res.table
    twin, persistence = t["twin_mae"].to_dict(), t["persistence_mae"].to_dict()
    for name in ("MAP", "SpO2"):
        assert twin[name] < 0.97 * persistence[name], name
    assert twin["HR"] < 1.02 * persistence["HR"]
    low = t["gain_vs_persistence_ci95_low"].to_dict()
    high = t["gain_vs_persistence_ci95_high"].to_dict()
    assert low["MAP"] > 0 and low["SpO2"] > 0  # patient-bootstrap interval excludes no gain
    assert all(low[k] <= persistence[k] - twin[k] <= high[k] for k in twin)
    # uncertainty: coverage of the bands as issued is reported, and rescaled on the tuning
    # half (split-conformal) the bands hold their level on the evaluation half; CRPS reported
    for level, (lo, hi) in ((50, (0.45, 0.55)), (90, (0.85, 0.95))):
        assert t[f"band{level}_coverage"].between(0, 1).all()
        rescaled = t[f"band{level}_coverage_rescaled"]
        assert rescaled.between(lo, hi).all(), (level, rescaled.to_dict())
    assert (t["twin_crps"] > 0).all() and (t["persistence_crps"] > 0).all()
    # without the discrepancy states the same filter forecasts all three worse
    plain = run_replay(SET_A, ReplayConfig(max_patients=200, discrepancy_scale=0.0)).table
    assert (plain["twin_mae"] > t["twin_mae"]).all()


def test_live_twin_with_discrepancy_follows_an_offset_patient_and_restores(tmp_path: Path) -> None:
    """A patient whose heart rate runs 25 /min above anything the model's parameters produce:
    with vital-sign discrepancy states the live twin follows and forecasts it, and its
    discrepancy settings survive save/restore."""
    obs, _ = _synthetic_patient(3.0, 0.0, hr0=80.0)
    hr = obs["loinc"] == OBSERVABLES[0].loinc[0]
    obs.loc[hr, "value"] += 25.0
    truth_hr = float(obs.loc[hr, "value"].tail(6).mean())
    forecast_hr = {}
    for name, disc in (("plain", ()), ("discrepancy", VITAL_SIGN_DISCREPANCY)):
        twin = PatientTwin("p9", PROFILE, T0, n_members=32, seed=3, discrepancy=disc)
        twin.assimilate(obs)
        q50 = twin.forecast(hours=1.0).bands()
        forecast_hr[name] = float(q50[(q50.observable == "HR") & (q50.minute == 60)]["q50"].iloc[0])
    assert abs(forecast_hr["discrepancy"] - truth_hr) < 4.0
    assert abs(forecast_hr["discrepancy"] - truth_hr) < abs(forecast_hr["plain"] - truth_hr)
    twin.save(tmp_path / "t")
    back = PatientTwin.load(tmp_path / "t")
    assert back.layout.discrepancy == twin.layout.discrepancy and back.layout is twin.layout
    assert np.array_equal(back.members, twin.members)
