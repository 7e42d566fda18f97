"""The simulated ward's alert study: events read off true trajectories as the model declares
them, and the scorecard computed from the service's own alert log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vitaltwin.physiology import WARD_TWIN
from vitaltwin.simulate.ward_course import WardCourse
from vitaltwin.validation.alert_study import AlertStudyConfig, event_onsets, run_alert_study


def test_event_onsets_follow_the_declared_events() -> None:
    m = len(WARD_TWIN.names)
    truth = np.zeros((4, 120, m))
    truth[..., WARD_TWIN.index("MAP")] = 80.0
    truth[..., WARD_TWIN.index("SpO2")] = 97.0
    truth[..., WARD_TWIN.index("Lactate")] = 1.0
    truth[0, 40:60, WARD_TWIN.index("MAP")] = 60.0  # 20 min: not sustained, no event
    truth[0, 70:110, WARD_TWIN.index("MAP")] = 60.0  # 40 min: an event from minute 70
    truth[1, 50, WARD_TWIN.index("SpO2")] = 88.0  # desaturation: at once
    truth[2, 30:, WARD_TWIN.index("Lactate")] = 4.5
    truth[2, 10:, WARD_TWIN.index("MAP")] = 50.0  # the earlier of two events
    onsets = event_onsets(truth)
    assert onsets[0] == 70 and onsets[1] == 50 and onsets[2] == 10 and np.isnan(onsets[3])


@pytest.mark.slow
def test_the_scorecard_comes_from_the_services_alert_log() -> None:
    cfg = AlertStudyConfig(n_patients=6, hours=6, seed=3,
                           course=WardCourse(septic_fraction=0.5, onset_hours=(1, 2)))  # fmt: skip
    res = run_alert_study(cfg)
    card, p = res.scorecard, res.patients
    assert card.patient_hours == 36
    assert card.events == int(p["event_onset"].notna().sum())
    assert card.alerts == len(res.alerts) == sum(res.per_rule.values())
    assert set(p["kind"]) <= {"sepsis", "bleeding", "stable"}
    if card.alerts:
        assert set(res.per_rule) <= {"hypotension ahead", "desaturation ahead", "lactate rising"}
        assert 0.0 <= card.ppv <= 1.0
    figures = res.figures()
    assert figures["scorecard"]["alerts"] == card.alerts
    # the service's models' monitoring over the same stream: six-hour forecasts in a six-hour
    # course all wait for their outcome (one per patient every 15 min after the hour settling)
    mon = figures["monitoring"]
    assert mon["windows"] == [] and 6 * 18 <= mon["pending"] <= 6 * 21
    json.dumps(mon, allow_nan=False)


def test_the_command_refuses_bad_options_with_a_message(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vitaltwin.cli import app

    small = CliRunner().invoke(app, ["validate", "alerts", "--patients", "1"])
    assert small.exit_code == 2 and "--patients >= 2" in " ".join(small.output.split())
    missing = CliRunner().invoke(
        app, ["validate", "alerts", "--set-a", str(tmp_path / "none.parquet")]
    )
    assert missing.exit_code == 2 and "no such file" in " ".join(missing.output.split())
    assert small.exception is None or isinstance(small.exception, SystemExit)
