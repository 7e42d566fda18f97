"""Envelope encryption of a store: one random data key per store encrypts the sealed columns
(:mod:`vitaltwin.store`'s ``SEALED``); the data key is kept in the store itself, wrapped
(AES-256-GCM) by a key-encryption key from a key provider, named in the envelope. Rotating the
key-encryption key unwraps the data key with the old one and wraps it with the new one: no
stored value is rewritten, none can be lost, and the old key can then be retired.
"""

from __future__ import annotations

import base64
import json
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vitaltwin.governance._keys import KeyProvider, KeyProviderError
from vitaltwin.store import ColumnCipher, Store

ENVELOPE_STATE = "encryption"
"""The store state key of the wrapped data key."""
STORE_KEY = "store-kek"
"""The default name of the key-encryption key."""
_AAD = b"vitaltwin-store-data-key"


def _wrap(kek: bytes, data_key: bytes) -> str:
    nonce = secrets.token_bytes(12)
    return base64.b64encode(nonce + AESGCM(kek).encrypt(nonce, data_key, _AAD)).decode()


def _unwrap(kek: bytes, wrapped: str, name: str) -> bytes:
    raw = base64.b64decode(wrapped)
    try:
        return AESGCM(kek).decrypt(raw[:12], raw[12:], _AAD)
    except InvalidTag:
        raise KeyProviderError(f"key {name!r} does not unwrap this store's data key") from None


def _envelope(store: Store) -> dict[str, str] | None:
    saved = store.load_state(ENVELOPE_STATE)
    if saved is None:
        return None
    doc: dict[str, str] = json.loads(saved[0])
    return doc


def encrypt_store(store: Store, keys: KeyProvider, kek: str = STORE_KEY) -> str:
    """Switch on encryption of the sealed columns of ``store``: its data key unwrapped with the
    key the envelope names (a new data key wrapped by ``kek`` when the store has none yet).
    Returns the key-encryption key's name."""
    env = _envelope(store)
    if env is None:
        data_key = secrets.token_bytes(32)
        store.save_state(ENVELOPE_STATE, json.dumps(
            {"kek": kek, "wrapped": _wrap(keys.key(kek), data_key)}).encode())  # fmt: skip
        name = kek
    else:
        name = env["kek"]
        data_key = _unwrap(keys.key(name), env["wrapped"], name)
    store.encrypt_with(ColumnCipher(data_key))
    return name


def is_encrypted(store: Store) -> bool:
    """Whether the store holds an envelope (its sealed columns are encrypted)."""
    return _envelope(store) is not None


def rotate_store_key(store: Store, keys: KeyProvider, new: str) -> str:
    """Wrap the store's data key with key ``new`` instead of the current one (read from the
    provider by the name in the envelope); returns the old key's name, which may be retired."""
    env = _envelope(store)
    if env is None:
        raise KeyProviderError("this store is not encrypted: nothing to rotate")
    old = env["kek"]
    if old == new:
        raise ValueError(f"the store's data key is already wrapped by {new!r}")
    data_key = _unwrap(keys.key(old), env["wrapped"], old)
    store.save_state(ENVELOPE_STATE, json.dumps(
        {"kek": new, "wrapped": _wrap(keys.key(new), data_key)}).encode())  # fmt: skip
    return old
