"""Read files in any supported format, store them, read them back (hospital IT, data science).

Run: ``python examples/ingest_and_read.py [FILES_OR_FOLDERS...]`` (default: the test fixtures).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from vitaltwin.interop import ReadError, input_files, read_any
from vitaltwin.store import DuckDBStore

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def main(paths: list[Path]) -> None:
    with tempfile.TemporaryDirectory() as tmp, DuckDBStore(Path(tmp) / "store") as store:
        for f in input_files(paths):
            try:
                counts = store.ingest_record(read_any(f))
            except ReadError as exc:  # a file that cannot be read at all: named, with the reason
                print(f"rejected: {exc}")
                continue
            print(f"{f.name}: stored {counts.stored}, quarantined {counts.quarantined}")
        patients = store.patients().column("patient_id").to_pylist()
        first = patients[0]
        heart_rate = store.observations(first, loinc="8867-4").to_pandas()
        print(f"{len(patients)} patients; {first}: {len(heart_rate)} heart rates")
        print(heart_rate[["effective_time", "value", "unit"]].head().to_string(index=False))


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or [FIXTURES / "physionet", FIXTURES / "fhir"])
