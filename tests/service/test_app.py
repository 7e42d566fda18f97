"""The HTTP service: inputs onto the bus and into the store (nothing lost), the record out as
JSON and FHIR, health, metrics, request ids, a scope on every route, and no 5xx under
schemathesis."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from vitaltwin.dashboard import install
from vitaltwin.governance import granted
from vitaltwin.service.access import ScopedRoute, Security
from vitaltwin.service.app import JsonLogFormatter, create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.store import DuckDBStore

DEV = Security.development_mode()
"""Every caller may do everything (access rules: tests/service/test_security.py)."""

T = "2026-11-22T08:30:00Z"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with DuckDBStore(tmp_path / "s") as store:
        app = install(
            create_app(store, MemoryBus(partitions=4), security=DEV, max_body_bytes=200_000)
        )
        with TestClient(app) as c:
            yield c


def settle(client: TestClient, messages: int, timeout_s: float = 20.0) -> dict[str, Any]:
    """Wait until the ingest worker has processed ``messages`` bus messages in all (the sum of
    the ``accepted`` of the posts so far) and acknowledged them, then read its counts again:
    the worker counts before it acknowledges, so once nothing is pending the counts are
    complete. (Probing the bus instead raced with the worker's read.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got: dict[str, Any] = client.get("/v1/ingest").json()
        if got["messages"] >= messages and got["pending"] == 0:
            done: dict[str, Any] = client.get("/v1/ingest").json()
            return done
        time.sleep(0.05)
    raise AssertionError(f"the ingest worker did not settle: {got}")


def test_health(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["ingest"] == "ok"


def test_a_time_bound_beyond_utc_years_is_a_clear_422(client: TestClient) -> None:
    """Found by schemathesis: 0001-01-01T00:00+14:00 is before year 1 in UTC (was a 500)."""
    for name in ("start", "end"):
        got = client.get("/v1/patients/p1/observations",
                         params={name: "0001-01-01T00:00:00+14:00"})  # fmt: skip
        assert got.status_code == 422
        assert (
            "outside years 1-9999 in UTC" in got.json()["detail"] and name in got.json()["detail"]
        )


def test_observations_in_are_stored_or_quarantined_and_read_back(client: TestClient) -> None:
    body = [
        {"patient_id": "p1", "time": T, "code": "8867-4", "value": 84, "unit": "/min"},
        {"patient_id": "p1", "time": T, "code": "ABP-M", "value": 71, "unit": "mmHg"},
        {"patient_id": "p2", "time": T, "code": "8867-4", "value": 999, "unit": "/min"},
        {"patient_id": "p2", "time": "yesterday", "code": "8867-4", "value": 80, "unit": "/min"},
    ]
    r = client.post("/v1/observations", json=body)
    assert r.status_code == 202 and r.json()["accepted"] == 2  # one message per patient
    got = settle(client, 2)
    assert (got["read"], got["stored"], got["quarantined"], got["duplicates"]) == (4, 2, 2, 0)
    obs = client.get("/v1/patients/p1/observations").json()
    assert [(o["loinc"], o["value"], o["method"]) for o in obs] == [
        ("8478-0", 71.0, "invasive-arterial"),
        ("8867-4", 84.0, None),
    ]
    assert obs[0]["effective_time"] == "2026-11-22T08:30:00+00:00"
    client.post("/v1/observations", json=body)  # the same again: duplicates, never twice
    again = settle(client, 4)
    # the values are duplicates; the bad records are quarantined again, as this message's
    assert (again["duplicates"], again["stored"], again["quarantined"]) == (2, 2, 4)
    only_hr = client.get("/v1/patients/p1/observations", params={"code": "8867-4"}).json()
    assert len(only_hr) == 1
    bad = client.get("/v1/patients/p1/observations", params={"start": "2026-11-22T08:00:00"})
    assert bad.status_code == 422  # a time without a zone


def test_fhir_in_and_out(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7c0e7c3e-1111-4c6e-9a65-3a1f5f2b0001",
                "resource": {"resourceType": "Patient", "id": "pf", "gender": "female"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
                    "subject": {"reference": "urn:uuid:7c0e7c3e-1111-4c6e-9a65-3a1f5f2b0001"},
                    "effectiveDateTime": T,
                    "valueQuantity": {"value": 95, "unit": "%", "code": "%"},
                }
            },
        ],
    }
    first = client.post("/fhir", json=bundle)
    assert first.status_code == 202
    invalid = {**bundle["entry"][1]["resource"], "status": 5}  # type: ignore[index]
    refused = client.post("/fhir/Observation", json=invalid)
    assert refused.status_code == 400  # a FHIR create is checked at once: OperationOutcome
    assert "Observation.status: expected str" in refused.json()["issue"][0]["diagnostics"]
    second = client.post("/fhir", json={**bundle, "entry": [{"resource": invalid}]})
    assert second.status_code == 202
    got = settle(client, first.json()["accepted"] + second.json()["accepted"])
    assert (got["stored"], got["quarantined"]) == (1, 1)  # the Bundle's invalid one: quarantined
    patient = client.get("/fhir/Patient/pf")
    assert patient.headers["content-type"].startswith("application/fhir+json")
    FHIRElementFactory.instantiate("Patient", patient.json())
    search = client.get("/fhir/Observation", params={"patient": "Patient/pf"}).json()
    FHIRElementFactory.instantiate("Bundle", search)
    assert search["total"] == 1
    assert search["entry"][0]["resource"]["valueQuantity"]["value"] == 95
    assert client.get("/fhir/Patient/nobody").status_code == 404
    assert client.post("/fhir", json={"no": "type"}).status_code == 400


def test_hl7_over_http(client: TestClient) -> None:
    msg = (
        "MSH|^~\\&|MON|ICU|VT|H|20261122083000+0000||ORU^R01|C1|P|2.5\r"
        "PID|1||PAT1^^^H^MR||Doe^J||19600101|F\r"
        "OBX|1|NM|8867-4^HR^LN||88|/min|||||F|||20261122083000+0000\r"
    )
    headers = {"content-type": "text/plain"}
    assert client.post("/v1/hl7", content=msg, headers=headers).status_code == 202
    assert client.post("/v1/hl7", content="hello", headers=headers).status_code == 400
    settle(client, 1)
    assert [o["value"] for o in client.get("/v1/patients/PAT1/observations").json()] == [88.0]


def test_observation_bodies_that_are_not_records_get_a_clear_422(client: TestClient) -> None:
    json_type = {"content-type": "application/json"}
    for content, says in (
        (b"{not json", "the body is not JSON"),
        (b'{"patient_id": "p1"}', "a JSON array of records expected, got dict"),
        (b'[{"patient_id": "p1"}, 5]', "record 1 is not a JSON object"),
    ):
        r = client.post("/v1/observations", content=content, headers=json_type)
        assert r.status_code == 422 and r.json()["detail"][0]["msg"].startswith(says), r.text
    # NaN is not JSON to orjson, but the standard library reads it: the record is accepted
    # and the ingest worker quarantines it with its own reason, never lost
    nan = b'[{"patient_id": "p9", "time": "2026-11-22T08:30:00Z", "code": "8867-4", ' \
          b'"value": NaN, "unit": "/min"}]'  # fmt: skip
    r = client.post("/v1/observations", content=nan, headers=json_type)
    assert r.status_code == 202
    got = settle(client, 1)
    assert (got["stored"], got["quarantined"]) == (0, 1)


def test_request_ids_logs_limits_and_metrics(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vitaltwin.service"):
        r = client.get("/health/live", headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    line = json.loads(JsonLogFormatter().format(caplog.records[-1]))
    assert (
        line["request_id"] == "abc123" and line["status"] == 200 and line["path"] == "/health/live"
    )
    assert len(client.get("/health/live").headers["x-request-id"]) == 32  # one made when absent
    big = client.post("/v1/observations", content=b"[" + b"1," * 150_000 + b"1]",
                      headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413
    client.post("/v1/observations", json=[])
    text = client.get("/metrics").text
    assert 'vitaltwin_stage_seconds_count{stage="receive"}' in text
    assert "vitaltwin_requests_total" in text


def test_every_route_declares_a_scope(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert len(operations) >= 12
    assert all("x-scope" in op for op in operations), [
        op["operationId"] for op in operations if "x-scope" not in op
    ]
    router = APIRouter(route_class=ScopedRoute)
    with pytest.raises(TypeError, match="declares no scope"):

        @router.get("/unscoped")
        def unscoped() -> None: ...


def test_scopes_are_checked_smart_style() -> None:
    assert granted("patient/Observation.rs", ("user/*.rs",))
    assert granted("user/Observation.r", ("system/Observation.cruds",))
    assert not granted("user/Observation.c", ("user/Observation.rs",))
    assert not granted("system/Observation.r", ("user/*.cruds",))
    assert not granted("user/Patient.r", ("user/Observation.rs",))
    with pytest.raises(ValueError):
        granted("Observation.read", ())


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    examples = int(os.environ.get("VITALTWIN_HYPOTHESIS_EXAMPLES", "60")) // 2
    with DuckDBStore(tmp_path / "s") as store:
        app = install(
            create_app(store, MemoryBus(partitions=2), security=DEV)
        )  # the service as served
        app.state.worker.start()
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            failures: list[tuple[str, str, int]] = []

            def call(case: Any) -> None:
                response = case.call()
                if response.status_code >= 500:
                    failures.append((case.method, case.path, response.status_code))

            operations = [op.ok() for op in schema.get_all_operations()]  # type: ignore[union-attr]
            assert len(operations) >= 12
            for operation in operations:
                run: Any = settings(
                    max_examples=examples,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                )(given(case=operation.as_strategy())(call))
                run()
            assert failures == []
        finally:
            app.state.worker.stop()
