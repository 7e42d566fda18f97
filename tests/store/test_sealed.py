"""Encryption at rest (both backends): a quarantined record's raw content is stored sealed
(AES-256-GCM under the store's data key), read back in clear, still counted once when sent
twice; rotating the key-encryption key loses nothing; a wrong key opens nothing."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pyarrow as pa
import pytest

from vitaltwin.data.schema import OBSERVATIONS, QUARANTINE
from vitaltwin.governance import (
    EnvironmentKeys,
    KeyProviderError,
    encrypt_store,
    is_encrypted,
    rotate_store_key,
)
from vitaltwin.store import ColumnCipher, SealError, Store

RAW = "PID|1||MRN4471^^^H||Greenfelder433^Denis399||19651117|M|||1 Main St^^Boston^MA^02139"


def _keys(**named: bytes) -> EnvironmentKeys:
    return EnvironmentKeys({f"VITALTWIN_KEY_{k.upper()}": base64.b64encode(v).decode()
                            for k, v in named.items()})  # fmt: skip


def _quarantine(store: Store) -> object:
    bad = pa.table({"source": ["feed.hl7"], "position": ["message 7"], "field": ["PID-7"],
                    "raw_value": [RAW], "reason": ["birth date in the future"],
                    "received_time": pa.array([0], pa.timestamp("us", "UTC"))},
                   schema=QUARANTINE)  # fmt: skip
    return store.ingest(OBSERVATIONS.empty_table(), bad, 1)


def test_quarantined_raw_content_is_sealed_at_rest_and_rotation_loses_nothing(
    store: Store,
) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    keys = _keys(store_kek=old, next=new)
    assert not is_encrypted(store)
    assert encrypt_store(store, keys) == "store-kek" and is_encrypted(store)
    assert _quarantine(store).quarantined == 1  # type: ignore[attr-defined]
    assert _quarantine(store).duplicates == 1  # type: ignore[attr-defined]  # the same, once
    assert store.table("quarantine").column("raw_value").to_pylist() == [RAW]
    batches = [b.column("raw_value").to_pylist() for b in store.batches("quarantine")]
    assert batches == [[RAW]]
    # what the database holds: sealed, none of the identifying content
    store.encrypt_with(None)
    (stored,) = store.table("quarantine").column("raw_value").to_pylist()
    assert stored.startswith("vtenc1:") and "Greenfelder" not in stored and "02139" not in stored
    # rotation: the data key re-wrapped under the new key; the old key can be retired
    assert rotate_store_key(store, keys, "next") == "store-kek"
    assert encrypt_store(store, _keys(next=new)) == "next"
    assert store.table("quarantine").column("raw_value").to_pylist() == [RAW]
    with pytest.raises(KeyProviderError):  # only the retired key: it no longer opens the store
        encrypt_store(store, _keys(store_kek=old))
    with pytest.raises(KeyProviderError, match="does not unwrap"):
        encrypt_store(store, _keys(next=secrets.token_bytes(32)))
    # a wrong data key opens nothing (and says so)
    store.encrypt_with(ColumnCipher(secrets.token_bytes(32)))
    with pytest.raises(SealError, match="does not open"):
        store.table("quarantine")


def test_sealed_values_are_bound_to_their_column() -> None:
    c = ColumnCipher(secrets.token_bytes(32))
    sealed = c.seal("raw_value", RAW)
    assert sealed is not None and c.seal("raw_value", RAW) == sealed  # deterministic
    assert c.open("raw_value", sealed) == RAW
    with pytest.raises(SealError):
        c.open("reason", sealed)  # moved to another column: does not open
    assert c.open("raw_value", "plain, stored before encryption") == (
        "plain, stored before encryption"
    )


def test_the_rotation_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vitaltwin.cli import app
    from vitaltwin.governance import FileKeys
    from vitaltwin.store import DuckDBStore

    env = {"VITALTWIN_SECURITY_DIR": str(tmp_path / "sec")}
    args = ["keys", "rotate-store", "--to", "kek-2026", "--store", str(tmp_path / "s")]
    with DuckDBStore(tmp_path / "s") as st:
        _quarantine(st)
    got = CliRunner().invoke(app, args, env=env)
    assert got.exit_code == 2 and "not encrypted" in got.output  # nothing to rotate yet
    keys = FileKeys(tmp_path / "sec" / "keys", create=True)
    with DuckDBStore(tmp_path / "s") as st:
        encrypt_store(st, keys)
    got = CliRunner().invoke(app, args, env=env)
    assert got.exit_code == 0, got.output
    (tmp_path / "sec" / "keys" / "store-kek.key").unlink()  # the old key retired
    with DuckDBStore(tmp_path / "s") as st:
        assert encrypt_store(st, keys) == "kek-2026"
        assert st.table("quarantine").column("raw_value").to_pylist() == [RAW]
