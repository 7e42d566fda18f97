"""What the readers of a database folder (eICU, MIMIC-IV) share: finding a table, reading it a
part at a time, and assembling canonical records from parts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from vitaltwin.data.schema import LABELS, OBSERVATIONS, PATIENTS, QUARANTINE, Record
from vitaltwin.interop._errors import ReadError


def table_path(directory: Path, name: str) -> Path | None:
    """``directory/name`` as ``.csv.gz`` or ``.csv`` (also in lower case), or None."""
    for suffix in (".csv.gz", ".csv"):
        for stem in (name, name.lower()):
            p = directory / f"{stem}{suffix}"
            if p.exists():
                return p
    return None


def read_table(
    directory: Path, name: str, columns: list[str], rows: int, error: type[ReadError]
) -> Iterator[pd.DataFrame]:
    """The table's ``columns``, ``rows`` at a time (nothing when the table is absent; columns it
    lacks — an older release, a trimmed extract — are simply not read); ``error`` names the file
    when it cannot be read."""
    path = table_path(directory, name)
    if path is None:
        return
    wanted = set(columns)
    try:
        yield from pd.read_csv(path, usecols=lambda c: c in wanted, chunksize=rows,
                               low_memory=False)  # fmt: skip
    except (OSError, ValueError, pd.errors.ParserError, EOFError) as exc:
        raise error(f"{path}: cannot read ({exc})") from None


def whole_table(
    directory: Path, name: str, columns: list[str], error: type[ReadError]
) -> pd.DataFrame:
    """A small table (patients, stays, dictionaries) at once; ``error`` when it is absent."""
    parts = list(read_table(directory, name, columns, 10**7, error))
    if not parts:
        raise error(f"{directory}: no table {name}")
    return pd.concat(parts, ignore_index=True)


def record_part(
    values_read: int = 0,
    observations: pa.Table | None = None,
    quarantine: pa.Table | None = None,
    patients: pa.Table | None = None,
    **context: pa.Table | None,
) -> Record:
    """A record of one part of a database: the tables not given are empty."""
    return Record(
        OBSERVATIONS.empty_table() if observations is None else observations,
        QUARANTINE.empty_table() if quarantine is None else quarantine,
        PATIENTS.empty_table() if patients is None else patients,
        LABELS.empty_table(),
        values_read,
        **context,
    )


def joined(parts: Sequence[Record]) -> Record:
    """The parts of :func:`read_eicu`-style readers as one record: observations, quarantine and
    medications of every part; patients and encounters from the first."""
    first = parts[0]
    meds = [p.medications for p in parts if p.medications is not None]
    return Record(
        pa.concat_tables([p.observations for p in parts]),
        pa.concat_tables([p.quarantine for p in parts]),
        first.patients,
        first.labels,
        sum(p.values_read for p in parts),
        encounters=first.encounters,
        medications=pa.concat_tables(meds) if meds else None,
    )
