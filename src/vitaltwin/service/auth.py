"""Signing in: the OAuth 2.0 token endpoint and SMART's discovery document.

* ``POST /auth/token`` (form-encoded, RFC 6749): ``grant_type=password`` (a user's name and
  password), ``refresh_token`` (a new pair; the old refresh token is spent) or
  ``client_credentials`` with ``client_assertion_type`` and ``client_assertion`` (SMART
  backend services: a JWT signed with the client's registered key). Answers the token response
  or an OAuth error (``invalid_grant``, ``invalid_client``...). Repeated failures for one name or
  address are refused for a while (:class:`Throttle`).
* ``POST /auth/revoke``: end the session of a refresh token (sign out).
* ``GET /auth/me``: who the caller is (role, scopes, units).
* ``GET /.well-known/smart-configuration``: the endpoints, grants and scopes (SMART App Launch).

Every attempt is audited (``sign-in``, ``token refresh``, ``client token``) with its outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse

from vitaltwin.governance import (
    ASSERTION_TYPE,
    ROLES,
    AuditRecord,
    Identity,
    TokenError,
    TokenPair,
)
from vitaltwin.service.access import (
    AUTHENTICATED,
    PUBLIC,
    ScopedRoute,
    guard_of,
    identity,
    scope,
)


class Throttle:
    """At most ``limit`` failures per user name or client and ``address_limit`` per address
    (``address:`` keys) within ``window_s``; then refused until the oldest failure leaves the
    window (OWASP's authentication cheat sheet: slow down guessing without locking accounts
    forever). An address gets more: many people sign in from behind one proxy, and one
    colleague's typos must not lock out a ward, while guessing across many names still stops."""

    def __init__(self, limit: int = 5, address_limit: int = 50, window_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.limit, self.address_limit = limit, address_limit
        self.window_s, self.clock = window_s, clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = kept
        return kept

    def blocked(self, *keys: str) -> float:
        """Seconds until every key may try again (0: now)."""
        with self._lock:
            waits = [
                self.window_s - (self.clock() - r[0])
                for k in keys
                if len(r := self._recent(k))
                >= (self.address_limit if k.startswith("address:") else self.limit)
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._recent(k).append(self.clock())


class SignInError(Exception):
    """A refused sign-in: the OAuth error, its description, the HTTP status and, when
    throttled, the seconds to wait."""

    def __init__(self, error: str, description: str, status: int = 400,
                 retry_after_s: float = 0.0) -> None:  # fmt: skip
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.retry_after_s = retry_after_s


def _throttle(request: Request) -> Throttle:
    app = request.app
    if not isinstance(getattr(app.state, "sign_in_throttle", None), Throttle):
        app.state.sign_in_throttle = Throttle()
    found: Throttle = app.state.sign_in_throttle
    return found


def _audit(request: Request, operation: str, who: str, role: str, status: int) -> None:
    trail = guard_of(request).security.audit
    if trail is not None:
        trail.record(AuditRecord(
            action="E", operation=operation, who=who, role=role, outcome=status,
            purpose="HOPERAT", request_id=getattr(request.state, "request_id", None),
            source=request.client.host if request.client else None,
        ))  # fmt: skip


def sign_in(request: Request, username: str, password: str) -> TokenPair:
    """A user's tokens for their name and password (throttled and audited; the token endpoint
    and the dashboard's sign-in page both use it). SignInError when refused."""
    sec = guard_of(request).security
    if sec.tokens is None or sec.directory is None:
        raise SignInError("unsupported_grant_type", "this service runs without sign-in "
                          "(development mode)")  # fmt: skip
    throttle = _throttle(request)
    address = f"address:{request.client.host if request.client else '-'}"
    wait = throttle.blocked(f"user:{username}", address)
    if wait > 0:
        _audit(request, "sign-in", username, "-", 429)
        raise SignInError("slow_down", f"too many failed sign-ins: try again in {wait:.0f} s",
                          429, wait)  # fmt: skip
    user = sec.directory.authenticate(username, password)
    if user is None:
        throttle.failed(f"user:{username}", address)
        _audit(request, "sign-in", username, "-", 400)
        raise SignInError("invalid_grant", "user name or password wrong, or the user is "
                          "disabled")  # fmt: skip
    _audit(request, "sign-in", username, user.role, 200)
    return sec.tokens.issue(user.identity())


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status,
                        headers={"cache-control": "no-store"})  # fmt: skip


def auth_router() -> APIRouter:
    router = APIRouter(route_class=ScopedRoute, tags=["auth"])
    audit = _audit

    def answer(pair: TokenPair) -> JSONResponse:
        return JSONResponse(pair.as_oauth(), headers={"cache-control": "no-store"})

    @router.post(
        "/auth/token",
        openapi_extra=scope(PUBLIC, "none"),
        responses={400: {"description": "an OAuth error"}, 401: {"description": "bad client"},
                   429: {"description": "too many failures"}},
    )  # fmt: skip
    def token(
        request: Request,
        grant_type: Annotated[str, Form(max_length=64)],
        username: Annotated[str | None, Form(max_length=128)] = None,
        password: Annotated[str | None, Form(max_length=1024)] = None,
        refresh_token: Annotated[str | None, Form(max_length=4096)] = None,
        client_id: Annotated[str | None, Form(max_length=128)] = None,
        client_assertion_type: Annotated[str | None, Form(max_length=128)] = None,
        client_assertion: Annotated[str | None, Form(max_length=8192)] = None,
    ) -> JSONResponse:
        """The OAuth 2.0 token endpoint (module docstring)."""
        sec = guard_of(request).security
        if sec.tokens is None or sec.directory is None:
            return _oauth_error("unsupported_grant_type", "this service runs without sign-in "
                                "(development mode)")  # fmt: skip
        tokens, directory = sec.tokens, sec.directory
        throttle = _throttle(request)
        address = f"address:{request.client.host if request.client else '-'}"
        if grant_type == "password":
            if not username or password is None:
                return _oauth_error("invalid_request", "username and password are required")
            try:
                return answer(sign_in(request, username, password))
            except SignInError as exc:
                refused = _oauth_error(exc.error, exc.description, exc.status)
                if exc.retry_after_s:
                    refused.headers["retry-after"] = f"{exc.retry_after_s:.0f}"
                return refused
        if grant_type == "refresh_token":
            if not refresh_token:
                return _oauth_error("invalid_request", "refresh_token is required")
            try:
                pair = tokens.refresh(refresh_token, directory.current)
            except TokenError as exc:
                audit(request, "token refresh", "(unknown)", "-", 400)
                return _oauth_error("invalid_grant", str(exc))
            who = tokens.verify(pair.access_token)
            audit(request, "token refresh", who.subject, who.role, 200)
            return answer(pair)
        if grant_type == "client_credentials":
            if client_assertion_type != ASSERTION_TYPE or not client_assertion:
                return _oauth_error("invalid_client", "a client assertion (private_key_jwt) "
                                    f"is required: client_assertion_type={ASSERTION_TYPE}",
                                    401)  # fmt: skip
            try:
                claimed = str(jwt.decode(client_assertion, options={"verify_signature": False})
                              .get("iss") or client_id or "")  # fmt: skip
            except jwt.PyJWTError:
                return _oauth_error("invalid_client", "client assertion is not a JWT", 401)
            client = directory.clients.get(claimed)
            wait = throttle.blocked(f"client:{claimed}", address)
            if wait > 0:
                return JSONResponse({"error": "slow_down"}, 429,
                                    headers={"retry-after": f"{wait:.0f}"})  # fmt: skip
            if client is None or client.disabled:
                throttle.failed(f"client:{claimed}", address)
                audit(request, "client token", claimed or "(unknown)", "system", 401)
                return _oauth_error("invalid_client", f"no client {claimed!r}", 401)
            try:
                tokens.check_assertion(client_assertion, client.client_id,
                                       client.public_key_pem, str(request.url))  # fmt: skip
            except TokenError as exc:
                throttle.failed(f"client:{claimed}", address)
                audit(request, "client token", claimed, "system", 401)
                return _oauth_error("invalid_client", str(exc), 401)
            audit(request, "client token", claimed, "system", 200)
            return answer(tokens.issue(client.identity(), refresh=False))
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r}: password, "
                            "refresh_token or client_credentials")  # fmt: skip

    @router.post("/auth/revoke", openapi_extra=scope(PUBLIC, "none"))
    def revoke(request: Request, token: Annotated[str, Form(max_length=4096)]) -> dict[str, str]:
        """End the session of a refresh token (RFC 7009: answers 200 whatever the token)."""
        tokens = guard_of(request).security.tokens
        if tokens is not None:
            tokens.revoke(token)
        return {"status": "revoked"}

    @router.get("/auth/me", openapi_extra=scope(AUTHENTICATED, "none"))
    def me(who: Annotated[Identity, Depends(identity)]) -> dict[str, Any]:
        """Who the caller is: subject, role, scopes, units and care-team patients."""
        return {"subject": who.subject, "role": who.role, "scopes": list(who.scopes),
                "units": list(who.units), "patients": list(who.patients),
                "all_patients": who.all_patients,
                "may_break_glass": who.may_break_glass}  # fmt: skip

    @router.get("/.well-known/smart-configuration", openapi_extra=scope(PUBLIC, "none"))
    def smart_configuration(request: Request) -> dict[str, Any]:
        """SMART on FHIR discovery: where to get tokens and what can be asked for."""
        base = str(request.base_url).rstrip("/")
        scopes = sorted({s for r in ROLES.values() for s in r.scopes})
        return {
            "issuer": base,
            "token_endpoint": f"{base}/auth/token",
            "revocation_endpoint": f"{base}/auth/revoke",
            "grant_types_supported": ["password", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384", "EdDSA"],
            "scopes_supported": scopes,
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        }

    return router
