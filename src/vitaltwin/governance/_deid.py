"""De-identified research exports of every table (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)),
with keyed pseudonyms for linkage, per-patient date shifts, a free-text scrubber, consent, and a
re-identification risk report.

Every column of every canonical table has a rule (:data:`RULES`); a column without one stops
the export (a new column cannot leak by default):

* ``pseudonym:<kind>`` — HMAC-SHA256 under the export key (RFC 2104): the same patient, stay,
  device or source gets the same pseudonym in every table and every export with that key, so
  rows link, while without the key the pseudonym says nothing (a plain hash of an MRN can be
  reversed by hashing every MRN);
* ``shift`` — timestamps moved back by the patient's own offset, 1 to ``max_shift_days`` whole
  days drawn from the keyed hash: intervals, times of day and the order of events survive,
  calendar dates do not (Safe Harbor's identifier 3 covers all dates but the year; shifting is
  the usual research compromise and the issue's choice; the report states the offsets' range);
* ``year`` — only the year (rows with no patient: the quarantine);
* ``age`` — ages over 89 become 90 ("90 or older", Safe Harbor); the age is computed from the
  birth date at ICU admission first where the source gave only a birth date;
* ``drop`` — removed (birth dates, quarantined raw content);
* ``scrub`` — free text with e-mail addresses, URLs, IP addresses, phone, social security and
  other long numbers, dates and quoted values replaced by ``[REDACTED]`` (:func:`scrub`);
* ``code`` — a ``system|code`` coding kept, anything else (free text) scrubbed;
* ``unit`` — an HL7 location reduced to its point of care (the unit; room and bed removed);
* ``keep`` — clinical content (codes, values, units, sex, unit names).

ZIP codes (none in the canonical record; the function serves tables that have them):
:func:`zip3` keeps the first three digits unless the area they name holds 20,000 people or
fewer, then ``000`` (HHS's list from the 2000 Census).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vitaltwin.progress import SILENT, Progress
from vitaltwin.store import TABLES, Store

RESTRICTED_ZIP3 = frozenset(
    {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
     "879", "884", "890", "893"}
)  # fmt: skip
"""Three-digit ZIP codes whose areas held 20,000 people or fewer in the 2000 Census (HHS,
Guidance Regarding Methods for De-identification of PHI, 2012, §2.4)."""
AGE_CAP = 90.0
"""Ages over 89 are reported as 90 (meaning 90 or older)."""

RULES: dict[str, dict[str, str]] = {
    "observations": {
        "patient_id": "pseudonym:patient", "effective_time": "shift", "loinc": "keep",
        "value": "keep", "unit": "keep", "source": "pseudonym:source",
        "position": "pseudonym:source", "device": "pseudonym:device", "received_time": "shift",
        "quality": "keep", "comparator": "keep", "status": "keep", "method": "keep",
    },
    "quarantine": {
        "source": "pseudonym:source", "position": "pseudonym:source", "field": "keep",
        "raw_value": "drop", "reason": "scrub", "received_time": "year",
    },
    "patients": {
        "patient_id": "pseudonym:patient", "sex": "keep", "age_years": "age",
        "birth_date": "drop", "icu_admission_time": "shift", "hospital_admission_time": "shift",
        "icu_unit": "keep", "source": "pseudonym:source", "merged_into": "pseudonym:patient",
    },
    "labels": {
        "patient_id": "pseudonym:patient", "time": "shift", "label": "keep", "value": "keep",
        "source": "pseudonym:source",
    },
    "encounters": {
        "encounter_id": "pseudonym:encounter", "patient_id": "pseudonym:patient",
        "start_time": "shift", "end_time": "shift", "kind": "keep",
        "source": "pseudonym:source", "status": "keep", "location": "unit",
    },
    "conditions": {
        "patient_id": "pseudonym:patient", "code": "keep", "display": "scrub",
        "onset_time": "shift", "source": "pseudonym:source",
    },
    "medications": {
        "patient_id": "pseudonym:patient", "drug": "code", "start_time": "shift",
        "end_time": "shift", "dose": "keep", "dose_unit": "keep", "rate": "keep",
        "rate_unit": "keep", "source": "pseudonym:source",
    },
    "waveforms": {
        "patient_id": "pseudonym:patient", "start_time": "shift", "code": "keep",
        "period_ms": "keep", "origin": "keep", "factor": "keep", "unit": "keep",
        "dimensions": "keep", "data": "keep", "source": "pseudonym:source",
        "position": "pseudonym:source",
    },
    "patient_events": {
        "patient_id": "pseudonym:patient", "event": "keep", "event_time": "shift",
        "encounter_id": "pseudonym:encounter", "location": "unit", "prior_location": "unit",
        "prior_patient_id": "pseudonym:patient", "sex": "keep", "birth_date": "drop",
        "source": "pseudonym:source", "position": "pseudonym:source",
    },
}  # fmt: skip
"""How each column of each table is de-identified (module docstring)."""

_SCRUB = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")),
    ("url", re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.I)),
    ("ip", re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")),
    ("ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("phone", re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b")),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?\b"
                        r"|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b")),
    ("quoted", re.compile(r"'[^']*'|\"[^\"]*\"")),
    ("number", re.compile(r"\b[A-Z]{0,3}\d{5,}[A-Z]?\b")),
]  # fmt: skip


_CODING = re.compile(r"[a-z][a-z0-9+.-]*:[^\s|]+\|[A-Za-z0-9.-]+")
"""``system|code`` with a URI system (``http://www.nlm.nih.gov/research/umls/rxnorm|1659149``)."""


def scrub(text: str | None) -> str | None:
    """Free text with identifying patterns replaced by ``[REDACTED]`` (module docstring)."""
    if text is None:
        return None
    for _, pattern in _SCRUB:
        text = pattern.sub("[REDACTED]", text)
    return text


def zip3(code: str | None) -> str | None:
    """A ZIP code generalized per Safe Harbor: its first three digits, or ``000`` for the
    sparsely populated areas (:data:`RESTRICTED_ZIP3`)."""
    if code is None:
        return None
    digits = re.sub(r"\D", "", code)[:3]
    if len(digits) < 3:
        return None
    return "000" if digits in RESTRICTED_ZIP3 else digits


def _unit_of(location: str | None) -> str | None:
    if location is None:
        return None
    return location.split("^", 1)[0].strip() or None


class Deidentifier:
    """Pseudonyms and date shifts under one secret ``key`` (32 bytes from a key provider:
    the same key gives the same pseudonyms, so exports link; a new key, unlinkable ones)."""

    def __init__(self, key: bytes, *, max_shift_days: int = 365) -> None:
        if len(key) < 16:
            raise ValueError("a de-identification key needs 16 bytes at least")
        if max_shift_days < 1:
            raise ValueError("max_shift_days: 1 at least")
        self._key = key
        self.max_shift_days = max_shift_days

    def _mac(self, text: str) -> bytes:
        return hmac.new(self._key, text.encode(), hashlib.sha256).digest()

    def pseudonym(self, value: str, kind: str = "patient") -> str:
        """The keyed pseudonym of ``value`` (``<kind>-`` and 20 hex digits: 80 bits)."""
        return f"{kind}-{self._mac(f'{kind}:{value}').hex()[:20]}"

    def shift_days(self, patient_id: str) -> int:
        """The patient's date shift: 1 to ``max_shift_days`` days back."""
        draw = int.from_bytes(self._mac(f"shift:{patient_id}")[:8], "big")
        return 1 + draw % self.max_shift_days

    def table(self, name: str, table: pa.Table | pa.RecordBatch) -> pa.Table:
        """One table de-identified by :data:`RULES` (ValueError for a column without a rule)."""
        if name not in RULES:
            raise ValueError(f"no de-identification rules for table {name!r}")
        rules = RULES[name]
        unknown = [c for c in table.schema.names if c not in rules]
        if unknown:
            raise ValueError(f"{name}: no de-identification rule for column(s) {unknown}: "
                             "add one to RULES before exporting")  # fmt: skip
        t = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
        patients = t.column("patient_id").to_pylist() if "patient_id" in t.column_names else None
        shift = None
        if patients is not None:
            days = {p: self.shift_days(p) for p in set(patients)}
            shift = np.array([days[p] for p in patients], dtype="int64") * 86_400_000_000
        if name == "patients":
            t = _age_from_birth(t)
        out: dict[str, pa.Array | pa.ChunkedArray] = {}
        for col in t.column_names:
            rule, values = rules[col], t.column(col)
            if rule == "drop":
                continue
            if rule == "keep":
                out[col] = values
            elif rule.startswith("pseudonym:"):
                kind = rule.split(":", 1)[1]
                out[col] = pa.array(
                    [None if v is None else self.pseudonym(str(v), kind)
                     for v in values.to_pylist()], pa.string())  # fmt: skip
            elif rule == "shift":
                if shift is None:
                    raise ValueError(f"{name}.{col}: a shifted date needs a patient_id")
                micros = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)
                valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
                moved = np.where(valid, micros - shift, 0)
                out[col] = pa.array(moved, pa.int64(), mask=~valid).cast(values.type)
            elif rule == "year":
                out[col] = pa.array(
                    [None if v is None else datetime(v.year, 1, 1, tzinfo=UTC)
                     for v in values.to_pylist()], values.type)  # fmt: skip
            elif rule == "age":
                out[col] = pc.min_element_wise(values, pa.scalar(AGE_CAP))
            elif rule == "scrub":
                out[col] = pa.array([scrub(v) for v in values.to_pylist()], pa.string())
            elif rule == "code":
                out[col] = pa.array(
                    [v if v is None or _CODING.fullmatch(v) else scrub(v)
                     for v in values.to_pylist()], pa.string())  # fmt: skip
            elif rule == "unit":
                out[col] = pa.array([_unit_of(v) for v in values.to_pylist()], pa.string())
            else:
                raise ValueError(f"{name}.{col}: unknown rule {rule!r}")
        return pa.table(out)


def _age_from_birth(t: pa.Table) -> pa.Table:
    """Patients' ages at ICU admission from their birth dates where the source gave no age."""
    ages = t.column("age_years").to_pylist()
    births = t.column("birth_date").to_pylist()
    admitted = t.column("icu_admission_time").to_pylist()
    filled = []
    for age, born, adm in zip(ages, births, admitted, strict=True):
        if age is None and isinstance(born, date):
            at = adm.date() if isinstance(adm, datetime) else datetime.now(UTC).date()
            age = float(at.year - born.year - ((at.month, at.day) < (born.month, born.day)))
        filled.append(age)
    i = t.column_names.index("age_years")
    return t.set_column(i, "age_years", pa.array(filled, pa.float64()))


@dataclass(frozen=True)
class KAnonymity:
    """The re-identification risk of an export's patients over quasi-identifiers: the smallest
    equivalence class (k), how many patients sit in classes smaller than ``threshold``, and
    the class sizes."""

    quasi_identifiers: tuple[str, ...]
    patients: int
    k: int
    threshold: int
    patients_below_threshold: int
    classes: int
    smallest_classes: list[dict[str, Any]] = field(default_factory=list)


def k_anonymity(
    patients: pa.Table,
    quasi: tuple[str, ...] = ("sex", "age_band", "icu_unit"),
    threshold: int = 5,
) -> KAnonymity:
    """k-anonymity (Sweeney 2002) of de-identified patients over ``quasi`` (``age_band``:
    5-year bands of ``age_years``, 90+ as one)."""
    df = patients.to_pandas()
    if "age_band" in quasi:
        age = df["age_years"]
        lo = (age.clip(upper=AGE_CAP) // 5 * 5).astype("Int64")
        df["age_band"] = [
            None if a is None or a != a else ("90+" if a >= AGE_CAP else f"{int(a)}-{int(a) + 4}")
            for a in lo.astype(object).where(lo.notna(), None)
        ]
    if df.empty:
        return KAnonymity(quasi, 0, 0, threshold, 0, 0)
    sizes = df.fillna({q: "unknown" for q in quasi}).groupby(list(quasi)).size()
    small = sizes.sort_values().head(10)
    return KAnonymity(
        quasi, len(df), int(sizes.min()), threshold, int(sizes[sizes < threshold].sum()),
        len(sizes),
        [{**dict(zip(quasi, map(str, (k if isinstance(k, tuple) else (k,))), strict=True)),
          "patients": int(n)} for k, n in small.items()],
    )  # fmt: skip


@dataclass
class ResearchExport:
    """What :func:`export_research` wrote."""

    folder: Path
    rows: dict[str, int]
    excluded_patients: int  # consent excludes research
    max_shift_days: int
    risk: KAnonymity

    def as_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "rows": self.rows,
                "excluded_patients": self.excluded_patients,
                "date_shift_days": [1, self.max_shift_days], "reidentification": asdict(self.risk),
                "rules": RULES}  # fmt: skip


def export_research(
    store: Store,
    out: Path,
    deid: Deidentifier,
    *,
    batch_rows: int = 100_000,
    progress: Progress = SILENT,
) -> ResearchExport:
    """Every table of ``store`` de-identified into ``out/<table>.parquet`` (owner-only, each
    whole or not at all), leaving out patients whose consent excludes research
    (:meth:`Store.research_excluded`), with ``reidentification-risk.json``. Streams batch by
    batch: memory stays bounded by ``batch_rows``."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    excluded = store.research_excluded()
    rows: dict[str, int] = {}
    drop = pa.array(sorted(excluded), pa.string())
    for name in TABLES:
        path = out / f"{name}.parquet"
        tmp = path.with_name(path.name + ".partial")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        writer: pq.ParquetWriter | None = None
        rows[name] = 0
        task = progress.start(f"de-identifying {name}", store.count(name))
        try:
            for batch in store.batches(name, batch_rows):
                t = pa.Table.from_batches([batch])
                if excluded and "patient_id" in t.column_names:
                    t = t.filter(pc.invert(pc.is_in(t.column("patient_id"), drop)))
                t = deid.table(name, t)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, t.schema)
                writer.write_table(t)
                rows[name] += t.num_rows
                task.advance(batch.num_rows)
        finally:
            if writer is not None:
                writer.close()
            task.close()
        if writer is None:  # an empty table: no file
            tmp.unlink()
        else:
            tmp.chmod(0o600)
            os.replace(tmp, path)
    patients_path = out / "patients.parquet"
    risk = (
        k_anonymity(pq.read_table(patients_path))
        if patients_path.exists()
        else KAnonymity(("sex", "age_band", "icu_unit"), 0, 0, 5, 0, 0)
    )
    result = ResearchExport(out, rows, len(excluded), deid.max_shift_days, risk)
    report = out / "reidentification-risk.json"
    fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(result.as_dict(), f, indent=1)
    return result
