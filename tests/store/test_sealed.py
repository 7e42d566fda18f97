"""Encryption at rest (both backends): the identifying columns (patient keys, birth dates,
encounter numbers, devices, sources, a quarantined record's raw content) and the saved states
are stored sealed (AES-256-GCM under the store's data key) and read back in clear; a store that
already holds data is sealed when encryption is switched on; a record sent twice is still
counted once; rotating the key-encryption key loses nothing, nor does replacing the data key,
even cut short; a wrong key opens nothing. (Every other store test also runs on an encrypted
store: the ``store`` fixture's ``duckdb-encrypted`` case.)"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pyarrow as pa
import pytest

from vitaltwin.data.schema import OBSERVATIONS, QUARANTINE, observations_table
from vitaltwin.governance import (
    EnvironmentKeys,
    KeyProviderError,
    encrypt_store,
    is_encrypted,
    rotate_store_data_key,
    rotate_store_key,
)
from vitaltwin.interop.hl7v2 import convert_text
from vitaltwin.store import SEALED, TABLES, ColumnCipher, SealError, Store

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


@pytest.mark.parametrize("store", ["duckdb", "postgresql"], indirect=True)
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
    (stored,) = store._db_table("quarantine").column("raw_value").to_pylist()
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


ADT = (
    "MSH|^~\\&|ADT|H|VT|H|20261120100000+0000||ADT^{event}|{cid}|P|2.5\r"
    "PID|1||{pid}^^^H^MR||Roe^Ann||19500101|{sex}\r"
    "{extra}"
    "PV1|1|I|ICU^1^1||||||||||||||||V77|||||||||||||||||||||||||20261118080000+0000|\r"
)
SECRETS = ("MRN4471", "TMP1", "V77", "1950-01-01", "MON-ICU-7", "Roe_Ann.hl7", "Greenfelder")


def _record(store: Store) -> None:
    """A patient admitted, updated and merged (HL7 ADT), with monitor values from a named
    device and a quarantined record: every identifying column of the record holds something."""
    for event, cid, pid, sex, extra in [
        ("A01", "A1", "TMP1", "F", ""),
        ("A08", "A2", "TMP1", "M", ""),
        ("A40", "A3", "MRN4471", "M", "MRG|TMP1^^^H^MR\r"),
    ]:
        msg = ADT.format(event=event, cid=cid, pid=pid, sex=sex, extra=extra)
        store.ingest_record(convert_text(msg, "Roe_Ann.hl7"))
    t0, us = 1_795_000_000_000_000, pa.timestamp("us", "UTC")
    obs = observations_table({
        "patient_id": ["TMP1", "MRN4471", "MRN4471"],
        "effective_time": pa.array([t0, t0 + 60_000_000, t0 + 120_000_000], us),
        "loinc": ["8867-4"] * 3, "value": [88.0, 92.0, 95.0], "unit": ["/min"] * 3,
        "source": ["Roe_Ann.hl7"] * 3, "position": ["1", "2", "3"],
        "device": ["MON-ICU-7"] * 3,
        "received_time": pa.array([t0] * 3, us),
        "quality": [None] * 3,
    })  # fmt: skip
    store.ingest(obs, QUARANTINE.empty_table(), 3)
    _quarantine(store)
    store.save_state("twins", b"checkpoint of MRN4471")
    store.set_research_consent("MRN4471", allowed=False)


def _reads(store: Store) -> dict[str, object]:
    """What the library reads: whole tables (in key order of their clear values) and the
    queries the service and the twin make."""
    tables = {t: sorted(map(repr, store.table(t).to_pylist())) for t in TABLES}
    return {
        **tables,
        "observations(MRN4471)": store.observations("MRN4471").to_pylist(),
        "patients": store.patients("MRN4471").to_pylist(),
        "encounters": store.encounters("MRN4471").to_pylist(),
        "events": store.patient_events("MRN4471").to_pylist(),
        "merged": store.merged(),
        "state": store.load_state("twins")[0],  # type: ignore[index]
        "excluded": store.research_excluded(),
    }


def _stored_values(store: Store) -> str:
    """Everything the database holds in the sealed columns and states, as stored."""
    out = []
    for t in TABLES:
        for col in SEALED[t]:
            out += store._db_distinct(t, col)
    for key in store._db_state_keys():
        saved = store._db_load_state(key)
        assert saved is not None
        out.append(saved[0].decode(errors="replace"))
    return "\n".join(out)


@pytest.mark.parametrize("store", ["duckdb", "postgresql"], indirect=True)
def test_identifying_columns_are_sealed_and_every_read_finds_the_same(store: Store) -> None:
    keys = _keys(store_kek=secrets.token_bytes(32))
    _record(store)
    clear = _reads(store)
    assert clear["merged"] == {"TMP1": "MRN4471"}
    assert [r["value"] for r in clear["observations(MRN4471)"]] == [88.0, 92.0, 95.0]  # type: ignore[attr-defined]
    held = _stored_values(store)
    assert all(s in held for s in SECRETS)  # the scan below sees them when they are there
    encrypt_store(store, keys)  # a store holding data: sealed now, once
    assert _reads(store) == clear
    held = _stored_values(store)
    assert not [s for s in SECRETS if s in held], held
    # new data under encryption: sealed too, duplicates still counted once, updates applied
    again = convert_text(ADT.format(event="A08", cid="A4", pid="MRN4471", sex="F", extra=""), "x")
    store.ingest_record(again)
    assert store.patients("MRN4471").column("sex").to_pylist() == ["female"]
    assert _quarantine(store).duplicates == 1  # type: ignore[attr-defined]
    # a reopened store reads the same with the key, and nothing without it
    encrypt_store(store, keys)
    assert store.observations("MRN4471").to_pylist() == clear["observations(MRN4471)"]
    store.encrypt_with(None)
    with pytest.raises(SealError, match=r"patients\.patient_id is encrypted"):
        store.observations("MRN4471")
    with pytest.raises(SealError, match="encrypted"):
        store.load_state("twins")


@pytest.mark.parametrize("store", ["duckdb", "postgresql"], indirect=True)
def test_replacing_the_data_key_loses_nothing_even_cut_short(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _keys(store_kek=secrets.token_bytes(32))
    encrypt_store(store, keys)
    _record(store)
    before, held = _reads(store), _stored_values(store)
    sealed_key = store._db_distinct("observations", "patient_id")[0]
    old = store._cipher
    assert old is not None
    # cut short after three columns: the store holds values under both keys
    rewrite, done = store._db_rewrite, list[object]()

    def crash_after_three(*args: object) -> None:
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(args)
        rewrite(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_db_rewrite", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        rotate_store_data_key(store, keys)
    monkeypatch.undo()
    assert encrypt_store(store, keys) == "store-kek"  # the next opening finishes it
    assert _reads(store) == before
    after = _stored_values(store)
    assert after != held and not [s for s in SECRETS if s in after]
    with pytest.raises(SealError):  # the old data key opens nothing any more
        old.open("patient_id", store._db_distinct("observations", "patient_id")[0])
    assert old.open("patient_id", sealed_key) in ("MRN4471", "TMP1")  # (it did before)
    assert rotate_store_data_key(store, keys) > 0  # an uninterrupted one
    assert _reads(store) == before
