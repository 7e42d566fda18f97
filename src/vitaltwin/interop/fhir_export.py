"""The canonical record out as FHIR R4 NDJSON, streaming: Patient, Encounter, Condition,
MedicationAdministration and Observation, one file per resource type.

What FHIR has no field for travels in extensions under :data:`EXTENSION` (an observation's
quality flag and a patient's ICU admission, age and unit), and the FHIR reader
(:mod:`vitaltwin.interop.fhir`) reads them back, so export → re-ingest gives the same tables.
Patient keys that are not valid FHIR ids (``[A-Za-z0-9-.]{1,64}``) get a stable derived id
(:func:`fhir_id`) and keep the key as an identifier.

Tables arrive as Arrow record batches (:meth:`vitaltwin.store.Store.batches`), so memory is
bounded by one batch whatever the store's size. Each file is written next to its destination
under a temporary name, created readable by the owner only, and renamed into place when complete:
an interrupted export leaves no partial file. Resources are built directly as JSON (no model
validation per resource: that would cost 10x the time); the tests validate exported resources
with fhirclient's R4 models.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vitaltwin.data.vocabulary import CODES
from vitaltwin.progress import SILENT, Progress

EXTENSION = "https://vitaltwin.org/fhir/StructureDefinition/"
"""Base URL of vitaltwin's extensions (``quality``, ``icu-admission-time``, ...)."""

KEY_SYSTEM = EXTENSION + "key"
"""Identifier system of a vitaltwin key that is not a valid FHIR id (the id is then derived)."""

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = frozenset(
    {"8867-4", "59408-5", "2708-6", "8310-5", "8480-6", "8462-4", "8478-0", "9279-1", "19889-5"}
)
"""LOINC codes exported in the ``vital-signs`` category (the others: ``laboratory``)."""
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


def fhir_id(key: str) -> str:
    """``key`` when it is a valid FHIR id, else ``vt-`` and 40 hex digits of its SHA-256."""
    if _ID.fullmatch(key):
        return key
    return "vt-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ext(name: str, value: object) -> dict[str, Any]:
    if isinstance(value, datetime):
        return {"url": EXTENSION + name, "valueDateTime": _iso(value)}
    if isinstance(value, float):
        return {"url": EXTENSION + name, "valueDecimal": value}
    return {"url": EXTENSION + name, "valueString": str(value)}


def _subject(pid: str) -> dict[str, str]:
    return {"reference": f"Patient/{fhir_id(pid)}"}


def patient(r: Mapping[str, Any]) -> dict[str, Any]:
    pid = str(r["patient_id"])
    res: dict[str, Any] = {"resourceType": "Patient", "id": fhir_id(pid)}
    if fhir_id(pid) != pid:
        res["identifier"] = [{"system": KEY_SYSTEM, "value": pid}]
    if r.get("sex") in ("male", "female"):
        res["gender"] = r["sex"]
    if isinstance(r.get("birth_date"), date):
        res["birthDate"] = r["birth_date"].isoformat()
    ext = [
        _ext(name.replace("_", "-"), r[name])
        for name in ("age_years", "icu_admission_time", "hospital_admission_time", "icu_unit")
        if r.get(name) is not None
    ]
    if ext:
        res["extension"] = ext
    if r.get("merged_into"):
        res["active"] = False
        res["link"] = [{"other": _subject(str(r["merged_into"])), "type": "replaced-by"}]
    return res


def encounter(r: Mapping[str, Any]) -> dict[str, Any]:
    period = {k: _iso(r[f"{k}_time"]) for k in ("start", "end") if r.get(f"{k}_time")}
    kind = r.get("kind")
    key = str(r["encounter_id"])
    keyed = {} if fhir_id(key) == key else {"identifier": [{"system": KEY_SYSTEM, "value": key}]}
    return {
        "resourceType": "Encounter",
        "id": fhir_id(key),
        **keyed,
        "status": r.get("status") or "unknown",  # the source did not say (read back as such)
        "class": {"code": kind}
        if kind
        else {"extension": [{"url": _ABSENT, "valueCode": "unknown"}]},
        "subject": _subject(str(r["patient_id"])),
        **({"period": period} if period else {}),
        **({"location": [{"location": {"display": loc}}]} if (loc := r.get("location")) else {}),
    }


def _concept(code: str, display: str | None) -> dict[str, Any]:
    if "|" not in code:
        return {"text": code}
    system, value = code.split("|", 1)
    coding: dict[str, Any] = {"code": value}
    if system:
        coding["system"] = system
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def condition(r: Mapping[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "code": _concept(str(r["code"]), r.get("display")),
        "subject": _subject(str(r["patient_id"])),
    }
    if r.get("onset_time"):
        res["onsetDateTime"] = _iso(r["onset_time"])
    return res


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q.update(unit=unit, system=UCUM, code=unit)
    return q


def medication(r: Mapping[str, Any]) -> dict[str, Any]:
    drug = str(r["drug"])
    res: dict[str, Any] = {"resourceType": "MedicationAdministration", "status": "completed"}
    if "|" not in drug and "/" in drug:
        res["medicationReference"] = {"reference": drug}
    else:
        res["medicationCodeableConcept"] = _concept(drug, None)
    res["subject"] = _subject(str(r["patient_id"]))
    if r.get("end_time"):
        res["effectivePeriod"] = {"start": _iso(r["start_time"]), "end": _iso(r["end_time"])}
    else:
        res["effectiveDateTime"] = _iso(r["start_time"])
    dosage: dict[str, Any] = {}
    if r.get("dose") is not None:
        dosage["dose"] = _quantity(float(r["dose"]), r.get("dose_unit"))
    if r.get("rate") is not None:
        dosage["rateQuantity"] = _quantity(float(r["rate"]), r.get("rate_unit"))
    if dosage:
        res["dosage"] = dosage
    return res


def observation_coding(loinc: str) -> dict[str, Any]:
    entry = CODES.get(loinc)
    coding: dict[str, Any] = {"system": LOINC, "code": loinc}
    if entry is not None:
        coding["display"] = entry.display
    return coding


def observation_category(loinc: str) -> list[dict[str, Any]]:
    category = "vital-signs" if loinc in VITAL_SIGNS else "laboratory"
    return [{"coding": [{"system": _CATEGORY, "code": category}]}]


FHIR_STATUS = {
    "final": "final",
    "preliminary": "preliminary",
    "corrected": "corrected",
    "entered-in-error": "entered-in-error",
    "superseded": "final",  # FHIR has no such status: the extension says it was replaced
}


def _extensions(quality: str | None, status: str) -> list[dict[str, Any]]:
    out = [_ext("quality", quality)] if quality else []
    if status == "superseded":
        out.append(_ext("status", "superseded"))
    return out


def observation(r: Mapping[str, Any]) -> dict[str, Any]:
    loinc = str(r["loinc"])
    status = str(r.get("status") or "final")
    quantity = _quantity(float(r["value"]), r.get("unit"))
    if r.get("comparator") not in (None, "="):
        quantity = {"value": quantity.pop("value"), "comparator": r["comparator"], **quantity}
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "status": FHIR_STATUS[status],
        "category": observation_category(loinc),
        "code": {"coding": [observation_coding(loinc)]},
        "subject": _subject(str(r["patient_id"])),
        "effectiveDateTime": _iso(r["effective_time"]),
        "valueQuantity": quantity,
    }
    if r.get("method"):
        res["method"] = {"text": str(r["method"])}
    if r.get("device"):
        res["device"] = {"display": str(r["device"])}
    if ext := _extensions(r.get("quality"), status):
        res["extension"] = ext
    return res


def _fragments(column: pa.Array, build: Callable[[Any], str], missing: str = "") -> pa.Array:
    """``build(value)`` for each row, computed once per distinct value (``missing`` for nulls)."""
    encoded = pc.dictionary_encode(column)
    table = pa.array([build(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.fill_null(pc.take(table, encoded.indices), missing)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def observation_lines(batch: pa.RecordBatch) -> list[str]:
    """:func:`observation` of every row as compact JSON, built column-wise (the per-row builder
    is 3x slower; the tests check both give the same resources)."""
    column = batch.column
    status = _fragments(
        column("status"),
        lambda v: '{"resourceType":"Observation","status":' + _json(FHIR_STATUS[v]),
    )
    head = _fragments(
        column("loinc"),
        lambda c: (
            ',"category":'
            + _json(observation_category(c))
            + ',"code":'
            + _json({"coding": [observation_coding(c)]})
        ),
    )
    subject = _fragments(column("patient_id"), lambda p: ',"subject":' + _json(_subject(str(p))))
    when = pc.replace_substring_regex(
        pc.strftime(column("effective_time"), format="%Y-%m-%dT%H:%M:%S"), r"\.000000$", ""
    )
    comparator = _fragments(
        column("comparator"), lambda c: "" if c == "=" else f'"comparator":{_json(c)},'
    )
    value = pc.cast(column("value"), pa.string())
    unit = _fragments(
        column("unit"),
        lambda u: f',"unit":{_json(u)},"system":"{UCUM}","code":{_json(u)}}}' if u else "}",
        "}",
    )
    method = _fragments(column("method"), lambda m: ',"method":' + _json({"text": str(m)}))
    device = _fragments(column("device"), lambda d: ',"device":' + _json({"display": str(d)}))
    flags = pc.binary_join_element_wise(
        pc.fill_null(column("quality"), ""), column("status"), "\x1f"
    )

    def extension(key: str) -> str:
        quality, st = key.split("\x1f")
        ext = _extensions(quality or None, st)
        return ',"extension":' + _json(ext) if ext else ""

    joined = pc.binary_join_element_wise(
        status,
        head,
        subject,
        ',"effectiveDateTime":"',
        when,
        'Z","valueQuantity":{',
        comparator,
        '"value":',
        value,
        unit,
        method,
        device,
        _fragments(flags, extension),
        "}",
        "",
    )
    out: list[str] = joined.to_pylist()
    return out


RESOURCES: dict[str, tuple[str, Callable[[Mapping[str, Any]], dict[str, Any]]]] = {
    "patients": ("Patient", patient),
    "encounters": ("Encounter", encounter),
    "conditions": ("Condition", condition),
    "medications": ("MedicationAdministration", medication),
    "observations": ("Observation", observation),
}
"""Canonical table → (resource type, row → resource), in the order files are written."""


def write_ndjson(
    batches: Iterable[pa.RecordBatch],
    table: str,
    path: Path,
    total_rows: int = 0,
    progress: Progress = SILENT,
) -> int:
    """Resources of ``table``'s rows, one JSON per line, to ``path`` (atomically, owner-only);
    returns how many were written."""
    rtype, build = RESOURCES[table]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    task = progress.start(f"{rtype} -> {path.name}", total_rows)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for batch in batches:
                if table == "observations":
                    lines = observation_lines(batch)
                else:
                    lines = [_json(build(r)) for r in batch.to_pylist()]
                if lines:
                    fh.write("\n".join(lines) + "\n")
                n += len(lines)
                task.advance(len(lines))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        task.close()
    return n
