"""The clinician's pages, served by the service itself: server-rendered templates (Jinja2) with
htmx for the ward's live table and uPlot for time series, all assets local (hospital networks
are closed). The pages read the same library objects the JSON API does; the patient page's
script calls the JSON API (same origin, same scopes).

Pages: ``/`` (to the ward), ``/ward`` (every bed, highest risk first; the table refreshes every
second), ``/patients/{id}`` (vitals with the twin's forecast bands, hidden physiology, risk,
timeline, alerts with acknowledge/snooze/escalate, what-if), ``/quality`` (the alert-burden
scorecard from the service's log, the twins' status, the models' monitoring, the model card).
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from vitaltwin import __version__
from vitaltwin.service.access import ScopedRoute, scope
from vitaltwin.service.alerts import DECISION_SUPPORT

_env = Environment(
    loader=PackageLoader("vitaltwin.dashboard", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

RISK_LEVELS = ((0.5, "high"), (0.2, "raised"), (0.0, "low"))
"""Words beside the risk value (colour is never the only cue)."""


def risk_level(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "none"
    return next(word for bound, word in RISK_LEVELS if p >= bound)


def sparkline(values: list[float], width: int = 80, height: int = 18) -> str:
    """SVG polyline points of a 0-1 series (oldest left)."""
    if len(values) < 2:
        return ""
    step = width / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - min(max(v, 0.0), 1.0) * height:.1f}"
        for i, v in enumerate(values)
    )


def psi_word(value: float) -> str:
    """A population stability index in words (Yurdakul 2018's bands; see
    :mod:`vitaltwin.risk`'s monitoring)."""
    return "none" if value < 0.1 else ("moderate" if value <= 0.25 else "major")


_env.globals.update(
    psi_word=psi_word,
    risk_level=risk_level,
    sparkline=sparkline,
    version=__version__,
    decision_support=DECISION_SUPPORT,
)


def render(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context))


def _service(request: Request, what: str) -> Any:
    got = getattr(request.app.state, what, None)
    if got is None:
        raise HTTPException(503, f"this app has no {what} view (not a vitaltwin service)")
    return got


def dashboard_router() -> APIRouter:
    router = APIRouter(route_class=ScopedRoute, tags=["dashboard"])
    html: dict[str, Any] = {"response_class": HTMLResponse}

    @router.get("/", openapi_extra=scope("user/Observation.rs"), response_class=Response)
    def home() -> Response:
        """To the ward overview."""
        return RedirectResponse("/ward", status_code=307)

    @router.get("/ward", openapi_extra=scope("user/Observation.rs"), **html)
    def ward_page(request: Request) -> HTMLResponse:
        """The ward overview (page)."""
        ward = _service(request, "ward")()
        return render("ward.html", ward=ward, sort="risk", title="Ward")

    @router.get("/ward/beds", openapi_extra=scope("user/Observation.rs"), **html)
    def ward_beds(
        request: Request,
        sort: str = Query("risk", pattern="^(risk|bed)$", description="risk or bed"),
    ) -> HTMLResponse:
        """The ward's beds (an HTML fragment the ward page refreshes)."""
        ward = _service(request, "ward")()
        if sort == "bed":
            ward["beds"].sort(key=lambda b: b["patient_id"])
        return render("_beds.html", ward=ward, sort=sort)

    @router.get(
        "/patients/{patient_id}",
        openapi_extra=scope("user/Observation.r"),
        responses={404: {"description": "no such patient on the ward"}},
        **html,
    )
    def patient_page(request: Request, patient_id: str) -> HTMLResponse:
        """One patient: vitals and forecast bands, hidden physiology, risk, timeline, alerts,
        what-if (page)."""
        ward = _service(request, "ward")()
        bed = next((b for b in ward["beds"] if b["patient_id"] == patient_id), None)
        if bed is None:
            return HTMLResponse(
                _env.get_template("missing.html").render(patient_id=patient_id, title="Not found"),
                status_code=404,
            )
        return render("patient.html", bed=bed, title=f"Patient {patient_id}")

    @router.get("/quality", openapi_extra=scope("user/Flag.rs"), **html)
    def quality_page(request: Request) -> HTMLResponse:
        """Alerts and quality: the alert-burden scorecard from the service's log, the rules,
        the twins' status and the model card (page)."""
        card = _service(request, "burden")()
        ward = _service(request, "ward")()
        twins: dict[str, int] = {}
        for b in ward["beds"]:
            twins[b["twin"]["status"]] = twins.get(b["twin"]["status"], 0) + 1
        model = getattr(request.app.state, "model_card", None)
        return render("quality.html", card=card, rules=_service(request, "alert_rules"),
                      twins=twins, monitoring=_service(request, "monitoring")(),
                      beds=len(ward["beds"]), model=model,
                      title="Alerts and quality")  # fmt: skip

    return router


def install(app: FastAPI) -> FastAPI:
    """Add the dashboard's pages and its local assets (``/static``) to a service app."""
    static = resources.files("vitaltwin.dashboard") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(dashboard_router())
    return app
