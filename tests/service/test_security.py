"""Who may see what, proven against the running service (sign-in, tokens, roles, patients,
break-glass, payload limits, the audit trail). Each test fails when its protection is removed:
the matrix of every route and role is written here by hand, not derived from the code, and a
route the matrix does not know fails it."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from vitaltwin.dashboard import install
from vitaltwin.governance import (
    ASSERTION_TYPE,
    ROLES,
    AuditError,
    AuditTrail,
    Directory,
    FileKeys,
    TokenService,
    audit_event,
    read_trail,
    signing_key,
    verify_trail,
)
from vitaltwin.service.access import BREAK_GLASS_HEADER, Security
from vitaltwin.service.alerts import AlertRule
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.store import DuckDBStore

CLINICAL = {"clinician", "nurse", "charge_nurse"}
EHR_SCOPES = ("system/Patient.rs", "system/Observation.crs", "system/RiskAssessment.rs")
"""The backend client of these tests: an EHR that reads the chart and risk, sends vitals."""
EVERYONE = set(ROLES)
T = "2026-11-22T08:30:00Z"

# Who may call each route (for a patient of their own unit). Written by hand from the roles'
# purpose (vitaltwin.governance's ROLES docstrings), not read off the code: the test compares
# the service against it, and a route missing here fails.
MATRIX: dict[str, set[str]] = {
    "GET /health/live": EVERYONE,
    "GET /health/ready": EVERYONE,
    "GET /fhir/metadata": EVERYONE,
    "GET /cds-services": EVERYONE,
    "GET /.well-known/smart-configuration": EVERYONE,
    "POST /auth/token": EVERYONE,
    "POST /auth/revoke": EVERYONE,
    "GET /auth/me": EVERYONE,
    "GET /login": EVERYONE,
    "POST /login": EVERYONE,
    "POST /logout": EVERYONE,
    # inputs: devices and the EHR send; no person does
    "POST /v1/observations": {"device", "system"},
    "POST /v1/hl7": {"device", "system"},
    "POST /fhir": {"device"},
    "POST /fhir/Observation": {"device", "system"},
    # operations
    "GET /v1/ingest": {"administrator"},
    "GET /metrics": {"administrator"},
    # the chart
    "GET /v1/patients": CLINICAL | {"system"},
    "GET /v1/patients/{patient_id}": CLINICAL | {"system"},
    "GET /v1/patients/{patient_id}/observations": CLINICAL | {"system"},
    "GET /v1/patients/{patient_id}/medications": CLINICAL,
    "GET /fhir/Patient/{patient_id}": CLINICAL | {"system"},
    "GET /fhir/Observation": CLINICAL | {"system"},
    # the twin and risk
    "GET /v1/patients/{patient_id}/twin": CLINICAL | {"system"},
    "GET /v1/patients/{patient_id}/twin/forecast": CLINICAL | {"system"},
    "GET /v1/patients/{patient_id}/risk": CLINICAL | {"system"},
    "POST /v1/patients/{patient_id}/whatif": CLINICAL | {"system"},
    "GET /fhir/RiskAssessment": CLINICAL | {"system"},
    "POST /cds-services/vitaltwin-patient-view": CLINICAL | {"system"},
    "POST /cds-services/vitaltwin-order-select": CLINICAL | {"system"},
    # alerts: the people who act on them
    "GET /v1/alerts": CLINICAL,
    "GET /v1/alerts/log": CLINICAL,
    "POST /v1/alerts/{alert_id}/acknowledge": CLINICAL,
    "POST /v1/alerts/{alert_id}/snooze": CLINICAL,
    "POST /v1/alerts/{alert_id}/escalate": CLINICAL,
    "POST /v1/alerts/{alert_id}/feedback": CLINICAL,
    "POST /cds-services/vitaltwin-patient-view/feedback": CLINICAL,
    "GET /fhir/Flag": CLINICAL,
    "GET /v1/ward": CLINICAL | {"system"},
    # aggregates: also the data scientist
    "GET /v1/alerts/scorecard": CLINICAL | {"data_scientist"},
    "GET /v1/models/monitoring": CLINICAL | {"data_scientist", "system"},
    # the audit trail: the auditor only
    "GET /v1/audit": {"auditor"},
    "GET /v1/audit/verify": {"auditor"},
    "GET /v1/audit/break-glass": {"auditor"},
    "GET /fhir/AuditEvent": {"auditor"},
    # the dashboard's pages
    "GET /": CLINICAL | {"system"},
    "GET /ward": CLINICAL | {"system"},
    "GET /ward/beds": CLINICAL | {"system"},
    "GET /patients/{patient_id}": CLINICAL | {"system"},
    "GET /quality": CLINICAL | {"data_scientist"},
}


@dataclass
class Ward:
    client: TestClient
    app: Any
    clock: list[float]  # the token service's clock (seconds since the epoch)
    tokens: TokenService
    trail: AuditTrail
    directory: Directory
    headers: dict[str, dict[str, str]]  # role -> the headers that authenticate it
    alert_a: str  # an alert of p-a (unit ICU-A)
    alert_b: str  # an alert of p-b (unit ICU-B)
    client_key: rsa.RSAPrivateKey
    folder: Path


def _settle(c: TestClient, admin: dict[str, str], messages: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = c.get("/v1/ingest", headers=admin).json()
        if got["messages"] >= messages and got["pending"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("ingest did not settle")


def _bearer(c: TestClient, user: str, password: str) -> dict[str, str]:
    got = c.post("/auth/token", data={"grant_type": "password", "username": user,
                                      "password": password})  # fmt: skip
    assert got.status_code == 200, got.text
    return {"authorization": f"Bearer {got.json()['access_token']}"}


def _assertion(key: rsa.RSAPrivateKey, client_id: str, aud: str, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240,
              "jti": uuid.uuid4().hex, **over}  # fmt: skip
    return jwt.encode(claims, key, algorithm="RS384")


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    folder = tmp_path_factory.mktemp("security")
    clock = [time.time()]
    tokens = TokenService(Ed25519PrivateKey.generate(), clock=lambda: clock[0])
    keys = FileKeys(folder / "keys", create=True)  # as `vitaltwin serve` keeps them
    trail = AuditTrail(folder / "audit.jsonl", signing_key(keys, "audit-signing"),
                       checkpoint_every=50)  # fmt: skip
    directory = Directory(folder / "directory.json")
    password = "correct horse battery"
    for role in ("clinician", "nurse", "charge_nurse"):
        directory.add_user(role, role, password, units=("ICU-A",))
    for role in ("data_scientist", "administrator", "auditor"):
        directory.add_user(role, role, password)
    device_key = directory.add_device("gateway-1")
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = client_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    directory.add_client("ehr", pem.decode(), EHR_SCOPES)
    security = Security.enforced(directory, tokens, trail)
    rule = AlertRule("test", "risk", on=0.5, off=0.2)
    with DuckDBStore(folder / "store") as store:
        app = install(create_app(store, MemoryBus(partitions=2), security=security,
                                 rules=[rule], shadow=False))  # fmt: skip
        with TestClient(app) as c:
            headers = {r: _bearer(c, r, password) for r in
                       ("clinician", "nurse", "charge_nurse", "data_scientist",
                        "administrator", "auditor")}  # fmt: skip
            headers["device"] = {"x-api-key": device_key}
            got = c.post("/auth/token", data={
                "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": _assertion(client_key, "ehr", "http://testserver/auth/token"),
            })  # fmt: skip
            assert got.status_code == 200, got.text
            headers["system"] = {"authorization": f"Bearer {got.json()['access_token']}"}
            unit = "https://vitaltwin.org/fhir/StructureDefinition/icu-unit"
            bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "Patient", "id": pid, "gender": "female",
                              "extension": [{"url": unit, "valueString": u}]}}
                for pid, u in (("p-a", "ICU-A"), ("p-b", "ICU-B"))]}  # fmt: skip
            n = c.post("/fhir", json=bundle, headers=headers["device"]).json()["accepted"]
            obs = [{"patient_id": p, "time": T, "code": "8867-4", "value": 80, "unit": "/min"}
                   for p in ("p-a", "p-b")]  # fmt: skip
            n += c.post("/v1/observations", json=obs, headers=headers["device"]).json()["accepted"]
            _settle(c, headers["administrator"], n)
            with app.state.alerts_lock:
                (a,) = app.state.alerts.observe("p-a", "risk", 0.9, datetime.now(UTC))
                (b,) = app.state.alerts.observe("p-b", "risk", 0.9, datetime.now(UTC))
            yield Ward(c, app, clock, tokens, trail, directory, headers, a.id, b.id, client_key,
                       folder)  # fmt: skip


def _call(w: Ward, method: str, path: str, headers: dict[str, str], patient: str = "p-a",
          alert: str | None = None) -> int:  # fmt: skip
    url = path.replace("{patient_id}", patient).replace("{alert_id}", alert or w.alert_a)
    params = {"patient": patient, "subject": f"Patient/{patient}"}
    body: dict[str, Any] = {
        "hook": "patient-view", "hookInstance": "x", "context": {"patientId": patient},
        "resourceType": "Observation", "subject": {"reference": f"Patient/{patient}"},
        "feedback": [{"card": alert or w.alert_a, "outcome": "accepted"}],
    }  # fmt: skip
    if "snooze" in path:
        params |= {"hours": "1", "reason": "being seen"}
    if "feedback" in path and "alerts" in path:
        params |= {"overridden": "false"}
    r = w.client.request(method, url, params=params, headers=headers,
                         json=body if method == "POST" else None,
                         follow_redirects=False)  # fmt: skip
    return int(r.status_code)


def test_every_route_and_role_as_the_matrix_says(ward: Ward) -> None:
    spec = ward.client.get("/openapi.json").json()
    routes = [f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops]
    unknown = sorted(set(routes) - set(MATRIX))
    assert not unknown, f"routes without a rule in the access matrix: {unknown}"
    wrong = []
    for route in routes:
        method, path = route.split(" ", 1)
        for role, headers in ward.headers.items():
            status = _call(ward, method, path, headers)
            allowed = role in MATRIX[route]
            if allowed and status in (401, 403):
                wrong.append(f"{route} as {role}: {status}, should be allowed")
            if not allowed and status != 403:
                wrong.append(f"{route} as {role}: {status}, should be 403")
    assert not wrong, "\n".join(wrong)
    # and with no credentials at all, only the public routes answer
    for route in routes:
        method, path = route.split(" ", 1)
        status = _call(ward, method, path, {})
        if MATRIX[route] is EVERYONE and route != "GET /auth/me":
            assert status not in (401, 403), route
        else:
            assert status in (401, 303, 307), (route, status)  # pages go to the sign-in page


def test_another_units_patient_is_refused_and_lists_hold_only_ones_own(ward: Ward) -> None:
    nurse = ward.headers["nurse"]
    for route in (
        "GET /v1/patients/{patient_id}",
        "GET /v1/patients/{patient_id}/twin",
        "GET /fhir/Observation",
        "GET /fhir/RiskAssessment",
        "GET /fhir/Flag",
        "POST /cds-services/vitaltwin-patient-view",
        "GET /patients/{patient_id}",
    ):
        method, path = route.split(" ", 1)
        assert _call(ward, method, path, nurse, patient="p-b") == 403, route
    assert _call(ward, "POST", "/v1/alerts/{alert_id}/acknowledge", nurse,
                 alert=ward.alert_b) == 403  # fmt: skip
    assert _call(ward, "POST", "/cds-services/vitaltwin-patient-view/feedback", nurse,
                 alert=ward.alert_b) == 403  # fmt: skip
    c = ward.client
    assert [p["patient_id"] for p in c.get("/v1/patients", headers=nurse).json()] == ["p-a"]
    assert {a["patient_id"] for a in c.get("/v1/alerts", headers=nurse).json()["alerts"]} == {"p-a"}
    assert {e["patient_id"] for e in c.get("/v1/alerts/log", headers=nurse).json()} == {"p-a"}
    # the EHR (a backend client) serves the whole hospital
    system = ward.headers["system"]
    ids = {p["patient_id"] for p in c.get("/v1/patients", headers=system).json()}
    assert ids == {"p-a", "p-b"}
    # a care-team assignment opens one patient of another unit
    ward.directory.assign("nurse", units=("ICU-A",), patients=("p-b",))
    pair = ward.tokens.issue(ward.directory.current("nurse"))  # type: ignore[arg-type]
    own = {"authorization": f"Bearer {pair.access_token}"}
    assert c.get("/v1/patients/p-b", headers=own).status_code == 200
    ward.directory.assign("nurse", units=("ICU-A",), patients=())


def test_break_glass_opens_a_chart_with_a_reason_and_is_reported(ward: Ward) -> None:
    c = ward.client
    nurse = ward.headers["nurse"]
    reason = "cardiac arrest next bed, covering"
    got = c.get("/v1/patients/p-b/observations", headers={**nurse, BREAK_GLASS_HEADER: reason})
    assert got.status_code == 200 and got.json()[0]["patient_id"] == "p-b"
    short = c.get("/v1/patients/p-b", headers={**nurse, BREAK_GLASS_HEADER: "urgent"})
    assert short.status_code == 403 and "10 characters" in short.json()["detail"]
    scientist = {**ward.headers["data_scientist"], BREAK_GLASS_HEADER: reason}
    assert c.get("/v1/patients/p-b", headers=scientist).status_code == 403
    # lists never open by break-glass
    listed = c.get("/v1/patients", headers={**nurse, BREAK_GLASS_HEADER: reason}).json()
    assert [p["patient_id"] for p in listed] == ["p-a"]
    report = c.get("/v1/audit/break-glass", headers=ward.headers["auditor"]).json()
    mine = [r for r in report if r["break_glass"] == reason]
    assert mine and mine[0]["who"] == "nurse" and mine[0]["patients"] == ["p-b"]
    assert mine[0]["outcome"] == 200
    events = c.get("/fhir/AuditEvent", params={"patient": "p-b"},
                   headers=ward.headers["auditor"]).json()["entry"]  # fmt: skip
    btg = [e["resource"] for e in events if "break-glass" in e["resource"]["outcomeDesc"]]
    assert btg and any(c["code"] == "BTG" for c in btg[0]["purposeOfEvent"][0]["coding"]), (
        "a break-glass AuditEvent carries purpose of use BTG"
    )


def test_tampered_expired_or_foreign_tokens_are_refused(ward: Ward) -> None:
    c = ward.client
    good = ward.headers["clinician"]["authorization"].split()[1]
    assert c.get("/v1/patients/p-a", headers={"authorization": f"Bearer {good}"}).status_code == 200
    head, payload, sig = good.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["units"] = ["ICU-A", "ICU-B"]  # widen one's own access
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    for token, why in (
        (f"{head}.{forged}.{sig}", "signature"),
        (jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA"), "signature"),
        (jwt.encode(claims, "", algorithm="none"), "invalid"),
        (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "signature"),
        ("not-a-token", "invalid"),
    ):
        got = c.get("/v1/patients/p-b", headers={"authorization": f"Bearer {token}"})
        assert got.status_code == 401 and why in got.json()["detail"], (token[:20], got.text)
        assert got.headers["www-authenticate"].startswith("Bearer")
    # expiry: the same token once its 15 minutes are over
    saved = ward.clock[0]
    ward.clock[0] = saved + ward.tokens.access_ttl_s + 1
    try:
        got = c.get("/v1/patients/p-a", headers={"authorization": f"Bearer {good}"})
        assert got.status_code == 401 and "expired" in got.json()["detail"]
    finally:
        ward.clock[0] = saved
    # a refresh token is no access token; an unknown API key is nobody
    pair = ward.tokens.issue(ward.directory.current("nurse"))  # type: ignore[arg-type]
    got = c.get("/v1/patients/p-a", headers={"authorization": f"Bearer {pair.refresh_token}"})
    assert got.status_code == 401 and "not an access token" in got.json()["detail"]
    got = c.post("/v1/observations", json=[], headers={"x-api-key": "gateway-1.guessed"})
    assert got.status_code == 401


def test_refresh_tokens_rotate_and_a_reused_one_ends_the_session(ward: Ward) -> None:
    c = ward.client
    first = c.post("/auth/token", data={"grant_type": "password", "username": "nurse",
                                        "password": "correct horse battery"}).json()  # fmt: skip
    again = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = c.post("/auth/token", data=again).json()
    assert second["access_token"] != first["access_token"]
    ward.clock[0] += ward.tokens.reuse_grace_s + 1  # past the grace for concurrent requests
    try:
        replay = c.post("/auth/token", data={"grant_type": "refresh_token",
                                             "refresh_token": first["refresh_token"]})  # fmt: skip
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        # the thief's replay ended the session: the legitimate newer token is dead too
        after = c.post("/auth/token", data={"grant_type": "refresh_token",
                                            "refresh_token": second["refresh_token"]})  # fmt: skip
        assert after.status_code == 400
    finally:
        ward.clock[0] = time.time()


def test_wrong_passwords_are_throttled(ward: Ward) -> None:
    c = ward.client
    ward.directory.add_user("temp", "nurse", "another long password", units=("ICU-A",))
    codes = [c.post("/auth/token", data={"grant_type": "password", "username": "temp",
                                         "password": f"guess {i}"}).status_code
             for i in range(6)]  # fmt: skip
    assert codes[:5] == [400] * 5 and codes[5] == 429
    right = c.post("/auth/token", data={"grant_type": "password", "username": "temp",
                                        "password": "another long password"})  # fmt: skip
    assert right.status_code == 429  # still refused while throttled: no oracle for the guesser
    # another person behind the same address (a proxy) still signs in: the address allows more
    other = c.post("/auth/token", data={"grant_type": "password", "username": "nurse",
                                        "password": "correct horse battery"})  # fmt: skip
    assert other.status_code == 200
    ward.app.state.sign_in_throttle._failures.clear()


def test_backend_client_assertions_are_checked(ward: Ward) -> None:
    c = ward.client
    aud = "http://testserver/auth/token"

    def ask(assertion: str) -> Any:
        return c.post("/auth/token", data={"grant_type": "client_credentials",
                                           "client_assertion_type": ASSERTION_TYPE,
                                           "client_assertion": assertion})  # fmt: skip

    once = _assertion(ward.client_key, "ehr", aud)
    assert ask(once).status_code == 200
    assert "replayed" in ask(once).json()["error_description"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert ask(_assertion(other, "ehr", aud)).status_code == 401
    assert ask(_assertion(ward.client_key, "ehr", "http://elsewhere/token")).status_code == 401
    long = _assertion(ward.client_key, "ehr", aud, exp=int(time.time()) + 3600)
    assert "more than 300 s" in ask(long).json()["error_description"]
    assert ask(_assertion(ward.client_key, "nobody", aud)).status_code == 401


def test_oversized_and_malformed_payloads_get_clear_4xx(ward: Ward) -> None:
    c = ward.client
    device = ward.headers["device"]
    big = c.post("/v1/observations", content=b"[" + b" " * (2 << 20) + b"]",
                 headers={**device, "content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and "over" in big.json()["detail"]
    for raw in (b"{", b'{"patient_id": 1}', b"[1, 2]", "\u00e9".encode("latin-1")):
        got = c.post("/v1/observations", content=raw,
                     headers={**device, "content-type": "application/json"})  # fmt: skip
        assert 400 <= got.status_code < 500 and got.json()["detail"], raw
    nurse = ward.headers["nurse"]
    got = c.post("/v1/patients/p-a/whatif", content=b"{not json", headers={
        **nurse, "content-type": "application/json"})  # fmt: skip
    assert got.status_code == 422
    got = c.post("/auth/token", data={"grant_type": "password", "username": "x" * 500,
                                      "password": "y"})  # fmt: skip
    assert got.status_code == 422  # over the form field's limit


def test_every_access_is_audited_and_the_trail_is_intact(ward: Ward) -> None:
    c = ward.client
    rid = uuid.uuid4().hex
    c.get("/v1/patients/p-a/observations", headers={**ward.headers["clinician"],
                                                   "x-request-id": rid})  # fmt: skip
    c.get("/v1/patients/p-b", headers=ward.headers["clinician"])  # refused: audited too
    entries = list(read_trail(ward.trail.path))
    read = next(e for e in entries if e.get("request_id") == rid)
    assert read["who"] == "clinician" and read["role"] == "clinician"
    assert read["patients"] == ["p-a"] and read["action"] == "R" and read["outcome"] == 200
    assert read["purpose"] == "TREAT" and datetime.fromisoformat(read["time"]).tzinfo
    assert read["operation"] == "GET /v1/patients/{patient_id}/observations"
    refused = [e for e in entries if e.get("patients") == ["p-b"] and e.get("outcome") == 403]
    assert refused, "refusals are recorded"
    signins = [e for e in entries if e.get("operation") == "sign-in"]
    assert {e["outcome"] for e in signins} >= {200, 400}
    anonymous = {e["outcome"] for e in entries if e.get("who") == "(not signed in)"}
    assert anonymous <= {401, 303}, anonymous  # refused (a page: sent to the sign-in page)
    event = audit_event(read)
    from fhirclient.models.auditevent import AuditEvent

    parsed = AuditEvent(event)  # strict R4 parsing
    assert parsed.entity[0].what.reference == "Patient/p-a" and parsed.action == "R"
    verified = c.get("/v1/audit/verify", headers=ward.headers["auditor"]).json()
    assert verified["ok"] and verified["checkpoints"] >= 1
    assert verified["signed_through"] == verified["entries"]


def _tampered(trail: Path, tmp: Path, change: Any) -> Path:
    lines = trail.read_text().splitlines()
    out = tmp / f"t{uuid.uuid4().hex}.jsonl"
    out.write_text("\n".join(change(lines)) + "\n")
    return out


def test_audit_tampering_is_found(ward: Ward, tmp_path: Path) -> None:
    ward.trail.checkpoint()
    key = ward.trail.public_key
    assert verify_trail(ward.trail.path, key).ok
    lines = ward.trail.path.read_text().splitlines()
    assert len(lines) > 20
    i = next(n for n, line in enumerate(lines) if '"who":"nurse"' in line and n > 2)

    def edit(ls: list[str]) -> list[str]:
        ls = list(ls)
        ls[i] = ls[i].replace('"who":"nurse"', '"who":"somebody"')
        return ls

    def remove(ls: list[str]) -> list[str]:
        return ls[:i] + ls[i + 1 :]

    def reorder(ls: list[str]) -> list[str]:
        return [*ls[:i], ls[i + 1], ls[i], *ls[i + 2 :]]

    def rechain(ls: list[str]) -> list[str]:
        """An edit with every hash after it recomputed: only the signatures give it away."""
        from vitaltwin.governance._audit import _canonical, _hash

        out, prev = [], "0" * 64
        for n, line in enumerate(ls):
            e = json.loads(line)
            if n == i:
                e["who"] = "somebody"
            e["prev"] = prev
            e["hash"] = _hash(prev, e)
            prev = e["hash"]
            out.append(_canonical(e).decode())
        return out

    for change, word in ((edit, "edited"), (remove, "removed"), (reorder, "reordered"),
                         (rechain, "signature invalid")):  # fmt: skip
        path = _tampered(ward.trail.path, tmp_path, change)
        check = verify_trail(path, key)
        assert not check.ok and any(word in p for p in check.problems), (change, check)
    # and the command says so: exit 0 on the trail, 1 naming the line on the edited copy
    from typer.testing import CliRunner

    from vitaltwin.cli import app as cli

    for path, code in ((ward.trail.path, 0), (_tampered(ward.trail.path, tmp_path, edit), 1)):
        result = CliRunner().invoke(cli, ["audit", "verify", "--trail", str(path),
                                          "--folder", str(ward.folder)])  # fmt: skip
        assert result.exit_code == code, result.output
    assert f"line {i + 1}" in result.output and "edited" in result.output


def test_files_holding_secrets_are_owner_only(ward: Ward) -> None:
    for path in (ward.trail.path, ward.directory.path):
        assert path.stat().st_mode & 0o077 == 0, path
    assert (ward.folder / "keys" / "audit-signing.key").stat().st_mode & 0o077 == 0
    doc = ward.directory.path.read_text()
    assert "correct horse battery" not in doc and "$argon2id$" in doc
    last = list(read_trail(ward.trail.path))[-1]
    assert datetime.fromisoformat(last["time"]).utcoffset() == timedelta(0)


def test_request_rates_are_limited_per_caller(ward: Ward) -> None:
    guard = ward.app.state.guard
    saved = guard.security
    guard.security = replace(saved, person_rate=(1.0, 5.0))  # 1/s, 5 at once
    try:
        c = ward.client
        codes = [c.get("/v1/patients", headers=ward.headers["nurse"]).status_code
                 for _ in range(8)]  # fmt: skip
        assert codes[:5] == [200] * 5 and codes[-1] == 429, codes
        refused = c.get("/v1/patients", headers=ward.headers["nurse"])
        assert int(refused.headers["retry-after"]) >= 1 and "too many" in refused.json()["detail"]
        # another person, a device and the health probes are not held back by her
        assert c.get("/v1/patients", headers=ward.headers["clinician"]).status_code == 200
        for _ in range(20):
            sent = c.post("/v1/observations", json=[], headers=ward.headers["device"])
            assert sent.status_code != 429
        assert all(c.get("/health/live").status_code == 200 for _ in range(20))
    finally:
        guard.security = saved


def test_a_trail_resumes_after_an_entry_longer_than_the_read_chunk(tmp_path: Path) -> None:
    """A ward of thousands of beds listed in one request makes one long entry; the trail must
    still reopen after it (the service refuses to start on a damaged trail)."""
    from vitaltwin.governance import AuditRecord

    key = Ed25519PrivateKey.generate()
    trail = AuditTrail(tmp_path / "a.jsonl", key)
    many = tuple(f"bed-{i:05d}" for i in range(20_000))  # about 300 kB in one line
    trail.record(AuditRecord("R", "GET /v1/ward", "ehr", "system", 200, patients=many))
    trail.close()
    again = AuditTrail(tmp_path / "a.jsonl", key)
    again.record(AuditRecord("R", "GET /v1/ward", "ehr", "system", 200))
    again.close()
    assert verify_trail(tmp_path / "a.jsonl", key.public_key()).ok
    (tmp_path / "a.jsonl").write_text((tmp_path / "a.jsonl").read_text()[:-40] + "\n")
    with pytest.raises(AuditError, match="damaged"):  # a cut last entry stops the start
        AuditTrail(tmp_path / "a.jsonl", key)


def test_secrets_are_never_logged(ward: Ward, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = ward.client
    password = "correct horse battery"
    got = c.post("/auth/token", data={"grant_type": "password", "username": "nurse",
                                      "password": password})  # fmt: skip
    assert got.status_code == 200, got.text
    pair = got.json()
    c.get("/v1/patients", headers={"authorization": f"Bearer {pair['access_token']}"})
    c.post("/auth/token", data={"grant_type": "refresh_token",
                                "refresh_token": pair["refresh_token"]})  # fmt: skip
    c.post("/v1/observations", json=[], headers=ward.headers["device"])
    logged = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    assert "POST /auth/token" in logged  # the requests were logged...
    for secret in (password, pair["access_token"], pair["refresh_token"],
                   ward.headers["device"]["x-api-key"]):  # fmt: skip
        assert secret not in logged  # ...their secrets were not


def test_cookie_sessions_need_the_csrf_token_and_answers_carry_security_headers(
    ward: Ward,
) -> None:
    """The dashboard's session cookie opens nothing unsafe without the double-submit CSRF
    token; every answer carries the security headers (no framing, no sniffing, no caching,
    a content security policy without inline scripts)."""
    browser = TestClient(ward.app)  # its own cookie jar: a clinician's browser
    got = browser.post("/login", data={"username": "clinician",
                                       "password": "correct horse battery"},
                       follow_redirects=False)  # fmt: skip
    assert got.status_code == 303 and browser.cookies.get("vt_access")
    ack = f"/v1/alerts/{ward.alert_a}/acknowledge"
    assert browser.get("/v1/patients/p-a").status_code == 200  # reading needs no token
    refused = browser.post(ack)
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert browser.post(ack, headers={"x-csrf-token": "guess"}).status_code == 403
    token = browser.cookies.get("vt_csrf")
    # with the token the request reaches the route: acknowledged (200), or already by an
    # earlier test of this module (409)
    assert token and browser.post(ack, headers={"x-csrf-token": token}).status_code in (200, 409)
    for path in ("/login", "/ward", "/v1/patients/p-a"):
        h = browser.get(path).headers
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["cache-control"] == "no-store" and h["referrer-policy"] == "no-referrer"
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "unsafe-inline" not in csp.split("style-src")[0]
