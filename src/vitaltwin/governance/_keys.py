"""Where secret keys come from: a small interface with a file and an environment provider.

Every key is 32 random bytes, named by its use (``token-signing``, ``audit-signing``, ...).
Signing keys are Ed25519 private keys made from those bytes (RFC 8032's seed), so one kind of
secret serves every use and a provider never needs to know what a key is for. Key files are
created owner-only (``0600`` in a ``0700`` folder); a provider never logs a key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

KEY_BYTES = 32


class KeyProviderError(LookupError):
    """A key that is missing or malformed (names the key and where it was looked for)."""


class KeyProvider(Protocol):
    """Gives the 32 bytes of a named key."""

    def key(self, name: str) -> bytes: ...


def _check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"key name {name!r}: letters, digits, '-' and '_' only")
    return name


def _decode(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyProviderError(f"{where}: not base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyProviderError(f"{where}: {len(raw)} bytes, not {KEY_BYTES}")
    return raw


class FileKeys:
    """Keys in files ``<folder>/<name>.key`` (base64). With ``create``, a missing key is made
    (random, owner-only) on first use: for development and single-machine installs; a
    hospital's key management puts the files there instead, or uses :class:`EnvironmentKeys`."""

    def __init__(self, folder: Path, *, create: bool = False) -> None:
        self.folder = Path(folder)
        self.create = create

    def key(self, name: str) -> bytes:
        path = self.folder / f"{_check_name(name)}.key"
        if not path.exists():
            if not self.create:
                raise KeyProviderError(f"key {name!r}: no file {path}")
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
        return _decode(path.read_text(encoding="ascii"), f"key file {path}")


class EnvironmentKeys:
    """Keys in the environment: ``VITALTWIN_KEY_<NAME>`` (``-`` as ``_``, upper case; base64)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = environ if environ is not None else dict(os.environ)

    def key(self, name: str) -> bytes:
        var = "VITALTWIN_KEY_" + _check_name(name).replace("-", "_").upper()
        if var not in self.environ:
            raise KeyProviderError(f"key {name!r}: environment variable {var} is not set")
        return _decode(self.environ[var], f"environment variable {var}")


def signing_key(keys: KeyProvider, name: str) -> Ed25519PrivateKey:
    """The Ed25519 private key made from key ``name``."""
    return Ed25519PrivateKey.from_private_bytes(keys.key(name))


def public_key(keys: KeyProvider, name: str) -> Ed25519PublicKey:
    """The public half of :func:`signing_key`."""
    return signing_key(keys, name).public_key()
