"""One dispatch for every input format: ``read_any(path)`` returns the canonical record.

A reader is registered once with the file suffixes it reads and a test of a file's first bytes
(for files whose name does not say what they are). ``read_any`` picks the reader by suffix,
then by content, and raises :class:`ReadError` naming the file when none fits; ``read_chunks``
gives the same record in parts, for files larger than memory. A new format is
one adapter module plus one :func:`register` call here; callers (the CLI, the service) never
list formats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vitaltwin.data import Record
from vitaltwin.data.vocabulary import LOCAL_CODES
from vitaltwin.interop import eicu, fhir, hl7v2, mimic, physionet, streams
from vitaltwin.interop._errors import ReadError


@dataclass(frozen=True)
class ReadOptions:
    """Settings a reader may need: a site's local-code table (HL7 v2 OBX-3 -> LOINC) and the
    sender's time zone (HL7 v2 times without an offset, when MSH-7 has none either)."""

    local_codes: dict[str, str] | None = None
    sender_tz: tzinfo = UTC


@dataclass(frozen=True)
class Reader:
    """A registered format: its name, the suffixes it reads, a content test, the reader."""

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[bytes], bool]
    read: Callable[[Path, ReadOptions], Record]
    chunks: Callable[[Path, ReadOptions, int], Iterator[Record]] | None = None
    """Reads the file a part at a time (about ``rows`` input rows each), for inputs of any size;
    None: the format is read whole (a FHIR Bundle, an HL7 file)."""


READERS: list[Reader] = []


def register(reader: Reader) -> Reader:
    """Add a format; a suffix claimed twice is an error."""
    taken = {s for r in READERS for s in r.suffixes}
    clash = taken & set(reader.suffixes)
    if clash:
        raise ValueError(f"suffixes {sorted(clash)} already have a reader")
    READERS.append(reader)
    return reader


def _first_text(head: bytes) -> str:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n\x0b").decode("utf-8", errors="replace")


def _read_parquet(path: Path, _: ReadOptions) -> Record:
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise physionet.PhysioNetError(f"{path}: cannot read as Parquet ({exc})") from None
    return physionet.convert(df, source=str(path))


def _parquet_chunks(path: Path, _: ReadOptions, rows: int) -> Iterator[Record]:
    """Set A a batch of rows at a time. A stay split between two batches gives two partial
    patient and encounter rows; the store keeps the latest state of each (the encounter ends
    with its last batch), so the stored record is the same as from one read."""
    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=rows)
        for batch in batches:
            yield physionet.convert(batch.to_pandas(), source=str(path))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise physionet.PhysioNetError(f"{path}: cannot read as Parquet ({exc})") from None


register(
    Reader(
        "PhysioNet 2019 (PSV)",
        (".psv",),
        lambda head: "|" in (t := _first_text(head)).split("\n", 1)[0] and "ICULOS" in t,
        lambda path, _: physionet.convert(physionet.read_psv(path), source=str(path)),
    )
)
register(
    Reader(
        "PhysioNet 2019 (Parquet)",
        (".parquet",),
        lambda h: h[:4] == b"PAR1",
        _read_parquet,
        _parquet_chunks,
    )
)
register(
    Reader(
        "FHIR R4 (JSON, Bundle, NDJSON)",
        (".json", ".json.gz", ".ndjson", ".ndjson.gz"),
        lambda head: _first_text(head).startswith("{") and b'"resourceType"' in head,
        lambda path, _: fhir.convert_file(path),
        lambda path, _, rows: fhir.convert_chunks(path, rows),
    )
)
register(
    Reader(
        "HL7 v2",
        (".hl7",),
        lambda head: _first_text(head)[:4] in ("MSH|", "FHS|", "BHS|"),
        lambda path, opt: hl7v2.convert_file(
            path, local_codes=opt.local_codes or LOCAL_CODES, sender_tz=opt.sender_tz
        ),
    )
)
register(
    Reader(
        "device stream (CSV, JSON lines)",
        (".csv", ".jsonl"),
        lambda head: (
            _first_text(head)
            .split("\n", 1)[0]
            .replace(" ", "")
            .startswith(("patient_id,time,code", '{"patient_id"'))
        ),
        lambda path, _: streams.convert_stream(path),
        lambda path, _, rows: streams.stream_chunks(path, rows),
    )
)


def reader_for(path: Path) -> Reader:
    """The reader of ``path``: by suffix, else by its first bytes."""
    name = path.name.lower()
    for r in READERS:
        if name.endswith(r.suffixes):
            return r
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ReadError(f"{path}: cannot read ({exc})") from None
    for r in READERS:
        if r.sniff(head):
            return r
    known = ", ".join(s for r in READERS for s in r.suffixes)
    raise ReadError(f"{path}: unknown format (known by name: {known}; content not recognised)")


def read_any(path: str | Path, options: ReadOptions | None = None) -> Record:
    """The canonical record of one input file, whatever its format.

    Raises :class:`ReadError` (naming the file and the reason) when it cannot be read at all;
    values that cannot be used are quarantined in the record, not raised."""
    p = Path(path)
    if not p.is_file():
        raise ReadError(f"{p}: no such file")
    try:
        return reader_for(p).read(p, options or ReadOptions())
    except OSError as exc:
        raise ReadError(f"{p}: cannot read ({exc})") from None


def read_chunks(
    path: str | Path, options: ReadOptions | None = None, rows: int = 50_000
) -> Iterator[Record]:
    """The canonical record of one input (a file, or an eICU or MIMIC-IV folder) in parts of
    about ``rows`` input rows, so that memory stays bounded whatever the input's size (formats
    read whole come as one part).
    Raises :class:`ReadError` like :func:`read_any`, possibly after some parts were given."""
    p = Path(path)
    if p.is_dir() and eicu.is_eicu(p):
        yield from eicu.read_eicu(p, rows=rows)
        return
    if p.is_dir() and mimic.is_mimic(p):
        yield from mimic.read_mimic(p, rows=rows)
        return
    if not p.is_file():
        raise ReadError(f"{p}: no such file")
    reader = reader_for(p)
    try:
        if reader.chunks is None:
            yield reader.read(p, options or ReadOptions())
        else:
            yield from reader.chunks(p, options or ReadOptions(), rows)
    except OSError as exc:
        raise ReadError(f"{p}: cannot read ({exc})") from None


def input_files(paths: list[Path]) -> list[Path]:
    """Inputs to read: each file given, each folder holding an ICU database's tables (eICU,
    MIMIC-IV), and every file with a registered suffix under any other folder (sorted). A path
    that does not exist raises :class:`ReadError`."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir() and (eicu.is_eicu(p) or mimic.is_mimic(p)):  # a database: one input
            out.append(p)
        elif p.is_dir():
            out += sorted(
                {f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(_suffixes())}
            )
        elif p.exists():
            out.append(p)
        else:
            raise ReadError(f"{p}: no such file or folder")
    return out


def _suffixes() -> tuple[str, ...]:
    return tuple(s for r in READERS for s in r.suffixes)
