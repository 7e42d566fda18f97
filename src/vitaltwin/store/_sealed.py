"""Columns encrypted at rest: AES-256-GCM with synthetic nonces, under one data key per store.

A sealed value is ``vtenc1:`` and base64 of a 12-byte nonce and the AES-256-GCM ciphertext with
its tag; the column's name is the associated data, so a value moved to another column does not
open. The nonce is HMAC-SHA256 of the column and the plaintext under a second key (a synthetic
IV, as in RFC 5297's SIV construction): the same value seals to the same text, which the stores'
duplicate detection needs (a quarantined record sent twice must be counted once), at the price
deterministic encryption always has (equal values are seen to be equal). Both keys are derived
from the data key with HKDF-SHA256 (RFC 5869).

Values without the prefix are read as they are (rows stored before encryption was switched on
stay readable). The data key itself is kept wrapped by a key-encryption key
(:func:`vitaltwin.governance.encrypt_store`), so rotating that key rewrites no data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "vtenc1:"
SEALED: dict[str, tuple[str, ...]] = {"quarantine": ("raw_value",)}
"""The columns kept encrypted: a quarantined record's raw content, which can hold anything a
sender put there (names, addresses, free text) and which nothing reads but people fixing a
feed."""


class SealError(ValueError):
    """A sealed value that does not open (a wrong key, or a damaged value)."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"vitaltwin-" + purpose).derive(key)


class ColumnCipher:
    """Seals and opens text values of the columns in :data:`SEALED` with one data key
    (32 bytes)."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("a data key is 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"column-encryption"))
        self._siv = _derive(data_key, b"column-nonce")

    def seal(self, column: str, value: str | None) -> str | None:
        if value is None or value.startswith(PREFIX):
            return value
        plain = value.encode()
        nonce = hmac.new(self._siv, column.encode() + b"\0" + plain, hashlib.sha256).digest()[:12]
        sealed = nonce + self._aead.encrypt(nonce, plain, column.encode())
        return PREFIX + base64.b64encode(sealed).decode()

    def open(self, column: str, value: str | None) -> str | None:
        if value is None or not value.startswith(PREFIX):
            return value
        try:
            raw = base64.b64decode(value[len(PREFIX) :], validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], column.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError(
                f"a sealed {column} value does not open: the store was encrypted under "
                "another data key, or the value is damaged"
            ) from None
