"""Standards out: a FHIR R4 REST subset and a CDS Hooks 2.0 service, over the same parts as the
JSON API.

FHIR (base ``/fhir``; ``application/fhir+json``):

* ``GET /fhir/metadata``: the CapabilityStatement of what follows;
* ``POST /fhir/Observation`` (create): validated at once (400 with an OperationOutcome naming
  every problem when invalid), then accepted onto the bus and answered ``201`` with the
  resource, its id and ``Location``; stored by the ingest worker like any input;
* ``GET /fhir/RiskAssessment?subject=Patient/ID`` (or ``patient=``): the twin's latest
  one-hour forecast as RiskAssessments, one per event (probability, horizon, the twin's model
  version), ``basis`` naming the observations of the last hour the twin assimilated;
* ``GET /fhir/Flag?patient=``: alerts as Flags (active until resolved).

CDS Hooks (``/cds-services``): discovery, ``patient-view`` returning cards with where the
patient is heading (forecast probabilities), how sure the twin is (its status) and the patient's
open alerts, each card marked decision support; ``order-select`` forecasting a selected
crystalloid bolus or norepinephrine rate beside no change (:func:`draft_plans`);
``POST /cds-services/{id}/feedback`` records accepted / overridden into the alert log (the
scorecard's overrides).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from vitaltwin.governance import Identity
from vitaltwin.interop.fhir import r4_errors
from vitaltwin.interop.fhir_out import risk_assessment
from vitaltwin.service.access import PUBLIC, ScopedRoute, guard_of, identity, scope
from vitaltwin.service.alerts import DECISION_SUPPORT, AlertEngine
from vitaltwin.service.bus import Bus
from vitaltwin.service.ingest import envelope, fhir_key
from vitaltwin.service.twins import TwinSupervisor
from vitaltwin.store import Store

FHIR_JSON = "application/fhir+json"
SERVICE_ID = "vitaltwin-patient-view"


ORDER_SERVICE_ID = "vitaltwin-order-select"
_FLUIDS = ("sodium chloride", "saline", "ringer", "plasma-lyte", "plasmalyte", "crystalloid")
_NOREPINEPHRINE = ("norepinephrine", "noradrenaline")


def _text(concept: object) -> str:
    if not isinstance(concept, dict):
        return ""
    names = [
        str(c.get("display") or "") for c in concept.get("coding") or [] if isinstance(c, dict)
    ]
    return " ".join([str(concept.get("text") or ""), *names]).lower()


def draft_plans(context: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, str]]:
    """(order, what-if plan or None, why not) for each selected draft MedicationRequest:
    a crystalloid bolus (dose in mL; over the rate's time, else 30 min) or a norepinephrine rate
    (ug/kg/min). Orders are recognised by their medication's name (text or coding display);
    anything else, or an order without the amount, is named and not forecast, never guessed."""
    selected = set(context.get("selections") or [])
    bundle = context.get("draftOrders") or {}
    out: list[tuple[str, dict[str, Any] | None, str]] = []
    for entry in bundle.get("entry") or [] if isinstance(bundle, dict) else []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or res.get("resourceType") != "MedicationRequest":
            continue
        ref = f"MedicationRequest/{res.get('id')}"
        if selected and ref not in selected:
            continue
        name = _text(res.get("medicationCodeableConcept"))
        dosage = (res.get("dosageInstruction") or [{}])[0]
        dr = (dosage.get("doseAndRate") or [{}])[0] if isinstance(dosage, dict) else {}
        dose, rate = dr.get("doseQuantity") or {}, dr.get("rateQuantity") or {}
        if any(f in name for f in _FLUIDS):
            if (dose.get("code") or dose.get("unit")) != "mL" or not dose.get("value"):
                out.append((ref, None, "a fluid order needs its volume in mL"))
                continue
            over = 30.0
            if rate.get("value") and (rate.get("code") or rate.get("unit")) == "mL/h":
                over = float(dose["value"]) / float(rate["value"]) * 60.0
            plan = {"name": ref, "fluid_ml": float(dose["value"]), "fluid_over_min": over}
            out.append((ref, plan, ""))
        elif any(n in name for n in _NOREPINEPHRINE):
            unit = str(rate.get("code") or rate.get("unit") or "")
            if unit not in ("ug/kg/min", "mcg/kg/min") or rate.get("value") is None:
                out.append((ref, None, "a norepinephrine order needs its rate in ug/kg/min"))
                continue
            out.append((ref, {"name": ref, "ne_ug_kg_min": float(rate["value"])}, ""))
        else:
            out.append((ref, None, "only crystalloid boluses and norepinephrine are forecast"))
    return out


SOURCE = {"label": "vitaltwin patient twin", "topic": {"code": "twin", "display": "twin"}}


def _card(
    summary: str, indicator: str = "info", detail: str | None = None, uid: str | None = None
) -> dict[str, Any]:
    """A CDS Hooks card (summary cut to the 140 characters the specification allows)."""
    card = {"uuid": uid or str(uuid.uuid4()), "summary": summary[:140], "indicator": indicator,
            "source": SOURCE}  # fmt: skip
    if detail is not None:
        card["detail"] = detail
    return card


def _hook_patient(request: dict[str, Any], hook: str) -> tuple[dict[str, Any], str]:
    """The context and patient of a hook call (400 when it is not that hook or has none)."""
    context = request.get("context")
    if request.get("hook") != hook or not isinstance(context, dict):
        raise HTTPException(400, f"a {hook} request with a context is expected")
    pid = str(context.get("patientId") or "")
    if not pid:
        raise HTTPException(400, "context.patientId is required")
    return context, pid


def _outcome(problems: list[str], code: str = "invalid") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": p} for p in problems],
    }


def _fhir(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def standards_router(
    store: Store,
    lock: threading.Lock,
    bus: Bus,
    twins: TwinSupervisor | None,
    alerts: AlertEngine,
    alerts_lock: threading.Lock,
    observe: Callable[[str, float], None],
) -> APIRouter:
    """The FHIR and CDS Hooks routes (see the module docstring)."""
    router = APIRouter(route_class=ScopedRoute)

    @router.get("/fhir/metadata", openapi_extra=scope(PUBLIC, "none"), tags=["fhir"])
    def capability() -> JSONResponse:
        """The FHIR CapabilityStatement."""

        def res(kind: str, interactions: list[str], params: list[str]) -> dict[str, Any]:
            return {
                "type": kind,
                "interaction": [{"code": i} for i in interactions],
                "searchParam": [{"name": p, "type": "reference"} for p in params],
            }

        return _fhir(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": datetime.now(UTC).date().isoformat(),
                "kind": "instance",
                "fhirVersion": "4.0.1",
                "format": ["json"],
                "rest": [
                    {
                        "mode": "server",
                        "resource": [
                            res("Patient", ["read"], []),
                            res("Observation", ["create", "search-type"], ["patient"]),
                            res("RiskAssessment", ["search-type"], ["subject", "patient"]),
                            res("Flag", ["search-type"], ["patient"]),
                        ],
                    }
                ],
            }
        )

    @router.post(
        "/fhir/Observation",
        status_code=201,
        openapi_extra=scope("system/Observation.c", "body:subject.reference"),
        tags=["fhir"],
        responses={400: {"description": "invalid: an OperationOutcome says why"}},
    )
    def create_observation(resource: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        """Create an Observation (see the module docstring)."""
        if resource.get("resourceType") != "Observation":
            return _fhir(_outcome(["not an Observation"]), 400)
        problems = r4_errors(resource)
        if problems:
            return _fhir(_outcome(problems), 400)
        text = json.dumps(resource, sort_keys=True, default=str)
        rid = resource.get("id") or "vt-" + hashlib.sha256(text.encode()).hexdigest()[:40]
        stored = {**resource, "id": rid}
        t0 = datetime.now(UTC)
        bus.publish(fhir_key(stored), envelope("fhir", "http:/fhir/Observation", stored))
        observe("receive", (datetime.now(UTC) - t0).total_seconds())
        return _fhir(stored, 201, Location=f"Observation/{rid}")

    @router.get("/fhir/RiskAssessment",
                openapi_extra=scope("user/RiskAssessment.rs", "query:subject,patient"),
                tags=["fhir"])  # fmt: skip
    def search_risk(
        subject: Annotated[str | None, Query(description="Patient/ID")] = None,
        patient: Annotated[str | None, Query(description="ID")] = None,
    ) -> JSONResponse:
        """The twin's forecast event probabilities as RiskAssessments."""
        pid = (subject or patient or "").removeprefix("Patient/")
        if not pid:
            return _fhir(_outcome(["search needs subject or patient"], "required"), 400)
        entries = []
        if twins is not None and pid in twins:
            fc = twins.forecast(pid, 1.0)
            when = datetime.fromisoformat(fc["from"])
            with lock:
                used = store.observations(pid, start=when - timedelta(hours=1), end=when)
            basis = [
                {"type": "Observation",
                 "display": f"{r['loinc']} {r['value']:g} {r['unit']} at "
                            f"{r['effective_time'].isoformat()}"}
                for r in used.slice(max(0, used.num_rows - 20)).to_pylist()
            ]  # fmt: skip
            for event, p in fc["event_probabilities"].items():
                ra = risk_assessment(pid, event, p, when, 1.0, fc["model_version"])
                ra["id"] = f"{pid}-{event}"[:64].replace("_", "-")
                if basis:
                    ra["basis"] = basis
                entries.append({"resource": ra, "search": {"mode": "match"}})
        return _fhir({"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                      "entry": entries})  # fmt: skip

    @router.get("/fhir/Flag", openapi_extra=scope("user/Flag.rs", "query:patient"), tags=["fhir"])
    def search_flags(
        patient: Annotated[str, Query(description="ID or Patient/ID")],
    ) -> JSONResponse:
        """Alerts as Flags (shadow-mode alerts are not shown)."""
        pid = patient.removeprefix("Patient/")
        with alerts_lock:
            mine = [a for a in alerts.visible() if a.patient_id == pid]
        entries = [
            {
                "resource": {
                    "resourceType": "Flag",
                    "id": a.id,
                    "status": "active" if a.state != "resolved" else "inactive",
                    "category": [{"text": "clinical decision support"}],
                    "code": {"text": f"{a.rule}: {a.score:.2f} ({a.state}). {DECISION_SUPPORT}"},
                    "subject": {"reference": f"Patient/{pid}"},
                    "period": {"start": a.time.isoformat()},
                },
                "search": {"mode": "match"},
            }
            for a in mine
        ]
        return _fhir({"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                      "entry": entries})  # fmt: skip

    # -- CDS Hooks ------------------------------------------------------------------------------

    @router.get("/cds-services", openapi_extra=scope(PUBLIC, "none"), tags=["cds-hooks"])
    def discovery() -> dict[str, Any]:
        """CDS Hooks discovery."""
        return {
            "services": [
                {
                    "hook": "patient-view",
                    "id": SERVICE_ID,
                    "title": "vitaltwin: where the patient is heading",
                    "description": "The patient twin's one-hour forecast, how sure it is, and "
                    "open alerts. Decision support only.",
                    "prefetch": {"patient": "Patient/{{context.patientId}}"},
                },
                {
                    "hook": "order-select",
                    "id": ORDER_SERVICE_ID,
                    "title": "vitaltwin: what this order may do",
                    "description": "The twin's six-hour forecast with a selected crystalloid "
                    "bolus or norepinephrine rate, beside no change. Decision support only.",
                },
            ]
        }

    @router.post(
        f"/cds-services/{SERVICE_ID}",
        openapi_extra=scope("user/Patient.r", "body:context.patientId", action="E"),
        tags=["cds-hooks"],
        responses={400: {"description": "not a patient-view request"}},
    )
    def patient_view(request: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Cards for a patient-view hook call."""
        _, pid = _hook_patient(request, "patient-view")
        if twins is None or pid not in twins:
            return {"cards": [_card("No twin for this patient yet")]}
        status = twins.status(pid)
        fc = twins.forecast(pid, 1.0)
        probs = fc["event_probabilities"]
        top = max(probs, key=lambda k: probs[k]) if probs else None
        lines = [f"- {k.replace('_', ' ')}: {v:.0%}" for k, v in sorted(probs.items())]
        summary = (
            f"Next hour: {top.replace('_', ' ')} {probs[top]:.0%} (twin {status['status']})"
            if top
            else f"Twin {status['status']}"
        )[:140]
        worst = max(probs.values(), default=0.0)
        indicator = "critical" if worst >= 0.5 else "warning" if worst >= 0.2 else "info"
        detail = (
            f"Forecast event probabilities (twin model {fc['model_version']}):\n"
            + "\n".join(lines)
            + f"\n\n{DECISION_SUPPORT}"
        )
        cards = [_card(summary, indicator, detail)]
        with alerts_lock:
            mine = [a for a in alerts.visible() if a.patient_id == pid and a.state != "resolved"]
        cards += [  # feedback on an alert's card is feedback on the alert
            _card(f"Alert: {a.rule} ({a.state})", "warning",
                  f"Score {a.score:.2f}, model {a.model_version}. {DECISION_SUPPORT}", a.id)
            for a in mine
        ]  # fmt: skip
        return {"cards": cards}

    @router.post(
        f"/cds-services/{ORDER_SERVICE_ID}",
        openapi_extra=scope("user/Patient.r", "body:context.patientId", action="E"),
        tags=["cds-hooks"],
        responses={400: {"description": "not an order-select request"}},
    )
    def order_select(request: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Cards for an order-select call: each selected fluid or norepinephrine draft order
        forecast against no change, from the twin's current state (6 h)."""
        context, pid = _hook_patient(request, "order-select")
        if twins is None or pid not in twins:
            return {"cards": [_card("No twin for this patient yet: no forecast of this order")]}
        cards = []
        for order, plan, why in draft_plans(context):
            if plan is None:
                cards.append(_card(f"{order}: not forecast ({why})"))
                continue
            try:
                got = twins.whatif(pid, [{"name": "no change"}, plan], 6.0)
            except ValueError as exc:
                cards.append(_card(f"{order}: not forecast ({exc})"))
                continue
            base, with_order = got["plans"]
            detail = (
                f"With the order: {with_order['summary']}.\n\nWithout it: {base['summary']}."
                f"\n\n(twin model {got['model_version']}) {DECISION_SUPPORT}"
            )
            cards.append(_card(f"{order}, next 6 h: {with_order['summary']}", "info", detail))
        return {"cards": cards}

    @router.post(
        f"/cds-services/{SERVICE_ID}/feedback",
        openapi_extra=scope("user/Flag.u", "endpoint", action="U"),
        tags=["cds-hooks"],
    )
    def feedback(
        request: Request,
        who: Annotated[Identity, Depends(identity)],
        body: Annotated[dict[str, Any], Body()],
    ) -> Response:
        """Card feedback (accepted / overridden) into the alert log (each card's patient must
        be the caller's)."""
        touched: list[str] = []
        request.state.patients = touched
        for item in body.get("feedback") or []:
            if not isinstance(item, dict):
                continue
            outcome = item.get("outcome")
            if outcome not in ("accepted", "overridden"):
                continue
            card = str(item.get("card"))
            with alerts_lock:
                found = alerts.alerts.get(card)
            if found is None:  # the forecast card is not an alert: nothing to record
                continue
            touched.append(found.patient_id)
            guard_of(request).authorize(who, found.patient_id, request)
            with alerts_lock:
                alerts.feedback(card, who.subject, outcome == "overridden", datetime.now(UTC))
        return Response(status_code=200)

    return router
