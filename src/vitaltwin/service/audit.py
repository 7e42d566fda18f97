"""The audit trail over HTTP, for auditors (scope ``user/AuditEvent.rs``).

* ``GET /v1/audit``: entries, newest first (by patient, user, or only break-glass);
* ``GET /v1/audit/verify``: the trail checked (hashes, order, links, signatures);
* ``GET /v1/audit/break-glass``: every break-glass access with who, patient, reason and when —
  the report a privacy office reviews;
* ``GET /fhir/AuditEvent?patient=``: the entries as FHIR R4 AuditEvents (IHE BALP).

Reading the trail is itself recorded in it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from vitaltwin.governance import AuditTrail, audit_event, read_trail, verify_trail
from vitaltwin.service.access import ScopedRoute, guard_of, scope
from vitaltwin.service.standards import FHIR_JSON


def _trail(request: Request) -> AuditTrail:
    trail = guard_of(request).security.audit
    if trail is None:
        raise HTTPException(404, "this service keeps no audit trail (development mode)")
    return trail


def _entries(
    trail: AuditTrail, patient: str | None, who: str | None, break_glass: bool, limit: int
) -> list[dict[str, Any]]:
    chosen = [
        e
        for e in read_trail(trail.path)
        if e.get("kind") == "event"
        and (patient is None or patient in (e.get("patients") or ()))
        and (who is None or e.get("who") == who)
        and (not break_glass or e.get("break_glass"))
    ]
    return chosen[::-1][:limit]


def audit_router() -> APIRouter:
    router = APIRouter(route_class=ScopedRoute, tags=["audit"])
    audit_scope = scope("user/AuditEvent.rs", "none")

    @router.get("/v1/audit", openapi_extra=audit_scope,
                responses={404: {"description": "no audit trail"}})  # fmt: skip
    def audit_entries(
        request: Request,
        patient: Annotated[str | None, Query(max_length=128)] = None,
        who: Annotated[str | None, Query(max_length=128)] = None,
        break_glass: Annotated[bool, Query(description="only break-glass accesses")] = False,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first: who, role, patients, action, operation, purpose,
        outcome, break-glass reason, request id, time, sequence number and hash."""
        return _entries(_trail(request), patient, who, break_glass, limit)

    @router.get("/v1/audit/verify", openapi_extra=audit_scope,
                responses={404: {"description": "no audit trail"}})  # fmt: skip
    def audit_verify(request: Request) -> dict[str, Any]:
        """The trail checked now: entries, signed checkpoints, how far the signatures reach,
        and every problem found (edited, removed, inserted or reordered entries)."""
        trail = _trail(request)
        trail.checkpoint()  # sign what is there, so the check reaches the end
        check = verify_trail(trail.path, trail.public_key)
        return {"ok": check.ok, "entries": check.entries, "events": check.events,
                "checkpoints": check.checkpoints, "signed_through": check.signed_through,
                "problems": check.problems}  # fmt: skip

    @router.get("/v1/audit/break-glass", openapi_extra=audit_scope,
                responses={404: {"description": "no audit trail"}})  # fmt: skip
    def break_glass_report(
        request: Request, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
    ) -> list[dict[str, Any]]:
        """Every break-glass access, newest first: who, role, patient, reason, operation,
        outcome, time."""
        keep = ("time", "who", "role", "patients", "break_glass", "operation", "outcome")
        rows = _entries(_trail(request), None, None, True, limit)
        return [{k: e.get(k) for k in keep} for e in rows]

    @router.get("/fhir/AuditEvent", openapi_extra=audit_scope,
                responses={404: {"description": "no audit trail"}})  # fmt: skip
    def fhir_audit_events(
        request: Request,
        patient: Annotated[str | None, Query(max_length=128)] = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=10_000)] = 1000,
    ) -> JSONResponse:
        """FHIR search: a searchset Bundle of AuditEvents (IHE BALP), newest first."""
        pid = patient.removeprefix("Patient/") if patient else None
        rows = _entries(_trail(request), pid, None, False, count)
        entry = [{"resource": audit_event(e), "search": {"mode": "match"}} for e in rows]
        return JSONResponse({"resourceType": "Bundle", "type": "searchset",
                             "total": len(entry), "entry": entry},
                            media_type=FHIR_JSON)  # fmt: skip

    return router
