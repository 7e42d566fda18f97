"""Identifying fields encrypted at rest: AES-256-GCM with synthetic nonces, under one data key
per store.

A sealed value is ``vtenc1:`` and base64 of a 12-byte nonce and the AES-256-GCM ciphertext with
its tag; the column's name is the associated data, so a value moved to another column does not
open (the patient key is one column, ``patient_id``, in every table, so joins still match). The
nonce is HMAC-SHA256 of the column and the plaintext under a second key (a synthetic IV, as in
RFC 5297's SIV construction): the same value seals to the same text. That is what lets the
store keep working on sealed columns — a patient's rows are found by sealing the key asked for,
a record sent twice is still counted once, a merge or a correction still finds its rows — at
the price deterministic encryption always has: equal values are seen to be equal (not what they
are). Sealed columns support equality only; ranges and ordering are done after opening. Both
keys are derived from the data key with HKDF-SHA256 (RFC 5869).

Values without the prefix are read as they are: a store made before encryption was switched on
is re-sealed once when it is (:meth:`vitaltwin.store.Store.reseal`). The data key itself is kept
wrapped by a key-encryption key (:func:`vitaltwin.governance.encrypt_store`), so rotating that key
rewrites no data; replacing the data key re-seals every value (``rotate_store_data_key``).

Saved service states (the twins' checkpoint, the alert log, consent) are sealed whole, with a
random nonce and the state's key as associated data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "vtenc1:"
STATE_PREFIX = b"vtenc1:"
_PATIENT = ("patient_id",)
SEALED: dict[str, tuple[str, ...]] = {
    "observations": (*_PATIENT, "source", "device"),
    "quarantine": ("source", "raw_value"),
    "patients": (*_PATIENT, "birth_date", "source", "merged_into"),
    "labels": (*_PATIENT, "source"),
    "encounters": ("encounter_id", *_PATIENT, "source"),
    "conditions": (*_PATIENT, "source"),
    "medications": (*_PATIENT, "source"),
    "waveforms": (*_PATIENT, "source"),
    "patient_events": (
        *_PATIENT, "encounter_id", "prior_patient_id", "birth_date", "source"
    ),
}  # fmt: skip
"""The identifying columns, kept encrypted when the store is (HIPAA Safe Harbor's identifiers
the record holds): patient keys (medical record numbers, FHIR ids, and the keys merged away),
encounter (visit, account) numbers, birth dates, device identifiers, where a record came from
(file names and message ids, which can carry a name: Synthea names its files after the patient),
and a quarantined record's raw content (whatever a sender put there). Codes, values, times,
units and locations stay in clear: they are what the store selects and sorts by."""

PLAIN_STATES = frozenset({"encryption"})
"""Saved states never sealed: the envelope that holds the wrapped data key."""


class SealError(ValueError):
    """A sealed value that does not open (a wrong key, or a damaged value)."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"vitaltwin-" + purpose).derive(key)


class ColumnCipher:
    """Seals and opens text values of the columns in :data:`SEALED`, and saved states, with
    one data key (32 bytes). Deterministic, so recent results are remembered (bounded): a
    ward's patient keys are sealed once, not at every read."""

    _CACHE = 200_000

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("a data key is 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"column-encryption"))
        self._siv = _derive(data_key, b"column-nonce")
        self._states = AESGCM(_derive(data_key, b"state-encryption"))
        self._sealed: dict[tuple[str, str], str] = {}
        self._opened: dict[tuple[str, str], str] = {}

    def seal(self, column: str, value: str | None) -> str | None:
        if value is None or value.startswith(PREFIX):
            return value
        got = self._sealed.get((column, value))
        if got is None:
            plain = value.encode()
            mac = hmac.new(self._siv, column.encode() + b"\0" + plain, hashlib.sha256)
            nonce = mac.digest()[:12]
            sealed = nonce + self._aead.encrypt(nonce, plain, column.encode())
            got = PREFIX + base64.b64encode(sealed).decode()
            self._remember(self._sealed, (column, value), got)
            self._remember(self._opened, (column, got), value)
        return got

    def open(self, column: str, value: str | None) -> str | None:
        if value is None or not value.startswith(PREFIX):
            return value
        got = self._opened.get((column, value))
        if got is None:
            try:
                raw = base64.b64decode(value[len(PREFIX) :], validate=True)
                got = self._aead.decrypt(raw[:12], raw[12:], column.encode()).decode()
            except (InvalidTag, binascii.Error, ValueError):
                raise SealError(
                    f"a sealed {column} value does not open: the store was encrypted under "
                    "another data key, or the value is damaged"
                ) from None
            self._remember(self._opened, (column, value), got)
        return got

    def _remember(self, cache: dict[tuple[str, str], str], key: tuple[str, str], v: str) -> None:
        if len(cache) >= self._CACHE:
            cache.clear()
        cache[key] = v

    def seal_column(self, column: str, values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
        """:meth:`seal` of every value of a string column, each distinct value once."""
        return _each_distinct(values, lambda v: self.seal(column, v))

    def open_column(self, column: str, values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
        """:meth:`open` of every value of a string column, each distinct value once."""
        return _each_distinct(values, lambda v: self.open(column, v))

    def seal_state(self, key: str, data: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return STATE_PREFIX + nonce + self._states.encrypt(nonce, data, key.encode())

    def open_state(self, key: str, data: bytes) -> bytes:
        if not data.startswith(STATE_PREFIX):
            return data
        raw = data[len(STATE_PREFIX) :]
        try:
            return self._states.decrypt(raw[:12], raw[12:], key.encode())
        except InvalidTag:
            raise SealError(
                f"the saved state {key!r} does not open: it was sealed under another data key, "
                "or it is damaged"
            ) from None


def _each_distinct(
    values: pa.ChunkedArray | pa.Array, do: Callable[[str | None], str | None]
) -> pa.ChunkedArray:
    """``do`` of every value of a string column, called once per distinct value."""
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values], pa.string())
    if len(values) == 0:
        return pa.chunked_array([], pa.string())
    coded = pc.dictionary_encode(values.combine_chunks())
    mapped = pa.array([do(v) for v in coded.dictionary.to_pylist()], pa.string())
    return pa.chunked_array([pc.take(mapped, coded.indices)], pa.string())
