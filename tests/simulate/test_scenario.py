"""Scenarios: malformed files get errors naming the field; runs write Parquet and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from vitaltwin.cli import app
from vitaltwin.simulate.scenario import (
    ScenarioError,
    example_scenarios,
    load_scenario,
    parse_scenario,
    run_scenario,
)

runner = CliRunner()


def _write(tmp_path: Path, data: object, name: str = "s.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_examples_are_shipped_and_valid() -> None:
    ex = example_scenarios()
    assert {"healthy_rest", "hemorrhage_then_fluid", "heart_failure"} <= set(ex)
    for path in ex.values():
        load_scenario(path)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x"}, "duration_s"),
        ({"name": "x", "duration_s": -5}, "duration_s"),
        (
            {"name": "x", "duration_s": 60, "actions": [{"type": "teleport", "at_s": 1}]},
            "actions[0]",
        ),
        (
            {
                "name": "x",
                "duration_s": 60,
                "actions": [{"type": "hemorrhage", "at_s": 1, "duration_s": 10}],
            },
            "actions[0]",
        ),
        (
            {
                "name": "x",
                "duration_s": 60,
                "actions": [{"type": "fluid_bolus", "at_s": 1, "volume_ml": -500}],
            },
            "actions[0].fluid_bolus.volume_ml",
        ),
        (
            {
                "name": "x",
                "duration_s": 60,
                "actions": [{"type": "fluid_bolus", "at_s": 90, "volume_ml": 500}],
            },
            "at_s",
        ),
        ({"name": "x", "duration_s": 60, "patient": {"age_years": 7}}, "patient.age_years"),
        ({"name": "x", "duration_s": 60, "patient": {"sex": "other"}}, "patient.sex"),
        (
            {
                "name": "x",
                "duration_s": 60,
                "conditions": [{"parameter": "warp_factor", "factor": 2}],
            },
            "conditions[0]",
        ),
        ({"name": "x", "duration_s": 60, "colour": "blue"}, "colour"),
    ],
)
def test_malformed_scenarios_name_the_field(data: object, field: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data, where="test.json")
    assert "test.json" in str(exc.value)
    assert field in str(exc.value), str(exc.value)


def test_not_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x", "duration_s": 60,,}', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.json.*line 1"):
        load_scenario(path)


def test_cli_reports_bad_scenario_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "x", "duration_s": "soon"})
    result = runner.invoke(app, ["scenario", "run", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "duration_s" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_actions_change_inputs_and_parameters_at_their_times() -> None:
    sc = parse_scenario(
        {
            "name": "mini",
            "duration_s": 20,
            "record_hz": 125,
            "actions": [
                {"type": "hemorrhage", "at_s": 2, "duration_s": 4, "volume_ml": 200},
                {"type": "fluid_infusion", "at_s": 5, "rate_ml_h": 3600},
                {
                    "type": "set_parameter",
                    "at_s": 10,
                    "parameter": "r_sys_mmhg_s_ml",
                    "factor": 1.5,
                },
            ],
        }
    )
    res = run_scenario(sc)
    ts = res.timeseries
    assert ts["t_s"].iloc[-1] == pytest.approx(20.0)
    bleed = ts.loc[(ts.t_s > 2.0) & (ts.t_s <= 6.0), "hemorrhage_ml_s"]
    assert bleed.round(9).unique().tolist() == [50.0]
    assert ts.loc[ts.t_s > 6.0, "hemorrhage_ml_s"].max() == 0.0
    assert ts.loc[ts.t_s > 5.0, "infusion_ml_s"].min() == pytest.approx(1.0)
    blood = res.beats.blood_volume_ml
    # Net: -200 mL bled, +15 mL infused by t = 20 s (1 mL/s from 5 s).
    assert blood.iloc[-1] - blood.iloc[0] == pytest.approx(-185.0, abs=5.0)
    r = ts["r_sys_eff_mmhg_s_ml"]
    assert r[ts.t_s > 10.01].min() > 1.4 * r[ts.t_s < 9.99].max() / 1.1
    assert len(res.events) == 3


@pytest.mark.slow
def test_scenario_run_writes_parquet_and_png(tmp_path: Path) -> None:
    spec = {
        "name": "short_bleed",
        "duration_s": 30,
        "record_hz": 125,
        "actions": [{"type": "hemorrhage", "at_s": 10, "duration_s": 10, "rate_ml_min": 300}],
    }
    path = _write(tmp_path, spec)
    result = runner.invoke(app, ["scenario", "run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "o" / "short_bleed"
    ts = pd.read_parquet(out / "timeseries.parquet")
    beats = pd.read_parquet(out / "beats.parquet")
    assert len(ts) == 30 * 125 + 1
    assert {"p_sa_mmhg", "v_lv_ml", "hemorrhage_ml_s"} <= set(ts.columns)
    assert {"map_mmhg", "co_l_min", "ef"} <= set(beats.columns)
    for png in ("plot.png", "pv_loops.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_unstable_integration_is_reported_not_returned() -> None:
    sc = parse_scenario(
        {
            "name": "coarse",
            "duration_s": 20,
            "record_hz": 10,
            "actions": [{"type": "fluid_bolus", "at_s": 1, "volume_ml": 3000, "duration_s": 10}],
        }
    )
    with pytest.raises(ScenarioError, match="unstable"):
        run_scenario(sc, dt=0.05)
