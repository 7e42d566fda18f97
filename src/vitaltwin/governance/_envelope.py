"""Envelope encryption of a store: one random data key per store encrypts the identifying
columns (:mod:`vitaltwin.store`'s ``SEALED``) and the saved states; the data key is kept in the
store itself, wrapped (AES-256-GCM) by a key-encryption key from a key provider, named in the
envelope. Rotating the key-encryption key unwraps the data key with the old one and wraps it
with the new one: no stored value is rewritten, none can be lost, and the old key can then be
retired. Replacing the data key itself (after a suspected exposure, or on a schedule) re-seals
every value; the envelope keeps the old data key (wrapped) until that is done, so a run cut
short is finished by the next opening and nothing is lost.
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


def _save(store: Store, env: dict[str, str]) -> None:
    store.save_state(ENVELOPE_STATE, json.dumps(env).encode())


def encrypt_store(store: Store, keys: KeyProvider, kek: str = STORE_KEY) -> str:
    """Switch on encryption of the identifying columns and saved states of ``store``: its data
    key unwrapped with the key the envelope names (a new data key wrapped by ``kek`` when the
    store has none yet: what the store already holds is then sealed, once). A data-key
    rotation or a first sealing that was cut short is finished here. Returns the
    key-encryption key's name."""
    env = _envelope(store)
    if env is None:
        env = {"kek": kek, "wrapped": _wrap(keys.key(kek), secrets.token_bytes(32)),
               "sealing": "pending"}  # fmt: skip
        _save(store, env)
    name = env["kek"]
    kek_bytes = keys.key(name)
    cipher = ColumnCipher(_unwrap(kek_bytes, env["wrapped"], name))
    if "sealing" in env or "previous" in env:
        previous = [ColumnCipher(_unwrap(kek_bytes, env["previous"], name))] if (
            "previous" in env) else []  # fmt: skip
        store.reseal(cipher, previous)
        _save(store, {"kek": name, "wrapped": env["wrapped"]})
    else:
        store.encrypt_with(cipher)
    return name


def is_encrypted(store: Store) -> bool:
    """Whether the store holds an envelope (its identifying columns are encrypted)."""
    return _envelope(store) is not None


def rotate_store_key(store: Store, keys: KeyProvider, new: str) -> str:
    """Wrap the store's data key with key ``new`` instead of the current one (read from the
    provider by the name in the envelope); returns the old key's name, which may be retired.
    No stored value is rewritten, so this is safe while the service runs."""
    env = _envelope(store)
    if env is None:
        raise KeyProviderError("this store is not encrypted: nothing to rotate")
    old = env["kek"]
    if old == new:
        raise ValueError(f"the store's data key is already wrapped by {new!r}")
    old_kek, new_kek = keys.key(old), keys.key(new)
    rewrapped = {k: _wrap(new_kek, _unwrap(old_kek, v, old))
                 for k, v in env.items() if k in ("wrapped", "previous")}  # fmt: skip
    _save(store, {**env, "kek": new, **rewrapped})
    return old


def rotate_store_data_key(store: Store, keys: KeyProvider) -> int:
    """Replace the store's data key by a new one: every sealed value and saved state is opened
    with the old and sealed with the new (each column in one transaction; if this is cut
    short, the next :func:`encrypt_store` finishes it, both keys being kept until then).
    Returns how many distinct values were rewritten. Stop the service first."""
    env = _envelope(store)
    if env is None:
        raise KeyProviderError("this store is not encrypted: nothing to rotate")
    name = env["kek"]
    kek_bytes = keys.key(name)
    if "sealing" in env or "previous" in env:
        encrypt_store(store, keys)  # finish the one cut short first
        env = _envelope(store)
        assert env is not None
    old = _unwrap(kek_bytes, env["wrapped"], name)
    new = secrets.token_bytes(32)
    _save(store, {"kek": name, "wrapped": _wrap(kek_bytes, new), "previous": env["wrapped"]})
    n = store.reseal(ColumnCipher(new), [ColumnCipher(old)])
    _save(store, {"kek": name, "wrapped": _wrap(kek_bytes, new)})
    return n
