"""The clinician's pages, served by the service itself: server-rendered templates (Jinja2) with
htmx for the ward's live table and uPlot for time series, all assets local (hospital networks
are closed). The pages read the same library objects the JSON API does; the patient page's
script calls the JSON API (same origin, same scopes).

Pages: ``/`` (to the ward), ``/ward`` (every bed of the signed-in user's units and care team,
highest risk first; the table refreshes every second), ``/patients/{id}`` (vitals with the
twin's forecast bands, hidden physiology, risk, timeline, alerts with
acknowledge/snooze/escalate, what-if), ``/quality`` (the alert-burden scorecard from the
service's log, the twins' status, the models' monitoring, the model card), ``/login`` and
``/logout``.

Sessions: signing in sets the access and refresh tokens as ``HttpOnly``, ``SameSite=Strict``
cookies (``Secure`` behind HTTPS) and a CSRF token cookie the pages' scripts echo in
``X-CSRF-Token`` on every unsafe request (double submit); the access token is renewed from the
refresh token when it expires, so a ward screen stays signed in for the refresh token's life
(a shift). A page asked for without a session goes to the sign-in page; a patient outside the
user's assignment shows why, with the break-glass form for roles that have it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitaltwin import __version__
from vitaltwin.governance import Identity, TokenError, TokenPair
from vitaltwin.service.access import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    PUBLIC,
    REFRESH_COOKIE,
    ScopedRoute,
    Security,
    guard_of,
    identity,
    scope,
)
from vitaltwin.service.alerts import DECISION_SUPPORT
from vitaltwin.service.auth import SignInError, sign_in

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


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status_code)


Who = Annotated[Identity, Depends(identity)]


def set_session(
    response: Response, pair: TokenPair, security: Security, csrf: str | None = None
) -> None:
    """The session cookies of a token pair (module docstring); a new CSRF token unless the
    session's is given."""
    tokens = security.tokens
    assert tokens is not None
    common: dict[str, Any] = {"samesite": "strict", "secure": security.secure_cookies,
                              "path": "/"}  # fmt: skip
    response.set_cookie(ACCESS_COOKIE, pair.access_token, max_age=tokens.access_ttl_s,
                        httponly=True, **common)  # fmt: skip
    response.set_cookie(REFRESH_COOKIE, pair.refresh_token, max_age=tokens.refresh_ttl_s,
                        httponly=True, **common)  # fmt: skip
    response.set_cookie(CSRF_COOKIE, csrf or secrets.token_urlsafe(24),
                        max_age=tokens.refresh_ttl_s, httponly=False, **common)  # fmt: skip


def end_session(response: Response) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/")


def safe_next(target: str | None) -> str:
    """A sign-in's destination: a path on this site only (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ward"


def _service(request: Request, what: str) -> Any:
    got = getattr(request.app.state, what, None)
    if got is None:
        raise HTTPException(503, f"this app has no {what} view (not a vitaltwin service)")
    return got


def dashboard_router() -> APIRouter:
    router = APIRouter(route_class=ScopedRoute, tags=["dashboard"])
    html: dict[str, Any] = {"response_class": HTMLResponse}

    @router.get("/login", openapi_extra=scope(PUBLIC, "none"), **html)
    def login_page(next: str | None = Query(None, max_length=2000)) -> HTMLResponse:
        """Sign in (page)."""
        return render("login.html", next=safe_next(next), error=None, title="Sign in")

    @router.post("/login", openapi_extra=scope(PUBLIC, "none"), response_class=Response)
    def login(
        request: Request,
        username: Annotated[str, Form(min_length=1, max_length=128)],
        password: Annotated[str, Form(max_length=1024)],
        next: Annotated[str | None, Form(max_length=2000)] = None,
    ) -> Response:
        """Sign in with a user name and password: the session cookies, then the page asked
        for."""
        try:
            pair = sign_in(request, username, password)
        except SignInError as exc:
            return render("login.html", exc.status, next=safe_next(next),
                          error=exc.description, title="Sign in")  # fmt: skip
        response = RedirectResponse(safe_next(next), status_code=303)
        set_session(response, pair, guard_of(request).security)
        return response

    @router.post("/logout", openapi_extra=scope(PUBLIC, "none"), response_class=Response)
    def logout(request: Request) -> Response:
        """Sign out: the session ends (its refresh token revoked) and its cookies go."""
        tokens = guard_of(request).security.tokens
        refresh = request.cookies.get(REFRESH_COOKIE)
        if tokens is not None and refresh:
            tokens.revoke(refresh)
        response = RedirectResponse("/login", status_code=303)
        end_session(response)
        return response

    @router.get("/", openapi_extra=scope("user/Observation.rs", "none"), response_class=Response)
    def home() -> Response:
        """To the ward overview."""
        return RedirectResponse("/ward", status_code=307)

    @router.get("/ward", openapi_extra=scope("user/Observation.rs", "endpoint"), **html)
    def ward_page(request: Request, who: Who) -> HTMLResponse:
        """The ward overview (page): the signed-in user's patients."""
        ward = _service(request, "ward")(who)
        request.state.patients = [b["patient_id"] for b in ward["beds"]]
        return render("ward.html", ward=ward, sort="risk", title="Ward", user=who)

    @router.get("/ward/beds", openapi_extra=scope("user/Observation.rs", "endpoint"), **html)
    def ward_beds(
        request: Request,
        who: Who,
        sort: str = Query("risk", pattern="^(risk|bed)$", description="risk or bed"),
    ) -> HTMLResponse:
        """The ward's beds (an HTML fragment the ward page refreshes)."""
        ward = _service(request, "ward")(who)
        request.state.patients = [b["patient_id"] for b in ward["beds"]]
        if sort == "bed":
            ward["beds"].sort(key=lambda b: b["patient_id"])
        return render("_beds.html", ward=ward, sort=sort)

    @router.get(
        "/patients/{patient_id}",
        openapi_extra=scope("user/Observation.r", "path"),
        responses={404: {"description": "no such patient on the ward"}},
        **html,
    )
    def patient_page(request: Request, patient_id: str, who: Who) -> HTMLResponse:
        """One patient: vitals and forecast bands, hidden physiology, risk, timeline, alerts,
        what-if (page). Opened by break-glass, the page says so and its requests carry the
        reason."""
        everyone = Identity(who.subject, who.role, who.scopes, all_patients=True)
        ward = _service(request, "ward")(everyone)  # access to this patient is checked
        bed = next((b for b in ward["beds"] if b["patient_id"] == patient_id), None)
        if bed is None:
            return render("missing.html", 404, patient_id=patient_id, title="Not found",
                          user=who)  # fmt: skip
        return render("patient.html", bed=bed, title=f"Patient {patient_id}", user=who,
                      break_glass=getattr(request.state, "break_glass", None))  # fmt: skip

    @router.get("/quality", openapi_extra=scope("user/Flag.rs", "none"), **html)
    def quality_page(request: Request, who: Who) -> HTMLResponse:
        """Alerts and quality: the alert-burden scorecard from the service's log, the rules,
        the twins' status and the model card (page)."""
        card = _service(request, "burden")()
        ward = _service(request, "ward")(who)
        twins: dict[str, int] = {}
        for b in ward["beds"]:
            twins[b["twin"]["status"]] = twins.get(b["twin"]["status"], 0) + 1
        model = getattr(request.app.state, "model_card", None)
        return render("quality.html", card=card, rules=_service(request, "alert_rules"),
                      twins=twins, monitoring=_service(request, "monitoring")(),
                      beds=len(ward["beds"]), model=model, user=who,
                      title="Alerts and quality")  # fmt: skip

    return router


async def _page_errors(request: Request, exc: Exception) -> Response:
    """A page's 401 goes to the sign-in page, its 403 to a page that says why (with the
    break-glass form where the role has it); the API's errors stay JSON."""
    assert isinstance(exc, StarletteHTTPException)
    route = request.scope.get("route")
    if "dashboard" not in (getattr(route, "tags", None) or []) or request.method != "GET":
        return await http_exception_handler(request, exc)
    if exc.status_code == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
    if exc.status_code == 403:
        who = getattr(request.state, "identity", None)
        return render("denied.html", 403, detail=str(exc.detail), user=who,
                      path=request.url.path, title="Not allowed",
                      may_break_glass=isinstance(who, Identity) and who.may_break_glass
                      and "patient_id" in request.path_params)  # fmt: skip
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> FastAPI:
    """Add the dashboard's pages, sessions (cookies renewed from the refresh token) and its
    local assets (``/static``) to a service app."""
    static = resources.files("vitaltwin.dashboard") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(dashboard_router())
    app.add_exception_handler(StarletteHTTPException, _page_errors)

    @app.middleware("http")
    async def renew_session(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        sec = guard_of(request).security
        renewed = _renew(request, sec)
        response = await call_next(request)
        if renewed is not None:
            set_session(response, renewed, sec, request.cookies.get(CSRF_COOKIE))
        return response

    return app


def _renew(request: Request, sec: Security) -> TokenPair | None:
    """New tokens when a session's access token expired and its refresh token is good; the
    request then goes on with the new access token."""
    refresh = request.cookies.get(REFRESH_COOKIE)
    if sec.tokens is None or sec.directory is None or not refresh:
        return None
    if "authorization" in request.headers or "x-api-key" in request.headers:
        return None
    access = request.cookies.get(ACCESS_COOKIE)
    if access:
        try:
            sec.tokens.verify(access)
            return None
        except TokenError:
            pass
    try:
        pair = sec.tokens.refresh(refresh, sec.directory.current)
    except TokenError:
        return None
    cookies = {**request.cookies, ACCESS_COOKIE: pair.access_token}
    header = "; ".join(f"{k}={v}" for k, v in cookies.items()).encode("latin-1")
    request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"cookie"] + [
        (b"cookie", header)
    ]
    return pair
