"""Quarantine entries are identified by their content: distinct bad records never merge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vitaltwin.interop.hl7v2 import convert_text
from vitaltwin.store import DuckDBStore, Store

HEAD = (
    "MSH|^~\\&|MON|ICU|VT|H|20261122083000||ORU^R01|MSG{n}|P|2.5\r"
    "PID|1||PAT42^^^H^MR||Doe^Jane||19600101|F\r"
    "OBR|1|||VITALS|||20261122083000+0100\r"
)


def _oru(n: int, *values: str) -> str:
    """One message whose OBX segments all carry set id 1 (senders do this)."""
    obx = "".join(
        f"OBX|1|NM|8867-4^Heart rate^LN||{v}|/min|||||F|||20261122083000+0100\r" for v in values
    )
    return HEAD.format(n=n) + obx


def test_three_obx_with_set_id_1_are_three_entries(store: Store) -> None:
    rec = convert_text(_oru(1, "400", "500", "abc"), "feed.hl7")
    assert rec.quarantine.num_rows == 3
    c = store.ingest_record(rec)
    assert (c.stored, c.quarantined, c.duplicates) == (0, 3, 0)
    again = store.ingest_record(convert_text(_oru(1, "400", "500", "abc"), "feed.hl7"))
    assert (again.quarantined, again.duplicates) == (0, 3)  # the same records: duplicates


def test_a_rotated_file_reusing_its_path_keeps_its_new_bad_records(store: Store) -> None:
    store.ingest_record(convert_text(_oru(1, "400"), "monitor.hl7"))
    rotated = store.ingest_record(convert_text(_oru(1, "450"), "monitor.hl7"))
    assert (rotated.quarantined, rotated.duplicates) == (1, 0)
    assert store.count("quarantine") == 2


def test_a_second_process_on_a_duckdb_store_is_told_who_holds_it(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s"):
        code = (
            "from vitaltwin.store import DuckDBStore, StoreInUseError\n"
            "try:\n"
            f"    DuckDBStore({str(tmp_path / 's')!r})\n"
            "except StoreInUseError as e:\n"
            "    print(e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == ""
    assert "open in another process" in out.stdout and "PID" in out.stdout
    assert "PostgreSQL" in out.stdout


def test_the_store_folder_and_database_are_the_owners_only(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s"):
        assert ((tmp_path / "s").stat().st_mode & 0o077) == 0
        assert ((tmp_path / "s" / "vitaltwin.duckdb").stat().st_mode & 0o077) == 0
