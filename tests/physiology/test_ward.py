"""The ward-scale ICU model: rest is a steady state, the step is accurate, scenarios run."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vitaltwin.cli import app
from vitaltwin.model import Model
from vitaltwin.physiology.patient import REFERENCE_PATIENT, PatientProfile
from vitaltwin.physiology.ward import (
    WARD_DT_S,
    severinghaus_saturation,
    ward_baseline,
    ward_model,
)
from vitaltwin.simulate import make_integrator
from vitaltwin.simulate._beats import trajectory_signals
from vitaltwin.simulate.scenario import ScenarioError, parse_scenario, run_scenario


@pytest.fixture(scope="module")
def wmodel() -> Model:
    return ward_model()


@pytest.mark.parametrize(
    "profile",
    [REFERENCE_PATIENT, PatientProfile(age_years=78, sex="female", weight_kg=58, height_cm=158)],
)
def test_rest_is_a_steady_state(wmodel: Model, profile: PatientProfile) -> None:
    p, x = ward_baseline(wmodel, profile)
    u = wmodel.default_inputs()
    d = np.asarray(wmodel.rhs(0.0, jnp.asarray(x), jnp.asarray(p), jnp.asarray(u)))
    scale = np.maximum(np.abs(x), 1.0)
    # Relative drift over one hour below 0.1 % for every state.
    assert np.all(np.abs(d) * 3600.0 / scale < 1e-3), dict(zip(wmodel.state_names, d, strict=True))


def test_outputs_carry_loinc_codes(wmodel: Model) -> None:
    codes = {o.name: o.loinc for o in wmodel.outputs}
    for name, loinc in {
        "hr_bpm": "8867-4",
        "map_mmhg": "8478-0",
        "spo2_pct": "59408-5",
        "rr_per_min": "9279-1",
        "temp_c": "8310-5",
        "lactate_mmol_l": "32693-4",
        "wbc_10e9_l": "6690-2",
        "cvp_mmhg": "60985-9",
        "co_l_min": "8741-1",
        "urine_ml_h": "9187-6",
    }.items():
        assert codes[name] == loinc


@pytest.mark.slow
def test_default_step_agrees_with_a_5_second_step(wmodel: Model) -> None:
    """12 h of untreated sepsis at 60 s vs 5 s steps: outputs within 0.5 %."""
    p, x = ward_baseline(wmodel, REFERENCE_PATIENT)
    x[wmodel.state_index("infl_p")] = 2.0
    u = wmodel.default_inputs()

    def run(dt: float) -> dict[str, np.ndarray]:
        per_h = round(3600.0 / dt)
        _, rec = make_integrator(wmodel, dt, per_h, 12)(
            jnp.asarray(x), jnp.asarray(p), jnp.asarray(u), jnp.asarray(0.0)
        )
        return trajectory_signals(wmodel, 3600.0 * np.arange(1, 13), np.asarray(rec), p, u)

    coarse, fine = run(WARD_DT_S), run(5.0)
    for k in ("map_mmhg", "hr_bpm", "co_l_min", "spo2_pct", "temp_c", "wbc_10e9_l"):
        rel = np.abs(coarse[k] - fine[k]) / np.abs(fine[k])
        assert rel.max() < 5e-3, (k, rel.max())


def test_severinghaus_curve_reference_points() -> None:
    # Severinghaus 1979: P50 26.8 mmHg; 90 % near 58 mmHg; 97 % near 95 mmHg.
    s = np.asarray(severinghaus_saturation(jnp.asarray([26.8, 58.0, 95.0])))
    np.testing.assert_allclose(s, [0.5, 0.90, 0.97], atol=0.01)


def test_ward_only_actions_are_rejected_in_beat_scenarios() -> None:
    with pytest.raises(ScenarioError, match=r"actions\[0\].*needs \"fidelity\": \"ward\""):
        parse_scenario(
            {
                "name": "x",
                "duration_s": 60,
                "actions": [{"type": "antibiotic", "at_s": 0}],
            }
        )
    with pytest.raises(ScenarioError, match="record_hz applies to the beat fidelity"):
        parse_scenario({"name": "x", "fidelity": "ward", "duration_s": 3600, "record_hz": 1})
    with pytest.raises(ScenarioError, match=r"actions\[0\]\.infection\.severity"):
        parse_scenario(
            {
                "name": "x",
                "fidelity": "ward",
                "duration_s": 3600,
                "actions": [{"type": "infection", "at_s": 0, "severity": -1}],
            }
        )


@pytest.mark.slow
def test_norepinephrine_titration_holds_map_near_target() -> None:
    """Sepsis with only the titration protocol from 6 h: NE starts when MAP reaches 65 and
    holds it there, where the untreated patient falls to ~53 mmHg."""
    patient = {"age_years": 60, "sex": "male", "weight_kg": 80, "height_cm": 178}
    sc = parse_scenario(
        {
            "name": "titration",
            "fidelity": "ward",
            "patient": patient,
            "duration_s": 86400,
            "actions": [
                {"type": "infection", "at_s": 0, "severity": 2.0},
                {"type": "norepinephrine_titration", "at_s": 21600, "target_map_mmhg": 65},
            ],
        }
    )
    ts = run_scenario(sc).timeseries
    assert ts.loc[ts.t_s < 21600, "ne_dose_ug_kg_min"].max() == 0.0
    late = ts[ts.t_s >= 12 * 3600]
    assert late["map_mmhg"].min() > 63.0
    assert abs(late["map_mmhg"].mean() - 65.0) < 1.5
    assert late["ne_dose_ug_kg_min"].iloc[-1] > 0.1


@pytest.mark.slow
def test_antibiotic_doses_repeat_and_concentration_is_plausible() -> None:
    sc = parse_scenario(
        {
            "name": "abx",
            "fidelity": "ward",
            "duration_s": 86400,
            "actions": [{"type": "antibiotic", "at_s": 3600, "dose_mg": 1000, "every_h": 8}],
        }
    )
    res = run_scenario(sc)
    assert (res.events.action == "antibiotic").sum() == 1
    ts = res.timeseries
    dosing = ts.abx_rate_mg_h.to_numpy() > 0
    starts = np.flatnonzero(np.diff(dosing.astype(int)) == 1)
    assert len(starts) == 3  # at 1, 9 and 17 h
    # meropenem 1 g over 30 min: peak ~40-60 mg/L in a 70 kg adult (V 21 L)
    assert 35.0 < ts.abx_c_mg_l.max() < 70.0


@pytest.mark.slow
def test_cli_runs_a_ward_scenario_and_writes_trend_and_plot(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["scenario", "run", "septic_shock_untreated", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "septic_shock_untreated"
    trend = pd.read_parquet(out / "trend.parquet")
    assert len(trend) == 24 * 60 + 1
    assert {"map_mmhg", "lactate_mmol_l", "spo2_pct", "temp_c", "wbc_10e9_l"} <= set(trend)
    assert (out / "plot.png").stat().st_size > 10_000
    assert "lactate" in result.output


@pytest.mark.slow
def test_cli_surrogate_report_prints_accuracy_and_speedup(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["surrogate", "report", "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output and "map_mmhg" in result.output
