"""Sensors the twin understands: known artefact signatures rejected with their reason, one absurd
cuff reading does not drag the state, and a real sustained change is followed within minutes
(a case built from a real set-A patient's charted vital signs, interpolated to a monitor's
minutes with instrument noise)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vitaltwin.physiology import WARD_TWIN, PatientProfile
from vitaltwin.twin import CycleReport, PatientTwin, TwinShard
from vitaltwin.twin._artefacts import screen

SET_A = Path(__file__).resolve().parents[3] / "shared/data/physionet2019/training_setA.parquet"
T0 = datetime(2026, 5, 4, 6, tzinfo=UTC)
HR, SBP, DBP, MAP, SPO2 = "8867-4", "8480-6", "8462-4", "8478-0", "59408-5"


def _now(twin: PatientTwin, name: str) -> float:
    """The twin's current estimate of an observable (ensemble mean)."""
    return float(twin.predicted()["mean"].to_numpy()[twin.spec.names.index(name)])


def _frame(rows: list[tuple[int, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(T0 + timedelta(minutes=m), c, v, how) for m, c, v, how in rows],
        columns=["effective_time", "loinc", "value", "method"],
    )


def test_known_signatures_are_rejected_with_their_reason() -> None:
    df = _frame(
        [
            (0, SBP, 74, "non-invasive-cuff"), (0, DBP, 10, "non-invasive-cuff"),
            (0, MAP, 31, "non-invasive-cuff"),  # cuff failure (the 74/10)
            (1, SBP, 95, "invasive-arterial"), (1, DBP, 88, "invasive-arterial"),
            (1, MAP, 91, "invasive-arterial"),  # damped line: MAP kept
            (2, SBP, 300, "invasive-arterial"), (2, DBP, 290, "invasive-arterial"),
            (2, MAP, 295, "invasive-arterial"),  # flush
            (3, HR, 95, "ecg"), (3, HR, 41, "pulse-oximetry"),
            (3, SPO2, 78, "pulse-oximetry"),  # probe off: the oximeter counts 41 against 95
            (4, SBP, 118, "non-invasive-cuff"), (4, DBP, 64, "non-invasive-cuff"),
            (4, MAP, 82, "non-invasive-cuff"), (4, HR, 90, "ecg"), (4, HR, 92, "pulse-oximetry"),
            (4, SPO2, 96, "pulse-oximetry"),  # a real minute: kept
            (5, SBP, 120, "non-invasive-cuff"), (5, DBP, 70, "non-invasive-cuff"),
            (5, MAP, 140, "non-invasive-cuff"),  # MAP above its own systolic: not one reading
        ]
    )  # fmt: skip
    minute = ((df["effective_time"] - T0).dt.total_seconds() // 60).astype(int)
    keep, reasons = screen(df, [minute])
    why = {(int(minute.iloc[r]), df["loinc"].iloc[r], df["method"].iloc[r]): t for r, t in reasons}
    assert keep.tolist() == [False] * 3 + [False, False, True] + [False] * 3 + [
        True, False, False] + [True] * 6 + [False] * 3  # fmt: skip
    assert "cuff failure" in why[(0, DBP, "non-invasive-cuff")]
    assert "damped arterial line, MAP 91 kept" in why[(1, SBP, "invasive-arterial")]
    assert "flush" in why[(2, MAP, "invasive-arterial")]
    assert "probe off" in why[(3, SPO2, "pulse-oximetry")]
    assert "not one measurement" in why[(5, MAP, "non-invasive-cuff")]
    assert len(reasons) == (~keep).sum()


def _monitor_minutes() -> tuple[pd.DataFrame, dict[str, float]]:
    """Three hours of one set-A patient (the first with HR, cuff pressures and SpO2 charted in
    each of hours 1-4), linearly interpolated to minutes with each sign's instrument noise:
    HR and SpO2 every minute, the cuff every 15 min."""
    t = pq.read_table(SET_A, columns=["patient_id", "hour", "HR", "SBP", "DBP", "MAP", "O2Sat"],
                      filters=pc.field("hour") <= 4).to_pandas()  # fmt: skip
    full = t[t["hour"].between(1, 4)].dropna().groupby("patient_id").filter(lambda g: len(g) == 4)
    g = full[full["patient_id"] == full["patient_id"].iloc[0]].set_index("hour")
    rng = np.random.default_rng(7)
    minutes = np.arange(181)
    sd = {o.loinc[0]: o.sd_instrument for o in WARD_TWIN.observables}
    rows = []
    for col, code, every, how in ((
        "HR", HR, 1, "ecg"), ("O2Sat", SPO2, 1, "pulse-oximetry"), ("SBP", SBP, 15,
        "non-invasive-cuff"), ("DBP", DBP, 15, "non-invasive-cuff"), ("MAP", MAP, 15,
        "non-invasive-cuff")):  # fmt: skip
        v = np.interp(minutes / 60.0, np.arange(4), g[col].to_numpy(float))
        for m in minutes[1::every]:
            value = v[m] + rng.normal(0, sd[code])
            rows.append((int(m), code, float(min(value, 100.0) if code == SPO2 else value), how))
    return _frame(rows), {"HR": float(g["HR"].iloc[2]), "MAP": float(g["MAP"].iloc[2])}


@pytest.mark.skipif(not SET_A.exists(), reason="shared PhysioNet set A not present")
def test_an_absurd_cuff_reading_is_rejected_and_a_sustained_change_followed() -> None:
    obs, level = _monitor_minutes()
    # a cuff failure at minute 91; a one-minute heart-rate spike at 60 (an artefact); from
    # minute 120 the heart rate really rises by 35 /min and stays there
    obs = obs[
        ~(
            (obs["loinc"].isin([SBP, DBP, MAP]))
            & (obs["effective_time"] == T0 + timedelta(minutes=91))
        )
    ]
    obs = pd.concat([obs, _frame([(91, SBP, 74, "non-invasive-cuff"),
                                  (91, DBP, 10, "non-invasive-cuff"),
                                  (91, MAP, 31, "non-invasive-cuff")])])  # fmt: skip
    at = (obs["effective_time"] - T0).dt.total_seconds() / 60
    hr = obs["loinc"] == HR
    obs.loc[hr & (at == 60), "value"] += 60.0
    obs.loc[hr & (at >= 120), "value"] += 35.0
    obs = obs.sort_values("effective_time", kind="stable")
    twin = PatientTwin.for_patient("setA", T0, sex="male", age_years=60, weight_kg=80,
                                   height_cm=178, n_members=32, seed=3)  # fmt: skip
    before = after = None
    reports: list[CycleReport] = []
    for m, minute in obs.groupby((obs["effective_time"] - T0).dt.total_seconds() // 60):
        if m == 91:
            before = _now(twin, "MAP")
        reports += twin.assimilate(minute)
        if m == 91:
            after = _now(twin, "MAP")
            assert any("cuff failure" in x for x in reports[-1].rejections), reports[-1]
        if m == 130:  # ten minutes into the real change
            hr_10min = _now(twin, "HR")
    assert before is not None and after is not None and abs(after - before) < 2.0
    spike = [r for r in reports if r.time == T0 + timedelta(minutes=60)]
    assert spike and "HR" in spike[0].gated  # the one-minute spike is held back
    followed = [r for r in reports if r.followed]
    assert followed and all(r.time >= T0 + timedelta(minutes=125) for r in followed)
    assert "HR gated since" in followed[0].message()
    new_level = level["HR"] + 35.0
    assert abs(hr_10min - new_level) < 10.0, (hr_10min, new_level)


@pytest.mark.skipif(not SET_A.exists(), reason="shared PhysioNet set A not present")
def test_the_shard_rejects_artefacts_and_follows_a_sustained_change_too() -> None:
    obs, level = _monitor_minutes()
    at = (obs["effective_time"] - T0).dt.total_seconds() / 60
    obs.loc[(obs["loinc"] == HR) & (at >= 120), "value"] += 35.0
    obs = pd.concat([obs, _frame([(91, SBP, 74, "non-invasive-cuff"),
                                  (91, DBP, 10, "non-invasive-cuff"),
                                  (91, MAP, 31, "non-invasive-cuff")])])  # fmt: skip
    obs = obs.sort_values("effective_time", kind="stable").assign(patient_id="setA")
    shard = TwinShard(n_members=32, discrepancy=WARD_TWIN.discrepancy, seed=3)
    shard.add("setA", PatientProfile(age_years=60, sex="male", weight_kg=80, height_cm=178), T0)
    artefacts: list[tuple[str, datetime, str, str]] = []
    followed: list[tuple[str, datetime, str]] = []
    for _, minute in obs.groupby((obs["effective_time"] - T0).dt.total_seconds() // 60):
        upd = shard.assimilate(minute)
        artefacts += upd.artefacts
        followed += upd.followed
        if minute["effective_time"].iloc[0] == T0 + timedelta(minutes=130):
            hr_10min = _now(shard.twin("setA"), "HR")
    assert {(a[2], "cuff failure" in a[3]) for a in artefacts} == {
        (c, True) for c in (SBP, DBP, MAP)
    }
    assert [f[2] for f in followed] == ["HR"] and followed[0][1] >= T0 + timedelta(minutes=125)
    assert abs(hr_10min - (level["HR"] + 35.0)) < 10.0


def test_an_arterial_line_is_trusted_more_than_a_cuff() -> None:
    """The same pressures move the twin more when an arterial line measured them than when a
    cuff did (its error is smaller: IEC 60601-2-34 against ISO 81060-2), in the single twin
    and the shard alike; a value without a stated method counts as the cuff's."""
    spec = WARD_TWIN.observables[WARD_TWIN.names.index("MAP")]
    for bad, why in (((("telepathy", 1.0),), "not one of"), ((("ecg", -1.0),), "must be >= 0")):
        with pytest.raises(ValueError, match=why):
            replace(spec, sd_by_method=bad)
    assert spec.sd_instrument_for("invasive-arterial") < spec.sd_instrument_for(None)
    assert spec.sd_instrument_for("non-invasive-cuff") == spec.sd_instrument_for(None)
    profile = PatientProfile(age_years=60, sex="male", weight_kg=80, height_cm=178)

    def moved(method: str | None) -> tuple[float, float]:
        # an hour at 85 mmHg (method not stated) settles the twin; then one reading 10 higher
        level = [(m, c, v, None) for m in range(1, 61)
                 for c, v in ((SBP, 120.0), (DBP, 68.0), (MAP, 85.0))]  # fmt: skip
        now = [(61, SBP, 135.0, method), (61, DBP, 78.0, method), (61, MAP, 95.0, method)]
        twin = PatientTwin("p", profile, T0, n_members=32, seed=3)
        shard = TwinShard(n_members=32, seed=3)
        shard.add("p", profile, T0)
        out = []
        for rows in (level, now):
            obs = _frame(rows)  # type: ignore[arg-type]
            twin.assimilate(obs)
            shard.assimilate(obs.assign(patient_id="p"))
            out.append((_now(twin, "MAP"), _now(shard.twin("p"), "MAP")))
        return out[1][0] - out[0][0], out[1][1] - out[0][1]

    line, cuff, unstated = moved("invasive-arterial"), moved("non-invasive-cuff"), moved(None)
    for k in range(2):  # the twin, the shard
        assert line[k] > 1.4 * cuff[k] > 0, (line, cuff)
        assert cuff[k] == pytest.approx(unstated[k], abs=1e-9)
    assert line[0] == pytest.approx(line[1], abs=0.3) and cuff[0] == pytest.approx(cuff[1], abs=0.3)
