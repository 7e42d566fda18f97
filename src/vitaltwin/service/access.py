"""The one access hook every route goes through.

A route states the SMART on FHIR-style scope it needs (``patient/Observation.rs``,
``user/*.rs``, ``system/*.cruds``) as ``openapi_extra={"x-scope": ...}``; the route class of
the service's routers (:class:`ScopedRoute`) refuses to build a route that states none and adds
the check as a dependency, so no route can be added without one, and the OpenAPI description
shows each route's scope. ``public`` marks the few routes anyone may call (liveness and
readiness).

In this release the identity is a development one granted every scope (the security issue
replaces :func:`identity` with token validation); the check itself is real: a scope is granted
when the identity holds one of the same or a wider context (``system`` > ``user`` >
``patient``), the same resource or ``*``, and every permission asked (c, r, u, d, s).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

PUBLIC = "public"
_SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([cruds]+)")
_WIDER = {
    "patient": {"patient", "user", "system"},
    "user": {"user", "system"},
    "system": {"system"},
}


@dataclass(frozen=True)
class Identity:
    """Who is calling and what they may do."""

    subject: str
    role: str
    scopes: tuple[str, ...]


DEVELOPMENT = Identity("developer", "administrator", ("system/*.cruds",))


def identity(connection: HTTPConnection) -> Identity:
    """The caller of an HTTP request or WebSocket (development identity in this release)."""
    return DEVELOPMENT


def granted(asked: str, held: tuple[str, ...]) -> bool:
    """Whether scopes ``held`` cover scope ``asked`` (see the module docstring)."""
    want = _SCOPE.fullmatch(asked)
    if want is None:
        raise ValueError(f"not a scope: {asked!r}")
    context, resource, perms = want.groups()
    for h in held:
        have = _SCOPE.fullmatch(h)
        if have is None:
            continue
        if (
            have.group(1) in _WIDER[context]
            and have.group(2) in ("*", resource)
            and set(perms) <= set(have.group(3))
        ):
            return True
    return False


def require(scope: str) -> Callable[..., Identity]:
    """A dependency checking the caller holds ``scope``."""
    if scope != PUBLIC and _SCOPE.fullmatch(scope) is None:
        raise ValueError(f"not a scope: {scope!r}")

    def check(who: Identity = Depends(identity)) -> Identity:  # noqa: B008 - FastAPI's way
        if scope != PUBLIC and not granted(scope, who.scopes):
            raise HTTPException(403, f"scope {scope} required")
        return who

    return check


class ScopedRoute(APIRoute):
    """An API route that must declare its scope (``openapi_extra={"x-scope": ...}``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        scope = (kwargs.get("openapi_extra") or {}).get("x-scope")
        if not isinstance(scope, str):
            raise TypeError(f"route {path} declares no scope (openapi_extra x-scope)")
        kwargs["dependencies"] = [*(kwargs.get("dependencies") or []), Depends(require(scope))]
        super().__init__(path, endpoint, **kwargs)


def scope(value: str) -> dict[str, Any]:
    """``openapi_extra`` for a route needing ``value``."""
    return {"x-scope": value}
