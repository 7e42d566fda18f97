"""Standards out, used by real clients against the running service: fhirclient and fhirpy read a
patient's RiskAssessments and create an Observation; a CDS Hooks patient-view call returns valid
cards; card feedback reaches the alert log."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from vitaltwin.service.access import Security
from vitaltwin.service.alerts import AlertRule
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.store import DuckDBStore

DEV = Security.development_mode()
"""Every caller may do everything (access rules: tests/service/test_security.py)."""

T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("standards")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rule = AlertRule("test rule", "forecast:map_below_65_30min", on=-1.0, off=-2.0)
    with DuckDBStore(tmp / "s") as store:
        app = create_app(store, MemoryBus(partitions=2), security=DEV, with_twins=True,
                         rules=[rule], shadow=False, twin_settle_s=0)  # fmt: skip
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        body = [{"patient_id": "p1", "time": (T0 + timedelta(seconds=s)).isoformat(),
                 "code": "HR", "value": 95, "unit": "/min"} for s in range(20)]  # fmt: skip
        while True:
            try:
                if httpx.get(f"{url}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        httpx.post(f"{url}/v1/observations", json=body)
        while not httpx.get(f"{url}/v1/alerts").json()["alerts"]:
            assert time.monotonic() < deadline, "no twin forecast yet"
            time.sleep(0.2)
        yield url
        server.should_exit = True
        thread.join(30)


def observation(value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p2"},
        "effectiveDateTime": "2026-11-22T09:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "code": "/min",
                          "system": "http://unitsofmeasure.org"},
    }  # fmt: skip


def test_fhirclient_reads_risk_and_creates_an_observation(base: str) -> None:
    from fhirclient import client
    from fhirclient.models.observation import Observation
    from fhirclient.models.riskassessment import RiskAssessment

    smart = client.FHIRClient(settings={"app_id": "vt-test", "api_base": f"{base}/fhir/"})
    search = RiskAssessment.where(struct={"subject": "Patient/p1"})
    found = list(search.perform_resources_iter(smart.server))
    assert {r.prediction[0].outcome.text for r in found} >= {"map_below_65_30min"}
    assert all(0 <= r.prediction[0].probabilityDecimal <= 1 for r in found)
    assert found[0].basis and "8867-4" in found[0].basis[0].display
    assert found[0].method.text.startswith("vitaltwin ")
    created = Observation(observation(77)).create(smart.server)
    assert created["id"].startswith("vt-") and created["valueQuantity"]["value"] == 77


def test_fhirpy_reads_risk_and_creates_an_observation(base: str) -> None:
    from fhirpy import SyncFHIRClient

    fhir = SyncFHIRClient(f"{base}/fhir")
    risks = fhir.resources("RiskAssessment").search(subject="Patient/p1").fetch()
    assert len(risks) >= 1 and risks[0]["subject"]["reference"] == "Patient/p1"
    obs = fhir.resource("Observation", **observation(78))
    obs.save()
    assert obs.id and obs.id.startswith("vt-")
    deadline = time.monotonic() + 30
    while not httpx.get(f"{base}/v1/patients/p2/observations").json():
        assert time.monotonic() < deadline, "created observations were not stored"
        time.sleep(0.1)
    flags = fhir.resources("Flag").search(patient="p1").fetch()
    assert flags and "Decision support only" in flags[0]["code"]["text"]


def test_cds_hooks_patient_view_cards_and_feedback(base: str) -> None:
    services = httpx.get(f"{base}/cds-services").json()["services"]
    svc = next(s for s in services if s["hook"] == "patient-view")
    call = {"hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "hook": "patient-view",
            "context": {"userId": "Practitioner/1", "patientId": "p1"}}  # fmt: skip
    r = httpx.post(f"{base}/cds-services/{svc['id']}", json=call)
    assert r.status_code == 200
    cards = r.json()["cards"]
    assert len(cards) >= 2  # the forecast and the open alert
    for card in cards:  # CDS Hooks 2.0: required fields and their limits
        assert card["uuid"] and len(card["summary"]) <= 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"]
    assert "Decision support only" in cards[0]["detail"]
    alert_card = cards[1]
    fb = {"feedback": [{"card": alert_card["uuid"], "outcome": "overridden",
                        "outcomeTimestamp": "2026-11-22T09:00:00Z"}]}  # fmt: skip
    assert httpx.post(f"{base}/cds-services/{svc['id']}/feedback", json=fb).status_code == 200
    alerts = httpx.get(f"{base}/v1/alerts").json()["alerts"]
    assert next(a for a in alerts if a["id"] == alert_card["uuid"])["overridden"] is True
    bad = httpx.post(f"{base}/cds-services/{svc['id']}", json={"hook": "order-select"})
    assert bad.status_code == 400


def test_cds_hooks_order_select_forecasts_the_selected_orders(base: str) -> None:
    def order(oid: str, text: str, **dose_and_rate: Any) -> dict[str, Any]:
        return {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": oid,
                "status": "draft",
                "intent": "order",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"text": text},
                "dosageInstruction": [{"doseAndRate": [dose_and_rate]}],
            }
        }

    call = {
        "hookInstance": "5f0a7a7e-8d3c-4d1b-9d3e-0a1b2c3d4e5f", "hook": "order-select",
        "context": {
            "userId": "Practitioner/1", "patientId": "p1",
            "selections": ["MedicationRequest/f1", "MedicationRequest/n1", "MedicationRequest/x"],
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [
                order("f1", "Sodium chloride 0.9 % bolus",
                      doseQuantity={"value": 500, "unit": "mL"},
                      rateQuantity={"value": 1000, "unit": "mL/h"}),
                order("n1", "Norepinephrine infusion",
                      rateQuantity={"value": 0.1, "unit": "ug/kg/min"}),
                order("x", "Paracetamol 1 g"),
                order("f2", "Ringer's lactate", doseQuantity={"value": 1000, "unit": "mL"}),
            ]},
        },
    }  # fmt: skip
    url = f"{base}/cds-services/vitaltwin-order-select"
    cards = httpx.post(url, json=call, timeout=120).json()["cards"]
    assert [c["summary"].split(",")[0].split(":")[0] for c in cards] == [
        "MedicationRequest/f1",
        "MedicationRequest/n1",
        "MedicationRequest/x",
    ]  # the unselected draft is left out
    assert "P(MAP<65" in cards[0]["summary"] and "Without it" in cards[0]["detail"]
    assert "not forecast" in cards[2]["summary"]
    for card in cards:
        assert len(card["summary"]) <= 140 and card["indicator"] == "info"
