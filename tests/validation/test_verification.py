"""The verification table: every resting value green, every dynamic response green."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vitaltwin.cli import app
from vitaltwin.validation import VerificationReport, grade_error

pytestmark = pytest.mark.slow  # minutes: verification scenarios and steady states


@pytest.fixture(scope="module")
def report() -> VerificationReport:
    """The verification, computed in a process of its own: after a long test session with
    many JAX compilations, XLA's CPU compiler aborted twice in this fixture's compile of the
    ward integrator (never alone); a fresh interpreter isolates it from what ran before."""
    code = (
        "import pickle, sys\n"
        "from vitaltwin.validation import verify\n"
        "sys.stdout.buffer.write(pickle.dumps(verify()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    got = pickle.loads(done.stdout)  # our own child's output
    assert isinstance(got, VerificationReport)
    return got


def test_grading_thresholds() -> None:
    assert grade_error(4.99) == "green"
    assert grade_error(-5.0) == "green"
    assert grade_error(7.0) == "yellow"
    assert grade_error(-10.5) == "red"


def test_every_resting_value_is_green(report: VerificationReport) -> None:
    names = {c.metric for c in report.resting}
    assert names == {
        "hr_bpm",
        "sbp_mmhg",
        "dbp_mmhg",
        "map_mmhg",
        "co_l_min",
        "sv_ml",
        "ef",
        "edv_ml",
        "esv_ml",
        "cvp_mmhg",
        "mpap_mmhg",
        # the ward model adds gas exchange, temperature, lactate and white cells
        "spo2_pct",
        "pao2_mmhg",
        "paco2_mmhg",
        "rr_per_min",
        "temp_c",
        "lactate_mmol_l",
        "wbc_10e9_l",
    }
    ward = [c for c in report.resting if c.label.endswith("[ward]")]
    assert len(ward) == 14
    bad = [(c.metric, round(c.error_pct, 2)) for c in report.resting if c.grade != "green"]
    assert not bad, bad
    for c in report.resting:
        assert abs(c.error_pct) <= 5.0
        assert len(c.source) > 20  # a full literature reference, not a key


def test_every_dynamic_response_has_right_direction_and_magnitude(
    report: VerificationReport,
) -> None:
    scenarios = {c.scenario for c in report.dynamic}
    assert scenarios == {
        "hemorrhage_then_fluid",
        "fluid_challenge",
        "heart_failure",
        "septic_shock_untreated",
        "septic_shock_early_antibiotics",
        "septic_shock_late_antibiotics",
        "septic shock at 12 h",
        "500 mL bolus",
        "hypoxic gas",
        "30 % shunt",
    }
    for c in report.dynamic:
        assert c.expected_low <= c.computed <= c.expected_high, c
        if c.expected_direction != "within":
            assert (c.computed > 0) == (c.expected_direction == "increase"), c
        assert c.grade == "green"
    # The haemorrhage checks cover MAP, CO and HR trends.
    hem = {c.quantity for c in report.dynamic if c.scenario == "hemorrhage_then_fluid"}
    assert {"MAP", "CO", "HR"} <= hem
    # Septic shock untreated: SVR, HR, MAP, lactate, fever and WBC are all checked.
    sep = {c.quantity for c in report.dynamic if c.scenario == "septic_shock_untreated"}
    assert {"SVR", "HR", "MAP", "lactate", "temperature", "WBC"} <= sep


def test_report_json_round_trip(report: VerificationReport, tmp_path: Path) -> None:
    path = report.write_json(tmp_path / "v.json")
    data = json.loads(path.read_text())
    assert data["all_green"] is report.all_green
    assert len(data["resting"]) == 11 + 14
    assert {"expected", "computed", "error_pct", "grade", "source"} <= set(data["resting"][0])


def test_cli_verify_prints_table_and_writes_json(
    report: VerificationReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the command around the computation (run once, by the fixture, for the whole module)
    calls: list[Any] = []

    def computed(**kwargs: Any) -> VerificationReport:
        calls.append(kwargs)
        kwargs["progress"]("resting adult: periodic steady state")
        return report

    monkeypatch.setattr("vitaltwin.cli._main.run_verify", computed)
    out = tmp_path / "verification.json"
    result = CliRunner().invoke(app, ["verify", "--json", str(out)])
    assert len(calls) == 1
    assert result.exit_code == 0, result.output
    assert "Resting healthy adult" in result.output
    assert "green" in result.output
    assert json.loads(out.read_text())["all_green"] is True
