"""The one access hook every route goes through: who is calling, may they, and for which
patients — denied unless granted, and every decision audited.

A route states two rules, in its ``openapi_extra`` (:func:`scope`), so the OpenAPI description
shows them and a test can walk them:

* ``x-scope``: the SMART on FHIR-style scope it needs (``user/Observation.rs``; see
  :mod:`vitaltwin.governance`), :data:`PUBLIC` for the few routes anyone may call (health,
  discovery, sign-in) or :data:`AUTHENTICATED` for any signed-in caller;
* ``x-patient``: where the patient it touches comes from — ``none`` (no patient's data),
  ``path`` (the ``patient_id`` path parameter), ``query:a,b`` (the first of these query
  parameters given), ``body:context.patientId`` (a JSON body field), ``alert`` (the patient of
  the ``alert_id`` path parameter) or ``endpoint`` (the route filters lists to the caller's
  patients with :meth:`Guard.visible` and reports what it touched itself).

The route class of the service's routers (:class:`ScopedRoute`) refuses to build a route that
states either rule badly, and adds the check as a dependency. The caller is found by
:class:`Guard`: a bearer token (``Authorization: Bearer``), a device's API key
(``X-API-Key``) or the dashboard's session cookie (with a CSRF token on every unsafe request);
a patient outside the caller's units and care team needs break-glass (``X-Break-Glass: the
reason``, or ``?break_glass=`` on a page), which only treating roles have and which is always
audited. ``Security.development``
grants everything to a development identity, for tests and embedding — never what ``vitaltwin
serve`` runs.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection, Request

from vitaltwin.governance import (
    ROLES,
    SCOPE,
    AuditRecord,
    AuditTrail,
    Directory,
    FileKeys,
    Identity,
    KeyProvider,
    TokenError,
    TokenService,
    granted,
    signing_key,
)

PUBLIC = "public"
AUTHENTICATED = "authenticated"
_PATIENT_RULE = re.compile(r"none|path|alert|endpoint|query:[a-z_]+(,[a-z_]+)*|body:[A-Za-z_.]+")
ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE = "vt_access", "vt_refresh", "vt_csrf"
CSRF_HEADER = "x-csrf-token"
BREAK_GLASS_HEADER = "x-break-glass"
PURPOSE_HEADER = "x-purpose-of-use"
PURPOSES = {"TREAT", "ETREAT", "HOPERAT", "HRESCH", "PUBHLTH", "HPAYMT", "PATRQT"}
"""Purposes of use a caller may state (HL7 v3 ActReason); break-glass adds ``BTG``."""
_DEFAULT_PURPOSE = {"data_scientist": "HRESCH", "administrator": "HOPERAT",
                    "auditor": "HOPERAT"}  # fmt: skip
MIN_BREAK_GLASS_REASON = 10
"""Characters a break-glass reason needs (a word such as "emergency" is not a reason)."""

DIRECTORY_FILE, AUDIT_FILE = "directory.json", "audit.jsonl"
TOKEN_KEY, AUDIT_KEY = "token-signing", "audit-signing"
"""The names of the keys that sign tokens and the audit trail's checkpoints."""

DEVELOPMENT = Identity("developer", "system", ("system/*.cruds",), all_patients=True)
"""The identity every caller has under :meth:`Security.development`."""


@dataclass(frozen=True)
class Security:
    """What the service enforces: the directory of users, clients and devices, the token
    service, the audit trail (every decision recorded when given), whether the session
    cookies need HTTPS, and the request rates allowed (per second, with a burst) to a person
    (or an address not signed in) and to a machine (device, backend client)."""

    directory: Directory | None
    tokens: TokenService | None
    audit: AuditTrail | None
    development: bool = False
    secure_cookies: bool = False
    person_rate: tuple[float, float] = (20.0, 200.0)
    machine_rate: tuple[float, float] = (2000.0, 10000.0)

    @classmethod
    def development_mode(cls, audit: AuditTrail | None = None) -> Security:
        """Everyone is :data:`DEVELOPMENT` (tests, embedding; never ``vitaltwin serve``)."""
        return cls(None, None, audit, development=True)

    @classmethod
    def enforced(
        cls,
        directory: Directory,
        tokens: TokenService,
        audit: AuditTrail,
        *,
        secure_cookies: bool = False,
    ) -> Security:
        """Tokens, API keys or session cookies required; every request audited."""
        return cls(directory, tokens, audit, secure_cookies=secure_cookies)


def open_security(
    folder: Path,
    *,
    keys: KeyProvider | None = None,
    access_ttl_s: int = 900,
    refresh_ttl_s: int = 12 * 3600,
    secure_cookies: bool = False,
) -> Security:
    """Enforced security from a folder: ``directory.json`` (users, clients, devices),
    ``audit.jsonl`` (the trail) and, unless ``keys`` come from elsewhere, ``keys/`` (made
    owner-only on first use). The token and audit keys are ``token-signing`` and
    ``audit-signing``."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    provider = keys if keys is not None else FileKeys(folder / "keys", create=True)
    return Security.enforced(
        Directory(folder / DIRECTORY_FILE),
        TokenService(
            signing_key(provider, TOKEN_KEY),
            access_ttl_s=access_ttl_s,
            refresh_ttl_s=refresh_ttl_s,
        ),
        AuditTrail(folder / AUDIT_FILE, signing_key(provider, AUDIT_KEY)),
        secure_cookies=secure_cookies,
    )


class RateLimiter:
    """Token buckets per caller (RFC 6585's 429 when one is empty): ``rate`` requests per
    second on average, ``burst`` at once. Buckets idle for ten minutes are forgotten."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._swept = clock()

    def take(self, key: str, rate: float, burst: float) -> float:
        """Take one request from ``key``'s bucket: 0 when allowed, else the seconds until
        one is."""
        now = self.clock()
        with self._lock:
            if now - self._swept > 600:
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 600}
                self._swept = now
            tokens, when = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - when) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0


class PatientUnits:
    """Each patient's unit (the store's ``icu_unit``), read again at most every ``ttl_s``."""

    def __init__(self, read: Callable[[], dict[str, str | None]], ttl_s: float = 5.0) -> None:
        self._read, self.ttl_s = read, ttl_s
        self._lock = threading.Lock()
        self._units: dict[str, str | None] = {}
        self._at = -float("inf")

    def __call__(self, patient_id: str) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now - self._at > self.ttl_s or (
                patient_id not in self._units and now - self._at > 1.0
            ):
                self._units, self._at = self._read(), now
            return self._units.get(patient_id)


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": 'Bearer realm="vitaltwin"'})


class Guard:
    """Finds the caller and decides on patients (module docstring)."""

    def __init__(self, security: Security, units: Callable[[str], str | None]) -> None:
        self.security = security
        self.units = units
        self.limiter = RateLimiter()

    def throttle(self, connection: HTTPConnection) -> float:
        """0 when the caller may make this request now, else the seconds to wait (per signed-in
        subject, or per address for callers not signed in; machines get more)."""
        who = getattr(connection.state, "identity", None)
        if isinstance(who, Identity):
            key = f"{who.role}:{who.subject}"
            machine = who.all_patients
        else:
            key = f"address:{connection.client.host if connection.client else '-'}"
            machine = False
        rate, burst = self.security.machine_rate if machine else self.security.person_rate
        return self.limiter.take(key, rate, burst)

    def identify(self, connection: HTTPConnection) -> Identity:
        """The caller of an HTTP request or WebSocket (401 when none can be established)."""
        found = getattr(connection.state, "identity", None)
        if isinstance(found, Identity):
            return found
        who = self._identify(connection)
        connection.state.identity = who
        return who

    def _identify(self, connection: HTTPConnection) -> Identity:
        sec = self.security
        if sec.development:
            return DEVELOPMENT
        assert sec.tokens is not None and sec.directory is not None
        auth = connection.headers.get("authorization")
        if auth is not None:
            kind, _, token = auth.partition(" ")
            if kind.lower() != "bearer" or not token:
                raise _unauthorized("Authorization: Bearer <token> expected")
            try:
                return sec.tokens.verify(token.strip())
            except TokenError as exc:
                raise _unauthorized(str(exc)) from None
        api_key = connection.headers.get("x-api-key")
        if api_key is not None:
            device = sec.directory.device(api_key)
            if device is None:
                raise _unauthorized("API key not recognised")
            return device.identity()
        cookie = connection.cookies.get(ACCESS_COOKIE)
        if cookie is not None:
            if isinstance(connection, Request) and connection.method not in ("GET", "HEAD"):
                sent = connection.headers.get(CSRF_HEADER)
                if not sent or sent != connection.cookies.get(CSRF_COOKIE):
                    raise HTTPException(403, "CSRF token missing or wrong (X-CSRF-Token)")
            try:
                return sec.tokens.verify(cookie)
            except TokenError as exc:
                raise _unauthorized(f"session: {exc}; sign in again") from None
        raise _unauthorized("sign in: a bearer token, an API key or a session is needed")

    def authorize(self, who: Identity, patient_id: str, connection: HTTPConnection) -> None:
        """Allow ``who`` this patient, by assignment or break-glass; 403 otherwise."""
        if self.may_see(who, patient_id):
            return
        reason = (
            connection.headers.get(BREAK_GLASS_HEADER)
            or connection.query_params.get("break_glass")  # a page opened by break-glass
            or ""
        ).strip()
        if reason and who.may_break_glass:
            if len(reason) < MIN_BREAK_GLASS_REASON:
                need = f"break-glass needs a reason of {MIN_BREAK_GLASS_REASON} characters at least"
                raise HTTPException(403, need)
            connection.state.break_glass = reason
            return
        if reason:
            raise HTTPException(403, f"role {who.role} may not break the glass")
        raise HTTPException(
            403,
            f"patient {patient_id} is not assigned to {who.subject} (units, care team); "
            f"break-glass with a stated reason ({BREAK_GLASS_HEADER}) if you must",
        )

    def may_see(self, who: Identity, patient_id: str) -> bool:
        if who.all_patients or patient_id in who.patients:  # no unit to look up
            return True
        return bool(who.units) and who.assigned(patient_id, self.units(patient_id))

    def visible(self, who: Identity, patient_ids: Iterable[str]) -> list[str]:
        """The patients of ``patient_ids`` the caller's assignment covers (no break-glass for
        lists: it opens one chart at a time)."""
        return [p for p in patient_ids if self.may_see(who, p)]

    def audit(self, connection: HTTPConnection, operation: str, action: str, status: int) -> None:
        """Record a request's decision and outcome in the audit trail (when there is one)."""
        trail = self.security.audit
        if trail is None:
            return
        st = connection.state
        who = getattr(st, "identity", None)
        role = who.role if isinstance(who, Identity) else "-"
        purpose = (connection.headers.get(PURPOSE_HEADER) or "").upper()
        if purpose not in PURPOSES:
            purpose = _DEFAULT_PURPOSE.get(role, "TREAT")
        trail.record(AuditRecord(
            action=action, operation=operation,
            who=who.subject if isinstance(who, Identity) else "(not signed in)", role=role,
            outcome=status, patients=tuple(getattr(st, "patients", ()) or ()),
            purpose=purpose, break_glass=getattr(st, "break_glass", None),
            request_id=getattr(st, "request_id", None),
            source=connection.client.host if connection.client else None,
        ))  # fmt: skip


def guard_of(connection: HTTPConnection) -> Guard:
    g = getattr(connection.app.state, "guard", None)
    if not isinstance(g, Guard):
        raise HTTPException(503, "this app has no access guard (not a vitaltwin service)")
    return g


def identity(connection: HTTPConnection) -> Identity:
    """The caller (a FastAPI dependency; 401 when not signed in)."""
    return guard_of(connection).identify(connection)


def _field(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


async def patients_of(request: Request, rule: str) -> list[str]:
    """The patient ids a request touches by its route's ``x-patient`` rule (empty when the
    request names none: the route then answers 400/404/422 by itself)."""
    if rule == "path":
        pid = request.path_params.get("patient_id")
        return [str(pid)] if pid else []
    if rule == "alert":
        find = getattr(request.app.state, "patient_of_alert", None)
        pid = find(str(request.path_params.get("alert_id"))) if find else None
        return [pid] if pid else []
    if rule.startswith("query:"):
        for name in rule[6:].split(","):
            value = request.query_params.get(name)
            if value:
                return [value.removeprefix("Patient/")]
        return []
    if rule.startswith("body:"):
        try:
            doc = await request.json()
        except ValueError:
            return []
        pid = _field(doc, rule[5:])
        if not isinstance(pid, (str, int)) or not str(pid):
            return []
        return [str(pid).removeprefix("Patient/")]
    return []


def _check_rules(scope: str, rule: str) -> None:
    if scope not in (PUBLIC, AUTHENTICATED) and SCOPE.fullmatch(scope) is None:
        raise ValueError(f"not a scope: {scope!r}")
    if _PATIENT_RULE.fullmatch(rule) is None:
        raise ValueError(f"not a patient rule: {rule!r}")


def require(scope: str, rule: str) -> Callable[..., Any]:
    """A dependency checking the caller holds ``scope`` and may see the patients ``rule``
    finds."""
    _check_rules(scope, rule)

    async def check(request: Request) -> None:
        if scope == PUBLIC:
            return
        guard = guard_of(request)
        who = guard.identify(request)
        if scope != AUTHENTICATED and not granted(scope, who.scopes):
            raise HTTPException(403, f"scope {scope} required (role {who.role})")
        if rule != "none" and not who.all_patients and ROLES[who.role].patients == "none":
            raise HTTPException(403, f"role {who.role} sees no patient's data")
        pids = await patients_of(request, rule)
        request.state.patients = pids
        for pid in pids:
            guard.authorize(who, pid, request)

    return check


class ScopedRoute(APIRoute):
    """An API route that must declare its scope and patient rule (:func:`scope`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        extra = kwargs.get("openapi_extra") or {}
        value, rule = extra.get("x-scope"), extra.get("x-patient")
        if not isinstance(value, str) or not isinstance(rule, str):
            raise TypeError(f"route {path} declares no scope and patient rule (openapi_extra "
                            "x-scope, x-patient: use access.scope)")  # fmt: skip
        kwargs["dependencies"] = [*(kwargs.get("dependencies") or []),
                                  Depends(require(value, rule))]  # fmt: skip
        super().__init__(path, endpoint, **kwargs)


def scope(value: str, patients: str, action: str | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a route needing scope ``value`` whose patients come by rule
    ``patients`` (module docstring); ``action`` is the audit action (C, R, U, D, E) when the
    HTTP method's usual one is not right (a POST that reads, say)."""
    _check_rules(value, patients)
    out: dict[str, Any] = {"x-scope": value, "x-patient": patients}
    if action is not None:
        out["x-audit-action"] = action
    return out


_METHOD_ACTION = {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}


def audit_action(method: str, route: Any) -> str:
    """The audit action of a request: the route's ``x-audit-action`` or its method's."""
    extra = getattr(route, "openapi_extra", None) or {}
    return str(extra.get("x-audit-action") or _METHOD_ACTION.get(method, "E"))


def is_public(route: Any) -> bool:
    extra = getattr(route, "openapi_extra", None) or {}
    return extra.get("x-scope") == PUBLIC
