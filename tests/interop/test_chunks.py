"""Reading a file in parts stores the same record as reading it whole (memory stays bounded)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vitaltwin.interop import read_any, read_chunks
from vitaltwin.store import DuckDBStore

SET_A = Path(__file__).resolve().parents[3] / "shared" / "data" / "physionet2019"
KEPT = ("observations", "quarantine", "patients", "encounters", "labels")


def _same_store(tmp_path: Path, path: Path, rows: int) -> int:
    """Ingest ``path`` whole and in parts of ``rows``; assert equal tables; return the parts."""
    parts = list(read_chunks(path, rows=rows))
    with DuckDBStore(tmp_path / "whole") as a, DuckDBStore(tmp_path / "parts") as b:
        a.ingest_record(read_any(path))
        for rec in parts:
            b.ingest_record(rec)
        for t in KEPT:
            x, y = a.table(t).to_pandas(), b.table(t).to_pandas()
            cols = [c for c in x.columns if c != "received_time"]
            x = x[cols].sort_values(cols[:4]).reset_index(drop=True)
            y = y[cols].sort_values(cols[:4]).reset_index(drop=True)
            pd.testing.assert_frame_equal(x, y, obj=t)
    return len(parts)


def test_a_stream_in_parts(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    rows = ["patient_id,time,code,value,unit"]
    rows += [f"p{i % 7},{1_764_000_000 + i * 30},HR,{50 + i % 90},/min" for i in range(2500)]
    rows += ["p1,not a time,HR,80,/min", "p2,1764000000,HR,999,/min"]
    path.write_text("\n".join(rows) + "\n")
    assert _same_store(tmp_path, path, rows=400) == 7


def test_ndjson_in_parts(tmp_path: Path) -> None:
    path = tmp_path / "obs.ndjson"
    lines = []
    for i in range(900):
        lines.append(
            json.dumps(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/p{i % 5}"},
                    "effectiveDateTime": f"2026-11-22T08:{i // 60:02d}:{i % 60:02d}Z",
                    "valueQuantity": {"value": 60 + i % 40, "unit": "/min", "code": "/min"},
                }
            )
        )
    lines.insert(10, "[1, 2]")
    path.write_text("\n".join(lines) + "\n")
    assert _same_store(tmp_path, path, rows=250) == 4


@pytest.mark.slow
@pytest.mark.skipif(not (SET_A / "training_setA.parquet").exists(), reason="no shared set A")
def test_set_a_parquet_in_parts(tmp_path: Path) -> None:
    df = pd.read_parquet(SET_A / "training_setA.parquet")
    df[df.patient_id.isin(df.patient_id.unique()[:400])].to_parquet(tmp_path / "a.parquet")
    # parts of 1,000 rows split stays between parts: patients and encounters still come out whole
    assert _same_store(tmp_path, tmp_path / "a.parquet", rows=1000) > 10
