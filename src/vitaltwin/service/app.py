"""The HTTP service (FastAPI): inputs onto the bus, the record out as JSON and FHIR, health,
metrics. ``vitaltwin serve`` runs it with uvicorn; :func:`create_app` builds it for tests and
embedding.

Routes (the OpenAPI description at ``/openapi.json`` lists them with their scopes):

* ``GET /health/live`` (the process answers) and ``GET /health/ready`` (store and bus reachable,
  ingest worker running: 503 otherwise);
* ``POST /v1/observations`` (a JSON list of ``{patient_id, time, code, value, unit[, device,
  comparator, status, method]}``), ``POST /fhir`` (a Bundle),
  ``POST /v1/hl7`` (HL7 v2 text): accepted (202) onto the bus, one message per patient, and
  stored by the ingest worker; what cannot be stored is quarantined with the reason, as for
  files;
* ``GET /v1/patients``, ``GET /v1/patients/{id}``, ``GET /v1/patients/{id}/observations``,
  ``GET /fhir/Patient/{id}``, ``GET /fhir/Observation?patient=&code=`` (a searchset Bundle);
* MQTT from device gateways (``mqtt=``: :mod:`vitaltwin.service.mqtt`), onto the same bus;
* the FHIR REST subset and CDS Hooks (:mod:`vitaltwin.service.standards`);
* ``GET /v1/ingest`` (what the worker did), ``GET /metrics`` (Prometheus: per-stage latency
  histograms, requests).

Every request gets a request id (``X-Request-ID``, taken from the caller or made) that is in
the response header and in the JSON log line written for it; an unexpected error answers 500
with that id instead of dropping the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from ssl import SSLContext
from typing import Annotated, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from vitaltwin.governance import Identity, granted
from vitaltwin.interop.fhir_export import observation as fhir_observation
from vitaltwin.interop.fhir_export import patient as fhir_patient
from vitaltwin.risk import ForecastMonitor, Scorer
from vitaltwin.service.access import (
    PUBLIC,
    Guard,
    PatientUnits,
    ScopedRoute,
    Security,
    audit_action,
    identity,
    is_public,
    scope,
)
from vitaltwin.service.alerts import (
    FORECAST_RULES,
    Alert,
    AlertEngine,
    AlertError,
    AlertRule,
    scorecard,
)
from vitaltwin.service.audit import audit_router
from vitaltwin.service.auth import auth_router
from vitaltwin.service.bus import Bus
from vitaltwin.service.ingest import IngestWorker, envelope, fhir_key, hl7_key
from vitaltwin.service.mqtt import subscribe
from vitaltwin.service.scoring import RiskMonitor
from vitaltwin.service.standards import FHIR_JSON, standards_router
from vitaltwin.service.twins import TwinSupervisor
from vitaltwin.service.ward import WardBoard
from vitaltwin.store import Store

log = logging.getLogger("vitaltwin.service")
LIVE_SCOPE = "user/Flag.rs"
"""What the live-updates WebSocket needs (it carries alerts and forecasts)."""
STAGES = ("receive", "normalize", "store", "assimilate", "score", "alert", "push")
ALERT_STATE = "alerts"
"""The store key of the alert engine's state (saved every 30 s when it changed, and on
shutdown; resumed at start)."""


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",  # patient data is not kept by browsers or proxies
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'",
}
"""Headers on every answer (OWASP secure headers); a route may set its own instead."""
OPENAPI_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")
"""FastAPI's API pages (inline scripts): no content security policy there."""
UNTHROTTLED = ("/health/", "/static/")
"""Paths no rate limit applies to (load balancers' probes, the pages' own assets)."""

MAX_RECORDS = 100_000
"""Records one ``POST /v1/observations`` may carry."""


def records_body(max_items: int) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON array of record objects as the request body (the
    route reads the body itself, with orjson)."""
    schema = {"type": "array", "maxItems": max_items, "items": {"type": "object"}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def json_records(raw: bytes, max_items: int) -> tuple[list[dict[str, Any]], bool]:
    """A request body that must be a JSON array of objects, parsed by orjson (by the standard
    library where orjson refuses what it accepts: NaN, infinities, which the ingest worker then
    quarantines with their own reason), and whether orjson parsed it; 422 naming the problem
    otherwise, as FastAPI's own validation says it."""

    def invalid(msg: str) -> HTTPException:
        return HTTPException(422, [{"loc": ["body"], "msg": msg, "type": "value_error"}])

    by_orjson = True
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        by_orjson = False
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise invalid(f"the body is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise invalid(f"a JSON array of records expected, got {type(data).__name__}")
    if len(data) > max_items:
        raise invalid(f"{len(data)} records; at most {max_items} per request")
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise invalid(f"record {i} is not a JSON object")
    return data, by_orjson


def risk_rule(scorer: Scorer) -> AlertRule:
    """The alert on a risk model's score: at the model's own operating threshold (chosen on
    its validation), ending below 70 % of it."""
    on = float(scorer.model.threshold_)
    return AlertRule(f"{scorer.model.task} risk", "risk", on=on, off=0.7 * on)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line (time in UTC, level, logger, message and extra fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def alert_json(a: Alert) -> dict[str, Any]:
    """An alert as JSON (times ISO 8601 UTC)."""
    d = dict(a.__dict__)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = v.isoformat()
    return d


class Hub:
    """Live updates to WebSocket clients: anything thread may :meth:`send`; each connection has
    a bounded queue (a client too slow to read loses the oldest updates, never the service)."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self.maxsize = maxsize

    def send(self, message: dict[str, Any]) -> None:
        if self.loop is not None and self.queues:
            self.loop.call_soon_threadsafe(self._put, message)

    def _put(self, message: dict[str, Any]) -> None:
        for q in self.queues:
            if q.full():
                q.get_nowait()
            q.put_nowait(message)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.maxsize)
        self.queues.add(q)
        return q


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage = Histogram(
            "vitaltwin_stage_seconds",
            "Time spent per pipeline stage",
            ["stage"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        for name in STAGES:  # every stage listed from the start, at zero
            self.stage.labels(name)
        self.requests = Counter(
            "vitaltwin_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )

    def observe(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage).observe(seconds)


def create_app(
    store: Store,
    bus: Bus,
    *,
    security: Security,
    max_body_bytes: int = 1 << 20,
    mqtt: tuple[str, int, str] | None = None,
    mqtt_tls: SSLContext | None = None,
    mqtt_login: tuple[str, str] | None = None,
    with_twins: bool = False,
    rules: Sequence[AlertRule] | None = None,
    shadow: bool = True,
    twin_checkpoint_s: float = 60.0,
    twin_settle_s: float = 3600.0,
    scorer: Scorer | None = None,
    model_card: dict[str, str] | None = None,
    expected_beds: int = 8,
) -> FastAPI:
    """The service over an open store and bus (the caller closes them); the ingest worker
    runs while the app does (its lifespan), and so does the MQTT subscriber when ``mqtt``
    names a broker (host, port, topic filter; over TLS with ``mqtt_tls``; signing in with
    ``mqtt_login``, user name and password, when the broker asks for one), and so do the
    live twins when ``with_twins`` (checkpoints in the store; compiled ahead for
    ``expected_beds`` patients at once; forecasts once a twin has tracked its patient for
    ``twin_settle_s`` of twin time). Alerts follow ``rules`` (default
    :data:`FORECAST_RULES` on the twins' forecast event probabilities) and run in shadow mode
    unless ``shadow`` is False: logged, shown to no one, until validated locally; their state
    is kept in the store and resumed at start.
    ``model_card`` describes the risk model for the dashboard's quality page. ``security`` says
    who may call and what is audited (:mod:`vitaltwin.service.access`)."""
    lock = threading.Lock()
    metrics = Metrics()
    default = (*FORECAST_RULES, risk_rule(scorer)) if scorer is not None else FORECAST_RULES
    alerts = AlertEngine(rules if rules is not None else default, shadow=shadow,
                         clock=lambda: datetime.now(UTC))  # fmt: skip
    alerts_lock = threading.Lock()

    hub = Hub()
    board = WardBoard()

    def forecast_alerts(
        pid: str, when: datetime, probs: dict[str, float], version: str, details: dict[str, Any]
    ) -> None:
        t0 = time.perf_counter()
        board.forecast(pid, when, probs, version)
        if outcomes is not None:
            one_hour = details.get("forecast_1h", {})
            outcomes.forecast(pid, when, probs, band=one_hour)
            details = {**details, "forecast_1h": calibrated_1h(one_hour)}
        with alerts_lock:
            raised = [
                a
                for event, p in probs.items()
                for a in alerts.observe(pid, f"forecast:{event}", p, when,
                                        model_version=version, details=details)
            ]  # fmt: skip
        if raised and twins is not None and any(not a.shadow for a in raised):
            # what to do next: the model's candidate plans ranked from the twin's state
            try:
                options = twins.whatif(pid, None, 6.0)["plans"]
            except ValueError as exc:
                options = [{"error": str(exc)}]
            top = [o for o in options if o.get("feasible", True)][:3]
            with alerts_lock:
                raised = [alerts.annotate(a.id, whatif=top) for a in raised]
        metrics.observe("alert", time.perf_counter() - t0)
        hub.send({"type": "forecast", "patient_id": pid, "time": when.isoformat(),
                  "event_probabilities": probs, "model_version": version})  # fmt: skip
        for a in raised:
            if not a.shadow:
                hub.send({"type": "alert", **alert_json(a)})

    def twins_moved(moved: list[tuple[str, datetime]]) -> None:
        updates = [{"patient_id": pid, "time": t.isoformat()} for pid, t in moved]
        hub.send({"type": "twins", "updates": updates})

    twins = (
        TwinSupervisor(
            store,
            lock,
            checkpoint_s=twin_checkpoint_s,
            settle_s=twin_settle_s,
            on_forecast=forecast_alerts,
            observe=metrics.observe,
            expected_beds=expected_beds,
            on_update=twins_moved,
        )
        if with_twins
        else None
    )
    # the twins' forecasts against what the monitors later showed (models' monitoring)
    outcomes = (
        ForecastMonitor(twins.shard.spec, horizon_h=twins.forecast_hours)
        if twins is not None
        else None
    )

    def calibrated_1h(one_hour: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The one-hour band of each observable with its band calibrated on the outcomes of the
        ward's earlier one-hour forecasts (``calibrated``; docs "The service", forecasts)."""
        if outcomes is None or twins is None:
            return one_hour
        spec, cal = twins.shard.spec, outcomes.band_calibration
        out = {}
        for n, b in one_hour.items():
            j = spec.names.index(n)
            domain = float(spec.low[j]), float(spec.high[j])
            band = cal.calibrated_quantiles(n, b["q05"], b["q50"], b["q95"], *domain)
            out[n] = {**b, "calibrated": band}
        return out

    def risk_alerts(
        pid: str, when: datetime, p: float, confident: bool, version: str, details: dict[str, Any]
    ) -> None:
        t0 = time.perf_counter()
        board.risk(pid, when, p, confident, version)
        with alerts_lock:
            raised = alerts.observe(pid, "risk", p, when, model_version=version,
                                    confident=confident, details=details)  # fmt: skip
        metrics.observe("score", time.perf_counter() - t0)
        hub.send({"type": "risk", "patient_id": pid, "time": when.isoformat(), "probability": p,
                  "low_confidence": not confident, "model_version": version})  # fmt: skip
        for a in raised:
            if not a.shadow:
                hub.send({"type": "alert", **alert_json(a)})

    risk = RiskMonitor(store, lock, scorer, on_score=risk_alerts) if scorer else None

    def stored(observations: pa.Table) -> None:
        board.stored(observations)
        if outcomes is not None:
            outcomes.observed(observations)
        hub.send({"type": "stored", "rows": observations.num_rows})
        if twins is not None:
            twins.notify(observations)
        if risk is not None:
            risk.notify(pc.unique(observations.column("patient_id")).to_pylist())

    worker = IngestWorker(bus, store, lock, observe=metrics.observe, on_stored=stored)

    saved_log = [0]  # log entries when the alert state was last saved

    def save_alerts() -> None:
        """Keep the alert state in the store (acknowledgements and snoozes survive restarts)."""
        with alerts_lock:
            if len(alerts.log) == saved_log[0]:
                return
            data, saved_log[0] = alerts.to_json(), len(alerts.log)
        with lock:
            store.save_state(ALERT_STATE, data)

    def load_alerts() -> None:
        with lock:
            saved = store.load_state(ALERT_STATE)
        if saved is None:
            return
        try:
            with alerts_lock:
                n = alerts.restore(saved[0])
                saved_log[0] = len(alerts.log)
            log.info("alerts resumed", extra={"fields": {"alerts": n}})
        except ValueError as exc:  # said, never a crash: the service starts with no alerts
            log.error("alert state not resumed: %s", exc)

    async def escalate() -> None:  # alerts unacknowledged too long go one role up
        while True:
            await asyncio.sleep(30)
            with alerts_lock:
                up = alerts.tick(datetime.now(UTC))
            for a in up:
                if not a.shadow:
                    hub.send({"type": "alert", **alert_json(a)})
            await asyncio.to_thread(save_alerts)
            if security.audit is not None:  # sign the audit trail's head
                await asyncio.to_thread(security.audit.checkpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        load_alerts()
        escalation = asyncio.create_task(escalate())
        if twins is not None:
            twins.start()
        if risk is not None:
            risk.start()
        worker.start()
        log.info("service started", extra={"fields": {"store": store.describe()}})
        subscriber = None
        if mqtt is not None:
            app.state.mqtt_ready = asyncio.Event()
            subscriber = asyncio.create_task(
                subscribe(
                    bus,
                    mqtt[0],
                    mqtt[1],
                    mqtt[2],
                    ready=app.state.mqtt_ready,
                    tls=mqtt_tls,
                    login=mqtt_login,
                )
            )
        try:
            yield
        finally:
            escalation.cancel()
            if subscriber is not None:
                subscriber.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await subscriber
            worker.stop()
            if risk is not None:
                risk.stop()
            if twins is not None:
                twins.stop()
            save_alerts()
            if security.audit is not None:
                security.audit.checkpoint()
            s = worker.stats
            log.info(
                "service stopped",
                extra={"fields": {"messages": s.messages, "stored": s.counts.stored,
                                  "pending": bus.pending()}},
            )  # fmt: skip

    app = FastAPI(
        title="vitaltwin",
        summary="Patient digital twins for the ICU: the record in and out",
        lifespan=lifespan,
    )
    app.state.worker, app.state.store, app.state.bus, app.state.metrics = (
        worker,
        store,
        bus,
        metrics,
    )
    app.state.twins = twins
    app.state.model_card = model_card  # the risk model's, for the quality page
    app.state.alert_rules = tuple(alerts.rules.values())  # the rules in force
    app.state.alerts = alerts  # (use under app.state.alerts_lock)
    app.state.alerts_lock = alerts_lock

    def units() -> dict[str, str | None]:
        with lock:
            table = store.patients().select(["patient_id", "icu_unit"])
        return dict(zip(*table.to_pydict().values(), strict=True))

    guard = Guard(security, PatientUnits(units))
    app.state.guard = guard

    def patient_of_alert(alert_id: str) -> str | None:
        with alerts_lock:
            a = alerts.alerts.get(alert_id)
        return a.patient_id if a is not None else None

    app.state.patient_of_alert = patient_of_alert
    router = APIRouter(route_class=ScopedRoute)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
        with contextlib.suppress(HTTPException):  # who, for the audit trail even when the
            guard.identify(request)  # request fails before its route's check (a bad body)
        t0 = time.perf_counter()
        length = request.headers.get("content-length")
        wait = 0.0 if request.url.path.startswith(UNTHROTTLED) else guard.throttle(request)
        if wait > 0:
            response: Response = JSONResponse(
                {"detail": f"too many requests: try again in {wait:.1f} s", "request_id": rid},
                429, headers={"retry-after": str(max(1, round(wait)))},
            )  # fmt: skip
        elif length and length.isdigit() and int(length) > max_body_bytes:
            response = JSONResponse(
                {"detail": f"body over {max_body_bytes} bytes", "request_id": rid}, 413
            )
        else:
            try:
                response = await call_next(request)
            except Exception:  # an answer, never a dropped connection
                log.exception("unhandled error", extra={"fields": {"request_id": rid}})
                response = JSONResponse(
                    {"detail": "internal error", "request_id": rid}, status_code=500
                )
        response.headers["x-request-id"] = rid
        for header, value in SECURITY_HEADERS.items():
            if header != "content-security-policy" or request.url.path not in OPENAPI_PAGES:
                response.headers.setdefault(header, value)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        if route is not None and not is_public(route) and isinstance(route, ScopedRoute):
            guard.audit(request, f"{request.method} {name}",
                        audit_action(request.method, route), response.status_code)  # fmt: skip
        metrics.requests.labels(name, str(response.status_code)).inc()
        log.info(
            "%s %s %s",
            request.method,
            request.url.path,
            response.status_code,
            extra={
                "fields": {
                    "request_id": rid,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                }
            },
        )
        return response

    # -- health --------------------------------------------------------------------------------

    @router.get("/health/live", openapi_extra=scope(PUBLIC, "none"), tags=["health"])
    def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "live"}

    @router.get(
        "/health/ready",
        openapi_extra=scope(PUBLIC, "none"),
        tags=["health"],
        responses={503: {"description": "not ready"}},
    )
    def ready() -> JSONResponse:
        """Store and bus reachable, ingest worker running."""
        checks: dict[str, str] = {}
        try:
            with lock:
                store.count("patients")
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"failed: {exc}"
        try:
            bus.pending()
            checks["bus"] = "ok"
        except Exception as exc:
            checks["bus"] = f"failed: {exc}"
        checks["ingest"] = "ok" if worker.alive else "not running"
        if twins is not None:
            checks["twins"] = (
                "ok" if twins.alive and twins.ready.is_set() else "compiling or not running"
            )
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", **checks}, 200 if ok else 503
        )

    # -- inputs -----------------------------------------------------------------------------------

    def accepted(messages: list[tuple[str, bytes]], t0: float) -> dict[str, Any]:
        ids = bus.publish_many(messages)
        metrics.observe("receive", time.perf_counter() - t0)
        return {"accepted": len(ids), "messages": ids}

    @router.post(
        "/v1/observations",
        status_code=202,
        openapi_extra={**scope("system/Observation.c", "endpoint"), **records_body(MAX_RECORDS)},
        tags=["inputs"],
    )
    async def post_observations(request: Request) -> dict[str, Any]:
        """Observations as JSON (``patient_id``, ``time`` ISO 8601 with zone or epoch seconds,
        ``code`` LOINC or a monitor label, ``value``, ``unit`` UCUM; optional ``device``,
        ``comparator``, ``status``, ``method``), accepted onto the bus: one message per bus
        partition the request's patients fall in (a gateway's batch of a whole unit is a few
        messages, not one per bed), each patient's records in one partition, in order."""
        t0 = time.perf_counter()
        raw = await request.body()
        return await run_in_threadpool(publish_records, raw, t0, request)

    def publish_records(raw: bytes, t0: float, request: Request) -> dict[str, Any]:
        records, by_orjson = json_records(raw, MAX_RECORDS)
        by_part: dict[int, tuple[str, list[dict[str, Any]]]] = {}
        partition: dict[str, int] = {}
        for r in records:
            pid = str(r.get("patient_id") or "unknown")
            if pid not in partition:
                partition[pid] = bus.partition(pid)
            by_part.setdefault(partition[pid], (pid, []))[1].append(r)
        request.state.patients = list(partition)  # for the audit trail
        where = "http:/v1/observations"
        bodies = [(k, envelope("records", where, v, from_orjson=by_orjson))
                  for k, v in by_part.values()]  # fmt: skip
        return accepted(bodies, t0)

    @router.post(
        "/v1/hl7",
        status_code=202,
        openapi_extra=scope("system/Observation.c", "endpoint"),
        tags=["inputs"],
    )
    def post_hl7(
        request: Request, text: Annotated[str, Body(media_type="text/plain")]
    ) -> dict[str, Any]:
        """HL7 v2 messages (ORU^R01, ADT), as over MLLP, accepted onto the bus."""
        t0 = time.perf_counter()
        if not text.lstrip().startswith(("MSH|", "FHS|", "BHS|")):
            raise HTTPException(400, "not HL7 v2: the text must start with an MSH segment")
        request.state.patients = [hl7_key(text)]
        return accepted([(hl7_key(text), envelope("hl7", "http:/v1/hl7", text))], t0)

    def post_fhir(doc: dict[str, Any], where: str, request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        if not isinstance(doc.get("resourceType"), str):
            raise HTTPException(400, "not a FHIR resource: no resourceType")
        request.state.patients = [fhir_key(doc)]
        return accepted([(fhir_key(doc), envelope("fhir", where, doc))], t0)

    @router.post("/fhir", status_code=202, openapi_extra=scope("system/*.c", "endpoint"),
                 tags=["fhir"])  # fmt: skip
    def post_fhir_bundle(
        request: Request, bundle: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        """A FHIR R4 Bundle (any type): its Patients, Observations, Encounters, Conditions and
        MedicationAdministrations."""
        return post_fhir(bundle, "http:/fhir", request)

    @router.get("/v1/ingest", openapi_extra=scope("system/Metrics.r", "none"), tags=["inputs"])
    def ingest_status() -> dict[str, Any]:
        """What the ingest worker stored, quarantined and counted as duplicates, and what waits."""
        s = worker.stats
        return {
            "messages": s.messages,
            "read": s.counts.read,
            "stored": s.counts.stored,
            "quarantined": s.counts.quarantined,
            "duplicates": s.counts.duplicates,
            "failures": s.failures,
            "last_error": s.last_error,
            "pending": bus.pending(),
            "dead_letters": len(bus.dead_letters()),
        }

    # -- the record out -------------------------------------------------------------------------

    def rows(table: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = table.to_pylist()
        for r in out:
            for k, v in r.items():
                if hasattr(v, "isoformat"):  # datetimes (UTC) and dates
                    r[k] = v.isoformat()
        return out

    @router.get("/v1/patients", openapi_extra=scope("user/Patient.rs", "endpoint"), tags=["record"])
    def list_patients(
        request: Request,
        who: Annotated[Identity, Depends(identity)],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """The caller's patients (their units and care team; current keys: merged ones are
        read under their surviving key)."""
        with lock:
            table = store.patients()
        ids = table.column("patient_id").to_pylist()
        mine = set(guard.visible(who, ids))
        keep = pa.array([p in mine for p in ids], pa.bool_())
        chosen = rows(table.filter(keep).slice(0, limit))
        request.state.patients = [r["patient_id"] for r in chosen]
        return chosen

    def one_patient(pid: str) -> dict[str, Any]:
        with lock:
            found = store.patients(pid)
        if found.num_rows == 0:
            raise HTTPException(404, f"no patient {pid!r}")
        return rows(found)[0]

    @router.get(
        "/v1/patients/{patient_id}",
        openapi_extra=scope("user/Patient.r", "path"),
        tags=["record"],
        responses={404: {"description": "no such patient"}},
    )
    def get_patient(patient_id: str) -> dict[str, Any]:
        """One patient."""
        return one_patient(patient_id)

    @router.get(
        "/v1/patients/{patient_id}/observations",
        openapi_extra=scope("user/Observation.rs", "path"),
        tags=["record"],
    )
    def patient_observations(
        patient_id: str,
        code: Annotated[list[str] | None, Query(description="LOINC codes")] = None,
        start: Annotated[datetime | None, Query(description="from (ISO 8601 with zone)")] = None,
        end: Annotated[datetime | None, Query(description="until, exclusive")] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> list[dict[str, Any]]:
        """A patient's current observations by time (corrected and retracted values left out)."""
        for name, t in (("start", start), ("end", end)):
            if t is None:
                continue
            if t.tzinfo is None:
                raise HTTPException(422, "start and end need a time zone")
            try:
                t.astimezone(UTC)
            except OverflowError:  # e.g. 0001-01-01T00:00+14:00 is before year 1 in UTC
                msg = f"{name} {t.isoformat()} is outside years 1-9999 in UTC"
                raise HTTPException(422, msg) from None
        with lock:
            table = store.observations(patient_id, code, start, end)
        return rows(table.slice(max(0, table.num_rows - limit)))

    @router.get(
        "/v1/patients/{patient_id}/medications",
        openapi_extra=scope("user/MedicationAdministration.rs", "path"),
        tags=["record"],
    )
    def patient_medications(
        patient_id: str,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """A patient's medication administrations by start time (drug, dose and rate in UCUM)."""
        with lock:
            table = store.medications(patient_id)
        return rows(table.slice(max(0, table.num_rows - limit)))

    @router.get(
        "/fhir/Patient/{patient_id}",
        openapi_extra=scope("user/Patient.r", "path"),
        tags=["fhir"],
        responses={404: {"description": "no such patient"}},
    )
    def fhir_get_patient(patient_id: str) -> JSONResponse:
        """A FHIR R4 Patient."""
        with lock:
            found = store.patients(patient_id)
        if found.num_rows == 0:
            raise HTTPException(404, f"no patient {patient_id!r}")
        return JSONResponse(fhir_patient(found.to_pylist()[0]), media_type=FHIR_JSON)

    @router.get(
        "/fhir/Observation",
        openapi_extra=scope("user/Observation.rs", "query:patient"),
        tags=["fhir"],
    )
    def fhir_search_observations(
        patient: Annotated[str, Query(description="the patient's id")],
        code: Annotated[str | None, Query(description="a LOINC code")] = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=10_000)] = 1000,
    ) -> JSONResponse:
        """FHIR R4 search: a searchset Bundle of the patient's observations (latest first)."""
        pid = patient.removeprefix("Patient/")
        with lock:
            table = store.observations(pid, code)
        latest = table.slice(max(0, table.num_rows - count)).to_pylist()[::-1]
        entries = [{"resource": fhir_observation(r), "search": {"mode": "match"}} for r in latest]
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": table.num_rows,
            "entry": entries,
        }
        return JSONResponse(bundle, media_type=FHIR_JSON)

    def live_twins() -> TwinSupervisor:
        if twins is None:
            raise HTTPException(404, "this service runs no twins")
        return twins

    @router.get(
        "/v1/patients/{patient_id}/twin",
        openapi_extra=scope("user/Observation.r", "path"),
        tags=["twin"],
        responses={404: {"description": "no twins in this service"}},
    )
    def twin_state(patient_id: str) -> dict[str, Any]:
        """The patient's twin: status (tracking, or degraded — monitor manually, with the
        reason), its time, model version, hidden physiology with uncertainty (posterior mean,
        SD, 90 % interval) and observables now."""
        sup = live_twins()
        if patient_id not in sup:
            return sup.status(patient_id)
        return sup.estimates(patient_id)

    @router.get(
        "/v1/patients/{patient_id}/twin/forecast",
        openapi_extra=scope("user/Observation.r", "path"),
        tags=["twin"],
        responses={404: {"description": "no twin for this patient"}},
    )
    def twin_forecast(
        patient_id: str,
        hours: Annotated[float, Query(ge=0.5, le=12.0, description="horizon (h)")] = 1.0,
    ) -> dict[str, Any]:
        """Where the patient is heading under the current treatment: bands of every observable
        (5-95 %, with measurement error) and event probabilities; with the ward's one-hour band
        calibration (``calibration_1h``: the factor the outcomes of earlier one-hour forecasts
        put on the 50 % and 90 % bands, and how many outcomes that rests on)."""
        sup = live_twins()
        if patient_id not in sup:
            raise HTTPException(404, f"no twin for {patient_id!r} yet")
        out = sup.forecast(patient_id, hours)
        if outcomes is not None:
            cal = outcomes.band_calibration
            out["calibration_1h"] = {
                n: {"errors": cal.count(n), "factor_50": cal.factor(n, 0.5),
                    "factor_90": cal.factor(n, 0.9)}
                for n in sup.shard.spec.names
            }  # fmt: skip
        return out

    @router.get(
        "/v1/patients/{patient_id}/risk",
        openapi_extra=scope("user/RiskAssessment.r", "path"),
        tags=["risk"],
        responses={404: {"description": "this service runs no risk model"}},
    )
    def patient_risk(patient_id: str) -> dict[str, Any]:
        """The patient's risk history (probability per hour since ICU admission, alert at the
        model's threshold, low-confidence flag), the model's name, version and task, and the
        latest score's top contributing factors (SHAP, logit scale)."""
        if risk is None:
            raise HTTPException(404, "this service runs no risk model (none registered)")
        return risk.risk(patient_id)

    @router.post(
        "/v1/patients/{patient_id}/whatif",
        openapi_extra=scope("user/Observation.r", "path", action="E"),
        tags=["twin"],
        responses={404: {"description": "no twin for this patient"},
                   422: {"description": "an invalid plan"}},
    )  # fmt: skip
    def whatif(
        patient_id: str,
        plans: Annotated[list[dict[str, Any]] | None, Body(max_length=64)] = None,
        hours: Annotated[float, Query(ge=0.5, le=12.0)] = 6.0,
    ) -> dict[str, Any]:
        """What if: the plans given (fluids, norepinephrine, antibiotics now or later, FiO2)
        compared side by side from the twin's current state, or without plans the model's
        candidates ranked with the optimizer's explanation. Decision support only."""
        sup = live_twins()
        if patient_id not in sup:
            raise HTTPException(404, f"no twin for {patient_id!r} yet")
        try:
            return sup.whatif(patient_id, plans, hours)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @router.get("/v1/alerts", openapi_extra=scope("user/Flag.rs", "endpoint"), tags=["alerts"])
    def list_alerts(
        request: Request,
        who: Annotated[Identity, Depends(identity)],
        patient: Annotated[str | None, Query(description="one patient")] = None,
        include_shadow: Annotated[bool, Query(description="shadow-mode alerts too")] = False,
    ) -> dict[str, Any]:
        """Alerts of the caller's patients (or of ``patient``), newest first, with their
        state, score, model version, reasons and the "decision support only" statement; in
        shadow mode only with ``include_shadow``."""
        with alerts_lock:
            pool = list(alerts.alerts.values()) if include_shadow else alerts.visible()
        chosen = mine(request, who, pool, patient)
        return {
            "shadow_mode": alerts.shadow,
            "alerts": [alert_json(a) for a in sorted(chosen, key=lambda a: a.time, reverse=True)],
        }

    def mine(request: Request, who: Identity, pool: list[Any], patient: str | None) -> list[Any]:
        """The items of ``pool`` (with a ``patient_id``) the caller may see: of ``patient``
        (assigned, or break-glass) or of every patient assigned to them."""
        if patient is not None:
            guard.authorize(who, patient, request)
            chosen = [a for a in pool if a.patient_id == patient]
        else:
            seen = set(guard.visible(who, {a.patient_id for a in pool}))
            chosen = [a for a in pool if a.patient_id in seen]
        request.state.patients = sorted({a.patient_id for a in chosen})
        return chosen

    def act(action: Callable[[], Alert]) -> dict[str, Any]:
        with alerts_lock:
            try:
                return alert_json(action())
            except AlertError as exc:
                code = 404 if "no alert" in str(exc) else 409
                raise HTTPException(code, str(exc)) from None

    @router.post(
        "/v1/alerts/{alert_id}/acknowledge",
        openapi_extra=scope("user/Flag.u", "alert", action="U"),
        tags=["alerts"],
        responses={404: {"description": "no such alert"}, 409: {"description": "not allowed"}},
    )
    def acknowledge_alert(
        alert_id: str, who: Annotated[Identity, Depends(identity)]
    ) -> dict[str, Any]:
        """Acknowledge (recorded with who and when)."""
        return act(lambda: alerts.acknowledge(alert_id, who.subject, datetime.now(UTC)))

    @router.post(
        "/v1/alerts/{alert_id}/snooze",
        openapi_extra=scope("user/Flag.u", "alert", action="U"),
        tags=["alerts"],
        responses={404: {"description": "no such alert"}, 409: {"description": "not allowed"}},
    )
    def snooze_alert(
        alert_id: str,
        who: Annotated[Identity, Depends(identity)],
        hours: Annotated[float, Query(ge=1, le=12)],
        reason: Annotated[str, Query(min_length=1, max_length=500)],
    ) -> dict[str, Any]:
        """Snooze 1-12 h with a reason (no re-alert for this episode until then)."""
        return act(lambda: alerts.snooze(alert_id, who.subject, hours, reason, datetime.now(UTC)))

    @router.post(
        "/v1/alerts/{alert_id}/escalate",
        openapi_extra=scope("user/Flag.u", "alert", action="U"),
        tags=["alerts"],
        responses={404: {"description": "no such alert"}, 409: {"description": "not allowed"}},
    )
    def escalate_alert(
        alert_id: str, who: Annotated[Identity, Depends(identity)]
    ) -> dict[str, Any]:
        """Escalate now to the next role (recorded with who and when)."""
        return act(lambda: alerts.escalate(alert_id, who.subject, datetime.now(UTC)))

    @router.post(
        "/v1/alerts/{alert_id}/feedback",
        openapi_extra=scope("user/Flag.u", "alert", action="U"),
        tags=["alerts"],
        responses={404: {"description": "no such alert"}, 409: {"description": "not allowed"}},
    )
    def alert_feedback(
        alert_id: str,
        who: Annotated[Identity, Depends(identity)],
        overridden: Annotated[bool, Query(description="true: not acted on")],
    ) -> dict[str, Any]:
        """The clinician's verdict on an alert (for the scorecard)."""
        return act(lambda: alerts.feedback(alert_id, who.subject, overridden, datetime.now(UTC)))

    def ward(who: Identity) -> dict[str, Any]:
        """Every bed of the caller's patients: latest vitals, deterioration risk and its
        trend, the risk model's score, alerts by state, twin status, data age; highest
        deterioration risk first."""
        with alerts_lock:
            visible = alerts.visible()
        by_patient: dict[str, dict[str, int]] = {}
        for a in visible:
            if a.state != "resolved":
                states = by_patient.setdefault(a.patient_id, {})
                states[a.state] = states.get(a.state, 0) + 1
        beds = []
        for pid in guard.visible(who, board.patients()):
            bed = board.bed(pid)
            bed["alerts"] = by_patient.get(pid, {})
            if twins is not None:
                st = twins.status(pid)
                bed["twin"] = {"status": st["status"], "reason": st.get("reason"),
                               "learning": st.get("learning", False)}  # fmt: skip
            else:
                bed["twin"] = {"status": "off", "reason": "this service runs no twins"}
            beds.append(bed)

        def order(b: dict[str, Any]) -> float:
            risk = b["deterioration"] or b["risk_model"]
            return -risk["probability"] if risk else 1.0

        beds.sort(key=order)
        return {"time": datetime.now(UTC).isoformat(), "shadow_mode": alerts.shadow,
                "beds": beds}  # fmt: skip

    def burden() -> dict[str, Any]:
        """The alert-burden scorecard from the service's own alert log (module alerts)."""
        hours = 0.0
        if twins is not None:
            hours = twins.patient_hours()
        onsets = outcomes.onsets() if outcomes is not None else None
        with alerts_lock:
            card = scorecard(alerts, hours, onsets)
            n_visible = len(alerts.visible())
        out = {k: (None if v != v else v) for k, v in card.as_dict().items()}  # NaN: null
        return {
            **out,
            "shadow_mode": alerts.shadow,
            "visible_alerts": n_visible,
            "outcomes": f"events seen on the monitors: each patient's first declared event "
            f"({outcomes.describe()}) in the per-minute medians of the last {outcomes.keep_h:g} h;"
            " overrides from feedback"
            if outcomes is not None
            else "not known to the service (no twins): PPV and recall come from the validation "
            "studies (vitaltwin validate alerts)",
        }

    def monitoring() -> dict[str, Any]:
        """The models' monitoring: the twins' event forecasts against what the monitors
        showed, per window, with drift (:class:`vitaltwin.risk.ForecastMonitor`)."""
        if outcomes is None:
            return {"forecasts": None, "reason": "this service runs no twins"}
        return {"forecasts": outcomes.report().to_dict(), "reason": None}

    app.state.ward, app.state.burden, app.state.monitoring = ward, burden, monitoring

    @router.get("/v1/alerts/log", openapi_extra=scope("user/Flag.rs", "endpoint"), tags=["alerts"])
    def alert_log(
        request: Request,
        who: Annotated[Identity, Depends(identity)],
        patient: Annotated[str | None, Query(description="one patient")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    ) -> list[dict[str, Any]]:
        """What happened to alerts, newest first: raised, joined (another rule's reason for an
        open alert), acknowledged, snoozed, escalated, resolved, feedback — with who and when
        (shadow-mode alerts left out)."""
        with alerts_lock:
            shown = {a.id for a in alerts.visible()}
            entries = [e for e in alerts.log if e.alert_id in shown]
        chosen = mine(request, who, entries, patient)
        return [{**e.__dict__, "time": e.time.isoformat()} for e in reversed(chosen[-limit:])]

    @router.get("/v1/ward", openapi_extra=scope("user/Observation.rs", "endpoint"), tags=["ward"])
    def ward_overview(
        request: Request, who: Annotated[Identity, Depends(identity)]
    ) -> dict[str, Any]:
        """The ward overview: every bed with its latest vitals (value, unit, time), the twin's
        deterioration risk (its most likely forecast event's probability, with trend and model
        version), the risk model's score, open alerts by state, twin status (tracking, or
        degraded — monitor manually) and data age; highest risk first. Only the caller's
        patients (their units and care team)."""
        out = ward(who)
        request.state.patients = [b["patient_id"] for b in out["beds"]]
        return out

    @router.get(
        "/v1/alerts/scorecard", openapi_extra=scope("user/Flag.rs", "none"), tags=["alerts"]
    )
    def alert_scorecard() -> dict[str, Any]:
        """The alert burden from the service's own log: alerts per patient-hour and per
        clinician per 12-h shift, time to acknowledgement, share overridden (clinicians'
        feedback), and PPV and event recall against the events the monitors showed (each
        patient's first declared event; null without twins, which keep those outcomes)."""
        return burden()

    @router.get("/v1/models/monitoring", openapi_extra=scope("user/RiskAssessment.rs", "none"),
                tags=["risk"])  # fmt: skip
    def model_monitoring() -> dict[str, Any]:
        """The models' monitoring: per time window of data (6 h) and declared event, the twins'
        forecasts scored against what the monitors showed once their horizon passed (AUROC
        and calibration with patient-bootstrap intervals, Brier score, mean forecast beside
        the observed rate), the retraining policy's actions, and the drift (PSI) of the
        monitored values and of the forecasts against the earliest window kept."""
        return monitoring()

    @router.get(
        "/metrics",
        openapi_extra=scope("system/Metrics.r", "none"),
        tags=["operations"],
        response_class=Response,
    )
    def prometheus_metrics() -> Response:
        """Prometheus metrics: per-stage latency histograms, requests by route and status."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/v1/live")
    async def live_updates(ws: WebSocket) -> None:
        """Live updates as they happen (JSON messages with a ``type``): ``stored`` (new data
        in the store: how many rows), ``twins`` (one per round: each patient whose twin moved,
        with its new time), ``forecast``, ``risk`` and ``alert``; ``?types=stored,alert`` keeps
        only those. Scope :data:`LIVE_SCOPE`, checked before the connection is accepted;
        only the caller's patients' messages are sent."""
        try:
            who = guard.identify(ws)
        except HTTPException as exc:
            guard.audit(ws, "WEBSOCKET /v1/live", "R", exc.status_code)
            await ws.close(code=1008, reason=str(exc.detail))
            return
        if not granted(LIVE_SCOPE, who.scopes):
            guard.audit(ws, "WEBSOCKET /v1/live", "R", 403)
            await ws.close(code=1008, reason=f"scope {LIVE_SCOPE} required")
            return
        guard.audit(ws, "WEBSOCKET /v1/live", "R", 101)
        await ws.accept()
        wanted = set(filter(None, ws.query_params.get("types", "").split(",")))
        q = hub.subscribe()

        async def push() -> None:
            while True:
                msg = await q.get()
                if wanted and msg["type"] not in wanted:
                    continue
                mine = for_caller(msg)
                if mine is None:
                    continue
                t0 = time.perf_counter()
                await ws.send_json(mine)
                metrics.observe("push", time.perf_counter() - t0)

        async def until_closed() -> None:  # a client that leaves is noticed at once
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass

        def for_caller(msg: dict[str, Any]) -> dict[str, Any] | None:
            if who.all_patients:
                return msg
            if "patient_id" in msg:
                return msg if guard.may_see(who, str(msg["patient_id"])) else None
            if "updates" in msg:
                kept = [u for u in msg["updates"] if guard.may_see(who, u["patient_id"])]
                return {**msg, "updates": kept} if kept else None
            return msg

        tasks = {asyncio.create_task(push()), asyncio.create_task(until_closed())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await t
            hub.queues.discard(q)

    app.include_router(router)
    app.include_router(auth_router())
    app.include_router(audit_router())
    app.include_router(
        standards_router(store, lock, bus, twins, alerts, alerts_lock, metrics.observe)
    )
    return app
