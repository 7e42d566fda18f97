"""Live twins: a restarted supervisor resumes each twin from its checkpoint and assimilates
every observation exactly once (the same state as a twin never stopped); the API shows the
twin's status, hidden physiology and forecast bands; a twin behind its data says so."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from fastapi.testclient import TestClient

from vitaltwin.data.schema import QUARANTINE, observations_table
from vitaltwin.service.access import Security
from vitaltwin.service.alerts import AlertRule
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.service.twins import DEGRADED, TwinSupervisor
from vitaltwin.store import DuckDBStore, Store
from vitaltwin.twin import TwinShard

DEV = Security.development_mode()
"""Every caller may do everything (access rules: tests/service/test_security.py)."""

T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)


def vitals(
    seconds: range, pid: str = "p1", received: datetime | None = None, shift: float = 0.0
) -> pa.Table:
    rng = np.random.default_rng(seconds.start)
    rows = [
        (T0 + timedelta(seconds=s + 0.2), code, mean + sd * rng.standard_normal())
        for s in seconds
        for code, mean, sd in (("8867-4", 88, 2), ("8478-0", 72, 2), ("59408-5", 96, 0.5))
    ]
    n = len(rows)
    return observations_table(
        {
            "patient_id": [pid] * n,
            "effective_time": [r[0] for r in rows],
            "loinc": [r[1] for r in rows],
            "value": [r[2] + shift for r in rows],
            "unit": [{"8867-4": "/min", "8478-0": "mm[Hg]", "59408-5": "%"}[r[1]] for r in rows],
            "source": ["test"] * n,
            "position": [f"{r[0].isoformat()} {r[1]}" for r in rows],
            "received_time": [received or T0 + timedelta(hours=1)] * n,
            "device": [None] * n,
            "quality": [None] * n,
        }
    )


def ingest(store: Store, table: pa.Table) -> None:
    store.ingest(table, QUARANTINE.empty_table(), table.num_rows)


def test_a_restarted_supervisor_resumes_from_the_checkpoint_exactly(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s") as store:
        lock = threading.Lock()
        a = TwinSupervisor(store, lock)
        first, second = vitals(range(0, 60)), vitals(range(60, 120))
        ingest(store, first)
        assert a.round(first) == 180
        a.checkpoint()
        ingest(store, second)
        assert a.round(second) == 180
        # a dies here without its shutdown checkpoint; b starts from the file and the store
        b = TwinSupervisor(store, lock)
        assert b.resume() == 180  # only what came after the checkpoint
        assert b.shard.time("p1") == a.shard.time("p1") == T0 + timedelta(seconds=119.2)
        np.testing.assert_array_equal(b.shard.members[0], a.shard.members[0])
        assert b.status("p1")["values"] == a.status("p1")["values"]
        assert b.status("p1")["values"]["HR"] == 120  # each observation once
        assert b.round(second) == 0  # delivered again: late, not assimilated again
        assert b.status("p1")["late"] == 180
        # other values for a second the twin has passed, arriving now: late too
        assert b.round(vitals(range(30, 31), received=datetime.now(UTC), shift=1.0)) == 0
        assert b.status("p1")["late"] == 183


def test_a_new_patient_since_the_checkpoint_is_found_on_resume(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s") as store:
        lock = threading.Lock()
        a = TwinSupervisor(store, lock)
        first = vitals(range(0, 10))
        ingest(store, first)
        a.round(first)
        a.checkpoint()
        other = vitals(range(0, 10), pid="p2", received=datetime.now(UTC))
        ingest(store, other)  # stored, handed over, not in the checkpoint: then a dies
        b = TwinSupervisor(store, lock)
        assert b.resume() == 30
        assert "p2" in b and b.status("p2")["values"]["HR"] == 10


def test_a_twin_behind_its_data_is_degraded(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s") as store:
        sup = TwinSupervisor(store, threading.Lock(), max_lag_s=0.5)
        sup.round(vitals(range(0, 10)))
        assert sup.status("p1")["status"] == "tracking"
        sup.newest["p1"] += timedelta(seconds=5)  # data the twin has not caught up with
        status = sup.status("p1")
        assert status["status"] == DEGRADED and "behind" in status["reason"]
        assert sup.status("nobody")["status"] == "not started"
        sup.newest["p1"] -= timedelta(seconds=5)
        sup.notify(vitals(range(10, 11)))  # handed over, but the supervisor has not got to it
        time.sleep(0.6)
        waiting = sup.status("p1")
        assert waiting["status"] == DEGRADED and "waiting" in waiting["reason"]


def test_the_api_shows_the_twin(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s") as store:
        app = create_app(store, MemoryBus(partitions=2), security=DEV, with_twins=True)
        with TestClient(app) as client:
            body = [
                {"patient_id": "p9", "time": (T0 + timedelta(seconds=s)).isoformat(),
                 "code": code, "value": v, "unit": u}
                for s in range(30)
                for code, v, u in (("HR", 90, "/min"), ("8478-0", 70, "mmHg"))
            ]  # fmt: skip
            assert client.post("/v1/observations", json=body).status_code == 202
            deadline = time.monotonic() + 120
            while client.get("/v1/patients/p9/twin").json().get("assimilated", 0) < 60:
                assert time.monotonic() < deadline, client.get("/v1/patients/p9/twin").json()
                time.sleep(0.1)
            twin = client.get("/v1/patients/p9/twin").json()
            assert twin["model_version"] and twin["time"].startswith("2026-11-22T08:00:2")
            names = {p["parameter"] for p in twin["parameters"]}
            assert "hr0_bpm" in names
            hr = next(o for o in twin["observables"] if o["observable"] == "HR")
            assert 80 < hr["mean"] < 100 and hr["sd"] > 0
            plans = [{"name": "nothing"}, {"name": "fluid", "fluid_ml": 500},
                     {"name": "ne", "ne_ug_kg_min": 0.1}]  # fmt: skip
            side = client.post("/v1/patients/p9/whatif", json=plans, params={"hours": 2}).json()
            assert [p["plan"] for p in side["plans"]] == ["nothing", "fluid", "ne"]
            assert all(p["summary"] for p in side["plans"])
            assert "Decision support only" in side["decision_support"]
            ranked = client.post("/v1/patients/p9/whatif", params={"hours": 2}).json()["plans"]
            assert sorted(p["rank"] for p in ranked if p["feasible"])[0] == 1
            assert any(p["explanation"] for p in ranked)
            bad = client.post("/v1/patients/p9/whatif", json=[{"name": "x", "fluid_ml": -5}])
            assert bad.status_code == 422 and "fluid_ml" in bad.text
            fc = client.get("/v1/patients/p9/twin/forecast", params={"hours": 1}).json()
            band = [b for b in fc["bands"] if b["observable"] == "MAP"]
            assert band[0]["q05"] <= band[0]["q50"] <= band[0]["q95"]
            assert all(0 <= p <= 1 for p in fc["event_probabilities"].values())
            # no one-hour forecast has met its outcome yet: bands as issued (factor 1)
            cal = fc["calibration_1h"]["MAP"]
            assert cal == {"errors": 0, "factor_50": 1.0, "factor_90": 1.0}
            assert client.get("/v1/patients/none/twin/forecast").status_code == 404
            assert client.get("/health/ready").json()["twins"] == "ok"
        saved = store.load_state("twins")  # checkpointed in the store on stop
        assert saved is not None and "p9" in TwinShard.from_bytes(saved[0])


def test_forecasts_raise_alerts_that_clinicians_act_on(tmp_path: Path) -> None:
    always = AlertRule("test rule", "forecast:map_below_65_30min", on=-1.0, off=-2.0)
    with DuckDBStore(tmp_path / "s") as store:
        app = create_app(store, MemoryBus(partitions=2), security=DEV, with_twins=True,
                         rules=[always], shadow=False, twin_settle_s=0)  # fmt: skip
        with TestClient(app) as client:
            body = [{"patient_id": "p7", "time": T0.isoformat(), "code": "HR", "value": 90,
                     "unit": "/min"}]  # fmt: skip
            with client.websocket_connect("/v1/live") as ws:
                client.post("/v1/observations", json=body)
                pushed = [ws.receive_json()]
                while pushed[-1]["type"] != "alert" and len(pushed) < 10:
                    pushed.append(ws.receive_json())
            # stored, then the twin's update, its forecast and the alert the forecast raised
            assert pushed[0] == {"type": "stored", "rows": 1}
            pushed = pushed[1:]
            assert [m["type"] for m in pushed] == ["twins", "forecast", "alert"]
            assert pushed[0]["updates"][0]["patient_id"] == pushed[1]["patient_id"] == "p7"
            assert pushed[2]["rule"] == "test rule"
            deadline = time.monotonic() + 120
            while not (listed := client.get("/v1/alerts").json()["alerts"]):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            a = listed[0]
            assert a["patient_id"] == "p7" and a["state"] == "new" and a["model_version"]
            # the forecast waits for its six hours of outcome; the scorecard's outcomes are
            # the events seen on the monitors: none yet, so the one alert is not right (PPV 0)
            mon = client.get("/v1/models/monitoring").json()["forecasts"]
            assert mon["pending"] == 1 and mon["windows"] == [] and mon["horizon_h"] == 6.0
            card = client.get("/v1/alerts/scorecard").json()
            assert card["ppv"] == 0.0 and card["events"] == 0 and card["recall_2h"] is None
            assert "MAP < 65 mmHg held 30 min" in card["outcomes"]
            one_hour = a["details"]["forecast_1h"]["MAP"]
            calibrated = one_hour["calibrated"]  # on the ward's resolved forecasts (none yet)
            assert calibrated["errors"] == 0
            assert calibrated["q05"] <= calibrated["q25"] <= calibrated["q50"] <= calibrated["q75"]
            assert calibrated["q75"] <= calibrated["q95"] and calibrated["q50"] == one_hour["q50"]
            options = a["details"]["whatif"]  # what to do next, ranked
            assert len(options) == 3 and [o["rank"] for o in options] == [1, 2, 3]
            assert all(o["summary"] and o["explanation"] for o in options)
            assert "Decision support only" in a["decision_support"]
            ack = client.post(f"/v1/alerts/{a['id']}/acknowledge").json()
            assert ack["state"] == "acknowledged" and ack["acknowledged_by"] == "developer"
            assert client.post(f"/v1/alerts/{a['id']}/acknowledge").status_code == 409
            snooze = client.post(f"/v1/alerts/{a['id']}/snooze",
                                 params={"hours": 2, "reason": "on it"}).json()  # fmt: skip
            assert snooze["state"] == "snoozed" and snooze["snooze_reason"] == "on it"
            assert client.post(f"/v1/alerts/{a['id']}/snooze",
                               params={"hours": 20, "reason": "x"}).status_code == 422  # fmt: skip
            fb = client.post(f"/v1/alerts/{a['id']}/feedback", params={"overridden": True})
            assert fb.json()["overridden"] is True
            assert client.post("/v1/alerts/nope/acknowledge").status_code == 404
            text = client.get("/metrics").text
            for stage in ("receive", "normalize", "store", "assimilate", "alert", "push"):
                assert f'vitaltwin_stage_seconds_count{{stage="{stage}"}}' in text, stage
