"""A store made before versions, comparators and methods opens and is migrated once."""

from __future__ import annotations

from pathlib import Path

import duckdb

from vitaltwin.store import DuckDBStore


def test_an_older_duckdb_store_gains_the_new_columns(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    con = duckdb.connect(str(tmp_path / "s" / "vitaltwin.duckdb"))
    con.execute(
        "CREATE TABLE observations (patient_id VARCHAR NOT NULL, effective_time TIMESTAMPTZ NOT "
        "NULL, loinc VARCHAR NOT NULL, value DOUBLE NOT NULL, unit VARCHAR NOT NULL, source "
        "VARCHAR NOT NULL, position VARCHAR NOT NULL, device VARCHAR, received_time TIMESTAMPTZ "
        "NOT NULL, quality VARCHAR)"
    )
    con.execute(
        "CREATE TABLE quarantine (source VARCHAR NOT NULL, position VARCHAR NOT NULL, field "
        "VARCHAR NOT NULL, raw_value VARCHAR, reason VARCHAR NOT NULL, received_time TIMESTAMPTZ "
        "NOT NULL)"
    )
    con.execute(
        "INSERT INTO observations VALUES ('p1', '2026-11-22 08:00:00+00', '8867-4', 80, '/min', "
        "'f', 'line 2', NULL, '2026-11-22 08:01:00+00', NULL)"
    )
    con.execute("INSERT INTO quarantine VALUES ('f', 'line 3', 'value', NULL, 'why', now())")
    con.close()
    with DuckDBStore(tmp_path / "s") as st:
        row = st.observations("p1").to_pylist()[0]
        assert (row["comparator"], row["status"], row["method"]) == ("=", "final", None)
        assert st.table("quarantine")["raw_value"].to_pylist() == [""]
    with DuckDBStore(tmp_path / "s") as st:  # opened again: nothing left to migrate
        assert st.count("observations") == 1


def test_older_patients_and_encounters_gain_the_merge_status_and_location(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    con = duckdb.connect(str(tmp_path / "s" / "vitaltwin.duckdb"))
    con.execute(
        "CREATE TABLE encounters (encounter_id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, "
        "start_time TIMESTAMPTZ, end_time TIMESTAMPTZ, kind VARCHAR, source VARCHAR NOT NULL)"
    )
    con.execute("INSERT INTO encounters VALUES ('V1', 'p1', NULL, NULL, 'ICU', 'f')")
    con.close()
    with DuckDBStore(tmp_path / "s") as st:
        row = st.encounters("p1").to_pylist()[0]
        assert (row["encounter_id"], row["status"], row["location"]) == ("V1", None, None)
        assert st.patient_events().num_rows == 0
