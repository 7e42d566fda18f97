"""Short-lived signed tokens (JWT, EdDSA over Ed25519) with rotating refresh tokens, and the
check of a SMART backend-services client assertion (``private_key_jwt``).

An access token lives :attr:`TokenService.access_ttl_s` (15 min by default) and carries the
identity (subject, role, scopes, units, care-team patients); a refresh token lives
:attr:`TokenService.refresh_ttl_s` (a 12-h shift) and can be used once: using it gives a new
pair of the same session ("family"), and using an already used one again revokes the whole
session (RFC 9700 §4.14.2, refresh token rotation with reuse detection) — except within
:attr:`TokenService.reuse_grace_s` of its rotation, when the same new pair is given again (a
page's requests that all find the access token expired at once must not sign the user out).
Sessions are kept in memory: a restart signs everyone out, which is the safe direction.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from vitaltwin.governance._roles import ROLES, Identity

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_ALGORITHMS = ["RS384", "ES384", "EdDSA"]
"""What a backend client may sign its assertion with (SMART: RS384 or ES384; EdDSA too)."""
MAX_ASSERTION_S = 300
"""A client assertion may be valid for 5 minutes at most (SMART backend services)."""


class TokenError(ValueError):
    """A token or assertion that is not accepted, with the reason (expired, bad signature...)."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str

    def as_oauth(self) -> dict[str, Any]:
        """The OAuth 2.0 token response (RFC 6749 §5.1)."""
        return {"access_token": self.access_token, "token_type": "Bearer",  # nosec B105
                "expires_in": self.expires_in, "refresh_token": self.refresh_token,
                "scope": self.scope}  # fmt: skip


class TokenService:
    """Issues and checks tokens signed with ``key`` (an Ed25519 private key)."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        issuer: str = "vitaltwin",
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 12 * 3600,
        reuse_grace_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._public = key.public_key()
        self.issuer = issuer
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.reuse_grace_s = reuse_grace_s
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, str] = {}  # family -> the one refresh token id still valid
        self._assertions: dict[str, float] = {}  # client assertion ids seen -> until when
        self._rotated: dict[str, tuple[TokenPair, float]] = {}  # spent id -> its successor

    # -- issue ---------------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="EdDSA")

    def issue(self, who: Identity, *, refresh: bool = True, family: str | None = None) -> TokenPair:
        """A new access token for ``who`` (and a refresh token of session ``family``, new
        unless given)."""
        now = int(self.clock())
        access = self._sign({
            "iss": self.issuer, "aud": self.issuer, "sub": who.subject, "iat": now,
            "exp": now + self.access_ttl_s, "jti": secrets.token_hex(12), "typ": "access",
            "role": who.role, "scope": " ".join(who.scopes), "units": list(who.units),
            "patients": list(who.patients),
        })  # fmt: skip
        # no refresh token for backend clients (not a password)
        refresh_token = ""  # nosec B105
        if refresh:
            fam = family or secrets.token_hex(12)
            jti = secrets.token_hex(12)
            refresh_token = self._sign({
                "iss": self.issuer, "aud": self.issuer, "sub": who.subject, "iat": now,
                "exp": now + self.refresh_ttl_s, "jti": jti, "typ": "refresh", "fam": fam,
            })  # fmt: skip
            with self._lock:
                self._sessions[fam] = jti
        return TokenPair(access, refresh_token, self.access_ttl_s, " ".join(who.scopes))

    # -- check ---------------------------------------------------------------------------------

    def _decode(self, token: str, typ: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._public, algorithms=["EdDSA"], audience=self.issuer,
                issuer=self.issuer,
                # the service's clock decides on time, below (tests, one clock for all)
                options={"require": ["exp", "iat", "sub", "jti"], "verify_exp": False,
                         "verify_iat": False},
            )  # fmt: skip
        except jwt.InvalidSignatureError:
            raise TokenError("token signature invalid") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"token invalid: {exc}") from None
        if claims.get("iat", 0) > self.clock() + 5:
            raise TokenError("token issued in the future")
        if int(claims["exp"]) <= self.clock():
            raise TokenError("token expired")
        if claims.get("typ") != typ:
            raise TokenError(f"not an {typ} token")
        return claims

    def verify(self, token: str) -> Identity:
        """The identity an access token carries (TokenError when it is not valid now)."""
        c = self._decode(token, "access")
        role = ROLES.get(str(c.get("role")))
        if role is None:
            raise TokenError(f"token names an unknown role {c.get('role')!r}")
        return Identity(
            str(c["sub"]), role.name, tuple(str(c.get("scope", "")).split()),
            tuple(c.get("units", ())), tuple(c.get("patients", ())),
            all_patients=role.patients == "all",
        )  # fmt: skip

    def refresh(self, token: str, current: Callable[[str], Identity | None]) -> TokenPair:
        """A new pair for a refresh token, used once; ``current`` gives the subject's identity
        now (None: disabled or removed — the session ends)."""
        c = self._decode(token, "refresh")
        fam, jti = str(c.get("fam")), str(c["jti"])
        now = self.clock()
        with self._lock:
            self._rotated = {k: v for k, v in self._rotated.items() if v[1] > now}
            if jti in self._rotated and fam in self._sessions:
                return self._rotated[jti][0]  # the same rotation asked again at once
            valid = self._sessions.get(fam)
            if valid != jti:
                self._sessions.pop(fam, None)  # a stolen token used twice: end the session
                raise TokenError("refresh token already used or session ended: signed out")
            del self._sessions[fam]
        who = current(str(c["sub"]))
        if who is None:
            raise TokenError(f"{c['sub']} may no longer sign in")
        pair = self.issue(who, family=fam)
        with self._lock:
            self._rotated[jti] = (pair, now + self.reuse_grace_s)
        return pair

    def revoke(self, refresh_token: str) -> None:
        """End the session a refresh token belongs to (sign out)."""
        try:
            c = self._decode(refresh_token, "refresh")
        except TokenError:
            return
        with self._lock:
            self._sessions.pop(str(c.get("fam")), None)

    def check_assertion(self, assertion: str, client_id: str, public_key_pem: str,
                        audience: str) -> None:  # fmt: skip
        """Check a backend client's signed assertion: signed by its registered key, ``iss`` and
        ``sub`` the client, ``aud`` this token endpoint, expiring within 5 minutes, and its
        ``jti`` never seen before (no replay). TokenError says what is wrong."""
        try:
            key = load_pem_public_key(public_key_pem.encode())
            if not isinstance(key, (RSAPublicKey, EllipticCurvePublicKey, Ed25519PublicKey)):
                raise TokenError("client key: RSA, EC or Ed25519 expected")
            c = jwt.decode(
                assertion,
                key,
                algorithms=CLIENT_ALGORITHMS,
                audience=audience,
                options={"require": ["exp", "iss", "sub", "jti"], "verify_exp": False},
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise TokenError(f"client assertion invalid: {exc}") from None
        now = self.clock()
        if float(c["exp"]) <= now:
            raise TokenError("client assertion expired")
        if c["iss"] != client_id or c["sub"] != client_id:
            raise TokenError("client assertion: iss and sub must be the client id")
        if float(c["exp"]) > now + MAX_ASSERTION_S:
            raise TokenError(f"client assertion valid for more than {MAX_ASSERTION_S} s")
        with self._lock:
            self._assertions = {k: v for k, v in self._assertions.items() if v > now}
            if c["jti"] in self._assertions:
                raise TokenError("client assertion replayed (jti seen before)")
            self._assertions[str(c["jti"])] = float(c["exp"])
