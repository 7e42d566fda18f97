"""Exporting the stored record as FHIR R4 NDJSON (what ``vitaltwin export --format fhir`` and the
service run): each table streams from the store in batches through
:func:`vitaltwin.interop.fhir_export.write_ndjson`, one atomic, owner-only file per resource
type."""

from __future__ import annotations

from pathlib import Path

from vitaltwin.interop.fhir_export import RESOURCES, write_ndjson
from vitaltwin.progress import SILENT, Progress
from vitaltwin.store import Store


def export_fhir(
    store: Store, out: Path, batch_rows: int = 50_000, progress: Progress = SILENT
) -> dict[str, tuple[Path, int]]:
    """Write ``out/<ResourceType>.ndjson`` for patients, encounters, conditions, medications and
    observations; returns (path, resources written) by resource type."""
    written = {}
    for table, (rtype, _) in RESOURCES.items():
        path = out / f"{rtype}.ndjson"
        n = write_ndjson(
            store.batches(table, batch_rows), table, path, store.count(table), progress
        )
        written[rtype] = (path, n)
    return written
