"""The dashboard's pages, served by the service (no browser): the ward and its live fragment
show the beds with units and freshness, a patient page exists for a bed and a clear 404 for
anyone else, the quality page shows the alert-burden scorecard, every asset is local."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vitaltwin.dashboard import install
from vitaltwin.dashboard.pages import risk_level, sparkline
from vitaltwin.risk import ForecastMonitor
from vitaltwin.service.access import Security
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.store import DuckDBStore

DEV = Security.development_mode()
"""Every caller may do everything (access rules: tests/service/test_security.py)."""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with DuckDBStore(tmp_path / "s") as store:
        app = install(create_app(store, MemoryBus(partitions=2), security=DEV))
        with TestClient(app) as c:
            yield c


def feed(client: TestClient, pid: str = "bed-7") -> None:
    t = datetime.now(UTC) - timedelta(seconds=5)
    body = [{"patient_id": pid, "time": t.isoformat(), "code": code, "value": v, "unit": unit}
            for code, v, unit in (("8867-4", 88, "/min"), ("8480-6", 121, "mm[Hg]"),
                                  ("8462-4", 64, "mm[Hg]"), ("8478-0", 83, "mm[Hg]"),
                                  ("59408-5", 96, "%"))]  # fmt: skip
    assert client.post("/v1/observations", json=body).status_code == 202
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if client.get("/v1/ward").json()["beds"]:
            return
        time.sleep(0.05)
    raise AssertionError("the ward never showed the bed")


def test_ward_page_and_its_live_fragment(client: TestClient) -> None:
    assert "No patients yet" in client.get("/ward").text
    feed(client)
    ward = client.get("/v1/ward").json()
    bed = ward["beds"][0]
    assert bed["patient_id"] == "bed-7" and bed["vitals"]["HR"] == {
        "value": 88.0, "unit": "/min", "time": bed["vitals"]["HR"]["time"]}  # fmt: skip
    assert bed["stale"] is False and bed["twin"]["status"] == "off"
    page = client.get("/ward").text
    assert 'hx-get="/ward/beds?sort=risk"' in page and 'href="/patients/bed-7"' in page
    fragment = client.get("/ward/beds", params={"sort": "bed"}).text
    assert fragment.lstrip().startswith('<div id="beds"') and "121/64 (83)" in fragment
    assert "HR /min" in fragment and "SpO2 %" in fragment  # units on every value
    assert client.get("/ward/beds", params={"sort": "nonsense"}).status_code == 422
    assert client.get("/", follow_redirects=False).headers["location"] == "/ward"


def test_patient_page_and_a_clear_404(client: TestClient) -> None:
    feed(client)
    page = client.get("/patients/bed-7")
    assert page.status_code == 200 and 'data-patient="bed-7"' in page.text
    assert "Decision support only" in page.text and 'id="whatif-form"' in page.text
    missing = client.get("/patients/nobody")
    assert missing.status_code == 404 and "No patient nobody" in missing.text


def test_the_timeline_sources(client: TestClient) -> None:
    feed(client)
    assert client.get("/v1/patients/bed-7/medications").json() == []
    assert client.get("/v1/alerts/log", params={"patient": "bed-7"}).json() == []


def test_quality_page_shows_the_scorecard(client: TestClient) -> None:
    card = client.get("/v1/alerts/scorecard").json()
    assert card["alerts"] == 0 and card["ppv"] is None and "validation" in card["outcomes"]
    page = client.get("/quality").text
    assert 'id="scorecard"' in page and "Alerts per patient-hour" in page
    assert "hypotension ahead" in page  # the rules in force
    assert client.get("/v1/models/monitoring").json() == {
        "forecasts": None, "reason": "this service runs no twins"}  # fmt: skip
    assert "this service runs no twins." in page


def test_quality_page_shows_the_models_monitoring(
    client: TestClient, monitored_ward: Callable[..., tuple[ForecastMonitor, Any]]
) -> None:
    """The page renders a monitor's report: windows with AUROC, calibration, the policy's
    verdict and the drift table (the report from the monitor's own tests' ward)."""
    rng = np.random.default_rng(0)
    mon, _ = monitored_ward(rng, patients=10, hours=6)
    app = cast(FastAPI, client.app)
    app.state.monitoring = lambda: {"forecasts": mon.report().to_dict(), "reason": None}
    page = client.get("/quality").text
    assert "1-h event forecasts" in page and "decision-retrain" in page
    tables = re.findall(r'<table class="monitoring" data-event="([^"]+)"', page)
    assert tables == ["map_below_65_30min"]
    assert "1.00 (1.00–1.00)" in page  # the window where the sick fall: perfect ranking
    assert "retrain: calibration slope" in page  # ... with underconfident probabilities
    assert 'id="drift"' in page and '<th scope="row">MAP</th>' in page
    assert page.count("data-day") == 3 + 3  # windows in the event table and the drift table


def test_every_asset_is_local(client: TestClient) -> None:
    feed(client)
    for path in ("/ward", "/patients/bed-7", "/quality"):
        html = client.get(path).text
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs and all(not r.startswith(("http:", "https:", "//")) for r in refs), refs
        for ref in refs:
            if ref.startswith("/static/"):
                assert client.get(ref).status_code == 200, ref
    js = client.get("/static/vendor/uPlot.iife.min.js")
    assert js.status_code == 200 and "uPlot" in js.text


def test_words_beside_colours_and_the_sparkline() -> None:
    assert [risk_level(p) for p in (0.05, 0.3, 0.9, None)] == ["low", "raised", "high", "none"]
    assert sparkline([0.0, 1.0], width=10, height=10) == "0.0,10.0 10.0,0.0"
    assert sparkline([0.5]) == ""


def test_the_ward_is_told_when_data_is_stored(client: TestClient) -> None:
    with client.websocket_connect("/v1/live?types=stored,alert") as ws:
        feed(client)
        assert ws.receive_json() == {"type": "stored", "rows": 5}


def test_acknowledgements_survive_a_restart(tmp_path: Path) -> None:
    from vitaltwin.service.alerts import AlertRule

    rule = AlertRule("test", "risk", on=0.5, off=0.2)
    with DuckDBStore(tmp_path / "s") as store:
        app = install(
            create_app(store, MemoryBus(partitions=2), security=DEV, rules=[rule], shadow=False)
        )
        with TestClient(app) as c:
            with app.state.alerts_lock:
                (a,) = app.state.alerts.observe("p1", "risk", 0.9, datetime.now(UTC))
            assert c.post(f"/v1/alerts/{a.id}/acknowledge").status_code == 200
        # a new service on the same store
        app = install(
            create_app(store, MemoryBus(partitions=2), security=DEV, rules=[rule], shadow=False)
        )
        with TestClient(app) as c:
            (got,) = c.get("/v1/alerts").json()["alerts"]
            assert got["id"] == a.id and got["state"] == "acknowledged"
            assert [e["action"] for e in c.get("/v1/alerts/log").json()] == ["acknowledged",
                                                                              "raised"]  # fmt: skip
