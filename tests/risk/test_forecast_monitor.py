"""The forecast monitor: outcomes read from per-minute medians of what the monitors showed,
figures per window against them, drift of the monitored values."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from vitaltwin.model import Event
from vitaltwin.physiology import WARD_TWIN
from vitaltwin.risk import ForecastMonitor, RetrainingPolicy, outcome
from vitaltwin.risk._forecast_monitor import first_run

START = datetime(2026, 1, 1, tzinfo=UTC)  # the monitored_ward fixture's
Ward = Callable[..., tuple[ForecastMonitor, dict[str, bool]]]
Feed = Callable[[ForecastMonitor, str, datetime, int, np.ndarray], None]

HYPOTENSION = Event("map_below_65_30min", "MAP", 65.0, below=True, sustained_min=30.0)


def _minutes(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def test_outcome_needs_a_long_enough_run_and_enough_data() -> None:
    low = np.full(60, 60.0)
    assert outcome(HYPOTENSION, _minutes(60), low, 0, 60) == 1
    # 29 minutes low, one normal, 29 low, one normal: no 30-minute run
    broken = low.copy()
    broken[[29, 59]] = 70.0
    assert outcome(HYPOTENSION, _minutes(60), broken, 0, 60) == 0
    # samples every 2 minutes (a demo in fast-forward) continue a run: low from minute 0 to 30
    assert outcome(HYPOTENSION, np.arange(0, 32, 2), np.full(16, 60.0), 0, 60) == 1
    assert outcome(HYPOTENSION, np.arange(0, 28, 2), np.full(14, 60.0), 0, 60) == -1
    # ... a gap of 10 minutes breaks it: 20 + 20 low minutes, then 10 normal ones, are no
    # event, and with 55 of 60 minutes covered the window is observed enough to say so
    mins = np.concatenate([np.arange(20), np.arange(30, 60)])
    vals = np.concatenate([np.full(40, 60.0), np.full(10, 80.0)])
    assert outcome(HYPOTENSION, mins, vals, 0, 60) == 0
    # a low run still going when the data stop may have gone on: unknown
    assert outcome(HYPOTENSION, mins[:40], vals[:40], 0, 60) == -1
    # under half the minutes covered and no event: unknown
    assert outcome(HYPOTENSION, np.arange(20), np.full(20, 80.0), 0, 60) == -1
    lactate = Event("lactate_above_4", "Lactate", 4.0, below=False)
    assert outcome(lactate, np.array([], np.int64), np.array([]), 0, 60) == -1  # not measured
    assert outcome(lactate, np.array([7]), np.array([2.0]), 0, 60) == 0
    assert outcome(lactate, np.array([7, 50]), np.array([2.0, 4.5]), 0, 60) == 1
    # a vital sign's event at any time needs two samples in a row: one artefactual minute is not
    desat = Event("spo2_below_90", "SpO2", 90.0, below=True)
    spo2 = np.full(60, 96.0)
    spo2[10] = 70.0
    assert outcome(desat, _minutes(60), spo2, 0, 60, min_samples=2) == 0
    spo2[11] = 85.0
    assert outcome(desat, _minutes(60), spo2, 0, 60, min_samples=2) == 1
    assert first_run(desat, _minutes(60), spo2, min_samples=2) == 10


def test_figures_per_window_score_forecasts_against_the_monitors(monitored_ward: Ward) -> None:
    rng = np.random.default_rng(0)
    mon, _ = monitored_ward(rng, patients=20, hours=6)
    rep = mon.report()
    ws = rep.events["map_below_65_30min"]
    # six hours of data, one-hour horizon: forecasts up to hour 5 resolve, in 2-h windows
    assert rep.windows == [(START + timedelta(hours=h)).isoformat() for h in (0, 2, 4)]
    assert rep.pending == 20 * 4  # the last hour's forecasts wait for their outcome
    first, second = ws[0], ws[1]
    # hours 0-2: nobody falls within the hour (the flushes are not read as hypotension)
    assert first.report.positives == 0 and first.observed_rate == 0.0
    assert "performance not judged" in first.report.notes[0]
    # hours 2-4: the sick half fall at hour 3; forecasts from 2:30 see a 30-minute run
    assert second.report.positives == 10 * 6 and second.report.auroc == 1.0
    assert math.isfinite(second.report.calibration_slope)
    assert math.isclose(second.brier, (60 * 0.2**2 + 100 * 0.1**2) / 160)
    # the lactate event was not forecast, the SpO2 one neither: no windows
    assert rep.events["spo2_below_90"] == []
    # ranks perfectly but says 0.8 for what always happens and 0.1 for what never does: the
    # calibration slope is far above 1 and the policy says so
    assert second.report.calibration_slope > 1.2
    assert any(a.startswith("retrain: calibration slope") for a in second.report.actions)
    assert rep.decision == "retrain"


def test_a_wrong_forecaster_is_flagged_and_drift_is_seen(feed_map: Feed) -> None:
    rng = np.random.default_rng(1)
    mon = ForecastMonitor(WARD_TWIN, horizon_h=1.0, window_h=2.0, policy=RetrainingPolicy(
        min_positive=5, n_boot=30), reference_auroc={"map_below_65_30min": 0.85})  # fmt: skip
    n = 6 * 3600
    for i in range(20):
        pid = f"p{i}"
        map_at = 80.0 + rng.normal(0, 3, n)
        map_at[n // 3 :] -= 10.0  # everyone's pressure falls by 10 mmHg at hour 2 (drift)
        if i % 2 == 0:
            map_at[2 * 3600 :] = 55.0 + rng.normal(0, 3, n - 2 * 3600)
        feed_map(mon, pid, START, n, map_at)
    for k in range(24):  # a round of forecasts every 15 min, the patients interleaved
        for i in range(20):
            # backwards: the patients who will fall get the low probabilities
            p = 0.05 if i % 2 == 0 else 0.7
            mon.forecast(f"p{i}", START + timedelta(minutes=15 * k), {"map_below_65_30min": p})
    rep = mon.report()
    w = rep.events["map_below_65_30min"][1]
    assert w.report.auroc < 0.2
    assert any(a.startswith("retrain: AUROC") for a in w.report.actions)
    assert rep.decision == "retrain"
    pooled = mon.pooled()["map_below_65_30min"]
    assert pooled["auroc"] < 0.2 and pooled["events"] > 0 and pooled["forecasts"] == 20 * 20
    first, second = rep.drift.loc["MAP", rep.windows[:2]].to_numpy(np.float64)
    assert first == 0.0 and second > 0.25
    assert rep.to_dict()["decision"] == "retrain"


def test_forecasts_are_thinned_per_patient() -> None:
    mon = ForecastMonitor(WARD_TWIN, horizon_h=1.0, every_s=900.0)
    assert mon.forecast("a", START, {"map_below_65_30min": 0.1})
    assert not mon.forecast("a", START + timedelta(minutes=5), {"map_below_65_30min": 0.2})
    assert mon.forecast("b", START + timedelta(minutes=5), {"map_below_65_30min": 0.2})
    assert mon.forecast("a", START + timedelta(minutes=15), {"map_below_65_30min": 0.2})
    assert mon.report().pending == 3


def test_onsets_are_the_first_qualifying_run(monitored_ward: Ward) -> None:
    rng = np.random.default_rng(2)
    mon, sick = monitored_ward(rng, patients=4, hours=4)
    onsets = mon.onsets()
    # the sick fall from hour 3: their run starts at 3:00 (the minute medians ignore flushes)
    assert onsets == {pid: START + timedelta(hours=3) for pid, s in sick.items() if s}


def test_the_report_is_json_ready(monitored_ward: Ward) -> None:
    rng = np.random.default_rng(3)
    mon, _ = monitored_ward(rng, patients=4, hours=4)
    d = mon.report().to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN (a window not judged) is null
    assert '"auroc": null' in text
    assert d["windows"] == list(d["drift"])


def test_minute_medians_of_interleaved_staggered_and_late_data(feed_map: Feed) -> None:
    """Patients whose data arrive in separate batches, at different times, each get their own
    minutes; values for a minute already closed are counted late, not folded in."""
    mon = ForecastMonitor(WARD_TWIN, horizon_h=1.0)
    feed_map(mon, "early", START, 600, np.full(600, 70.0))
    later = START + timedelta(hours=2)
    feed_map(mon, "late", later, 300, np.arange(300, dtype=np.float64))
    # asking for figures closes the buffered minutes; no 30-minute hypotension in either
    assert mon.onsets() == {}
    mins, vals = mon._series["late"]["MAP"].between(None, None)
    # 5 minutes of 0..299 at 1 Hz: the newest minute stays open; medians 29.5, 89.5, ...
    assert mins.tolist() == [int(later.timestamp() // 60) + k for k in range(4)]
    assert vals.tolist() == [29.5, 89.5, 149.5, 209.5]
    assert len(mon._series["early"]["MAP"].between(None, None)[0]) == 9
    feed_map(mon, "late", later, 60, np.full(60, 500.0))  # the first minute again: too late
    mon.onsets()
    assert mon.late == 1 and mon._series["late"]["MAP"].between(None, None)[1][0] == 29.5


def test_timestamps_in_nanoseconds_read_the_same() -> None:
    """A table whose times are in nanoseconds (as pandas may make them) gives the same minutes
    as one in the canonical microseconds."""
    times = [START + timedelta(seconds=s) for s in range(180)]
    got = []
    for unit in ("ns", "us"):
        table = pa.table({"patient_id": ["p"] * 180, "loinc": ["8478-0"] * 180,
                          "effective_time": pa.array(times, pa.timestamp(unit, tz="UTC")),
                          "value": np.arange(180.0)})  # fmt: skip
        mon = ForecastMonitor(WARD_TWIN, horizon_h=1.0)
        mon.observed(table)
        mon.onsets()  # closes the minutes before the newest
        got.append(mon._series["p"]["MAP"].between(None, None))
    first = int(START.timestamp() // 60)
    assert got[0][0].tolist() == got[1][0].tolist() == [first, first + 1]
    assert got[0][1].tolist() == got[1][1].tolist() == [29.5, 89.5]


def test_onsets_read_as_data_arrive_find_a_run_that_spans_calls(feed_map: Feed) -> None:
    """Asked for every few minutes, the monitor finds a 30-minute hypotension that began before
    the previous call, with its true start."""
    mon = ForecastMonitor(WARD_TWIN, horizon_h=1.0)
    at = np.concatenate([np.full(10 * 60, 80.0), np.full(60 * 60, 55.0)])  # low from minute 10
    for k in range(0, 70, 5):  # five minutes of data, then a look
        feed_map(mon, "p", START + timedelta(minutes=k), 300, at[k * 60 : (k + 5) * 60])
        got = mon.onsets()
        assert got == ({} if k + 5 < 41 else {"p": START + timedelta(minutes=10)}), k


def test_one_hour_bands_are_calibrated_on_what_the_monitors_showed(feed_map: Feed) -> None:
    """Forecasts whose one-hour band claims an SD of 10 mmHg, where the monitors then show
    errors of SD 5: once their minutes close, each band's outcome is counted and the 90 % band's
    factor comes out near 0.5; the next forecasts' calibrated bands hold about 90 %, the issued
    ones nearly all; a patient without data near the target minute adds nothing."""
    mon = ForecastMonitor(WARD_TWIN, horizon_h=1.0)
    rng = np.random.default_rng(5)
    z95 = 1.6448536269514722  # the normal's 95 % quantile: a 90 % band of SD 10 as issued
    band = {"MAP": {"q05": 80.0 - z95 * 10, "q50": 80.0, "q95": 80.0 + z95 * 10}}
    for hour in (0, 2):  # the first round's outcomes calibrate the second round's bands
        when = START + timedelta(hours=hour)
        for k in range(300):
            assert mon.forecast(f"p{k}", when, {"map_below_65_30min": 0.1}, band=band)
            feed_map(mon, f"p{k}", when + timedelta(minutes=55), 600,
                     np.full(600, 80.0 + rng.normal(0, 5.0)))  # fmt: skip
        mon.onsets()  # closes the minutes and resolves the bands they reach
        if hour == 0:
            first = mon.band_coverage()["MAP"]
    assert not mon.forecast("p0", START + timedelta(hours=2), {}, band=band)  # thinned
    mon.forecast("gap", START, {}, band=band)
    feed_map(mon, "gap", START + timedelta(minutes=50), 300, np.full(300, 80.0))
    feed_map(mon, "gap", START + timedelta(minutes=70), 300, np.full(300, 80.0))
    cover = mon.report().to_dict()["bands"]["MAP"]  # closes the gap patient's minutes too
    cal = mon.band_calibration
    assert cal.count("MAP") == 600 and cal.count("HR") == 0 and mon._bands == []
    assert abs(cal.factor("MAP", 0.9) - 0.5) < 0.1
    # before any outcome the calibrated bands were the issued ones; after, about 90 %
    assert first["outcomes"] == 300 and first["calibrated_90"] == first["issued_90"] > 0.99
    assert cover["outcomes"] == 600 and cover["issued_90"] > 0.99
    second = 2 * cover["calibrated_90"] - first["calibrated_90"]  # the second round's share
    assert abs(second - 0.9) < 0.05
    issued = cal.calibrated_quantiles("MAP", **{k: band["MAP"][k] for k in ("q05", "q50", "q95")})
    assert issued["q95"] - issued["q05"] == pytest.approx(2 * z95 * 10 * cal.factor("MAP", 0.9))
    assert issued["errors"] == 600
