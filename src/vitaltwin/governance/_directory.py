"""The directory of who may connect: users (argon2id password hashes), backend clients (their
public keys, for SMART backend services' ``private_key_jwt``) and devices (API keys).

Kept in one JSON file created owner-only and replaced atomically on every change. Passwords
are hashed with argon2id (RFC 9106; argon2-cffi's defaults, rehashed when those change).
Device API keys are 32 random bytes shown once; only their SHA-256 is kept (a key that random
needs no slow hash, and a device may call many times a second).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vitaltwin.governance._roles import ROLES, SCOPE, Identity, identity_for

_HASHER = PasswordHasher()  # argon2id, RFC 9106's second recommended parameters
MIN_PASSWORD = 12
"""Characters a password needs at least (NIST SP 800-63B asks for 8; we ask for more)."""


class DirectoryError(ValueError):
    """A directory change that cannot be made (names what and why)."""


@dataclass
class User:
    name: str
    role: str
    password_hash: str
    units: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    disabled: bool = False

    def identity(self) -> Identity:
        return identity_for(self.name, self.role, units=tuple(self.units),
                            patients=tuple(self.patients))  # fmt: skip


@dataclass
class Client:
    """A backend client: its public key (PEM) and the scopes it was registered with."""

    client_id: str
    public_key_pem: str
    scopes: list[str]
    disabled: bool = False

    def identity(self) -> Identity:
        return identity_for(self.client_id, "system", scopes=tuple(self.scopes))


@dataclass
class Device:
    device_id: str
    key_sha256: str
    disabled: bool = False

    def identity(self) -> Identity:
        return identity_for(self.device_id, "device")


_DUMMY = _HASHER.hash(secrets.token_hex(16))  # verified against for unknown users (timing)


class Directory:
    """Users, clients and devices in the JSON file at ``path`` (created when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.users: dict[str, User] = {}
        self.clients: dict[str, Client] = {}
        self.devices: dict[str, Device] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            self.users = {k: User(**v) for k, v in doc.get("users", {}).items()}
            self.clients = {k: Client(**v) for k, v in doc.get("clients", {}).items()}
            self.devices = {k: Device(**v) for k, v in doc.get("devices", {}).items()}
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise DirectoryError(
                f"directory {self.path}: not a vitaltwin directory ({exc})"
            ) from None

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "users": {k: asdict(v) for k, v in self.users.items()},
            "clients": {k: asdict(v) for k, v in self.clients.items()},
            "devices": {k: asdict(v) for k, v in self.devices.items()},
        }
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, self.path)

    # -- users -------------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        role: str,
        password: str,
        *,
        units: tuple[str, ...] = (),
        patients: tuple[str, ...] = (),
    ) -> User:
        """Add or replace a user (the password is kept only as its argon2id hash)."""
        if not name or not name.isprintable() or len(name) > 128:
            raise DirectoryError(f"user name {name!r}: 1-128 printable characters")
        if role not in ROLES or role in ("device", "system"):
            people = [r for r in ROLES if r not in ("device", "system")]
            raise DirectoryError(f"user {name}: role {role!r} is not one of {', '.join(people)}")
        if len(password) < MIN_PASSWORD:
            raise DirectoryError(
                f"user {name}: a password needs {MIN_PASSWORD} characters at least"
            )
        user = User(name, role, _HASHER.hash(password), list(units), list(patients))
        with self._lock:
            self.users[name] = user
            self._save()
        return user

    def assign(self, name: str, *, units: tuple[str, ...], patients: tuple[str, ...]) -> User:
        """Set a user's units and care-team patients."""
        with self._lock:
            user = self._user(name)
            user.units, user.patients = list(units), list(patients)
            self._save()
        return user

    def disable(self, name: str) -> None:
        """Stop a user, client or device from signing in (kept for the audit trail)."""
        with self._lock:
            found = self.users.get(name) or self.clients.get(name) or self.devices.get(name)
            if found is None:
                raise DirectoryError(f"no user, client or device {name!r}")
            found.disabled = True
            self._save()

    def _user(self, name: str) -> User:
        if name not in self.users:
            raise DirectoryError(f"no user {name!r}")
        return self.users[name]

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs and they are enabled; None otherwise (as slow
        for an unknown name as for a wrong password)."""
        user = self.users.get(name)
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _HASHER.check_needs_rehash(user.password_hash):
            with self._lock:
                user.password_hash = _HASHER.hash(password)
                self._save()
        return user

    def current(self, subject: str) -> Identity | None:
        """The identity of an enabled user, client or device now (refreshing a token asks:
        a role or assignment changed since sign-in takes effect at the next refresh)."""
        for table in (self.users, self.clients, self.devices):
            found = table.get(subject)
            if found is not None:
                return None if found.disabled else found.identity()
        return None

    # -- backend clients and devices -----------------------------------------------------------

    def add_client(self, client_id: str, public_key_pem: str, scopes: tuple[str, ...]) -> Client:
        """Register a backend client (SMART backend services) by its public key."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            load_pem_public_key(public_key_pem.encode())
        except ValueError as exc:
            raise DirectoryError(f"client {client_id}: not a PEM public key ({exc})") from None
        bad = [s for s in scopes if SCOPE.fullmatch(s) is None or not s.startswith("system/")]
        if bad or not scopes:
            raise DirectoryError(f"client {client_id}: system/ scopes needed, not {bad or '[]'}")
        client = Client(client_id, public_key_pem, list(scopes))
        with self._lock:
            self.clients[client_id] = client
            self._save()
        return client

    def add_device(self, device_id: str) -> str:
        """Register a device; returns its API key (``<device_id>.<secret>``), shown only now."""
        if not device_id or "." in device_id or not device_id.isprintable():
            raise DirectoryError(f"device id {device_id!r}: printable, without '.'")
        secret = secrets.token_urlsafe(32)
        key = f"{device_id}.{secret}"
        with self._lock:
            self.devices[device_id] = Device(device_id, hashlib.sha256(key.encode()).hexdigest())
            self._save()
        return key

    def device(self, api_key: str) -> Device | None:
        """The enabled device whose API key this is."""
        device_id = api_key.split(".", 1)[0]
        found = self.devices.get(device_id)
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        if found is None or found.disabled or not hmac.compare_digest(digest, found.key_sha256):
            return None
        return found
