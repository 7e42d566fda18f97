"""FHIR R4 in: JSON resources, Bundles (any type) and NDJSON, validated against fhirclient's R4
(4.0.1) models (:mod:`vitaltwin.interop._r4`: the models' own rules, without building them), to
the canonical record.

Observations become one canonical observation per numeric value (the value itself, or each
component of a panel such as blood pressure 85354-9), under the first LOINC coding vitaltwin
knows (an Observation coded both 2708-6 and 59408-5 counts once), converted to the code's
canonical UCUM unit (:mod:`vitaltwin.data.units`) and checked against its plausibility range.
Everything else is accounted for in the quarantine with the reason and the location (file and
entry or line): invalid resources (the validation error names the field), observations without
a result (``registered``, ``cancelled``), data-absent values (the ``dataAbsentReason`` code),
non-numeric values, times without a time zone, and resource types this version does not
store. SampledData waveforms go, losslessly, to the waveforms table; Patients to the patient
record (sex, birth date); Encounters, Conditions and MedicationAdministrations to their canonical
tables. Patient references resolve to one key whatever their form (:func:`patient_key`:
bundle-internal ``urn:uuid:`` through the entry's ``fullUrl``, relative, absolute, versioned).
An Observation's ``status`` becomes the record's (``amended``/``corrected`` correct,
``entered-in-error`` retracts: :mod:`vitaltwin.data.versions`), ``valueQuantity.comparator``
is kept, and vitaltwin's own extensions (:mod:`vitaltwin.interop.fhir_export`) are read back.
NDJSON is read line by line (:func:`convert_chunks` gives it in parts).
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from vitaltwin.data import Record
from vitaltwin.data.schema import (
    COMPARATORS,
    CONDITIONS,
    ENCOUNTER_STATUSES,
    ENCOUNTERS,
    MEDICATIONS,
    METHODS,
    WAVEFORMS,
    parse_birth_date,
)
from vitaltwin.data.vocabulary import CODES, MDC_CODES, METHOD_LOINC, generic
from vitaltwin.interop import _r4
from vitaltwin.interop._errors import ReadError
from vitaltwin.interop._records import Records, json_object, no_cycle_collection
from vitaltwin.interop.fhir_export import EXTENSION, KEY_SYSTEM, LOINC

Validator = Literal["schema", "fhirclient"]


class FhirError(ReadError):
    """A FHIR file that cannot be read at all; names the file and what is wrong."""


def read_resources(path: Path) -> Iterator[tuple[str, dict[str, Any] | str, str | None]]:
    """(position, resource, fullUrl) for every resource in a file; an unparsable NDJSON line, or
    a line that is not a JSON object, comes as (position, error text, None) so it can be
    quarantined."""
    opener = gzip.open if path.suffix == ".gz" else open
    if path.name.endswith((".ndjson", ".ndjson.gz")):
        try:
            with opener(path, "rb") as fh:  # line by line: any size; orjson reads bytes
                for i, line in enumerate(fh, start=1):
                    if line.strip():
                        yield f"line {i}", json_object(line), None
        except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
            raise FhirError(f"{path}: cannot read ({exc})") from None
        return
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise FhirError(f"{path}: cannot read ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FhirError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise FhirError(f"{path}: not JSON (nested too deeply)") from None
    if not isinstance(doc, dict) or "resourceType" not in doc:
        raise FhirError(f"{path}: not a FHIR resource (no resourceType)")
    yield from resources_of(doc)


def resources_of(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any] | str, str | None]]:
    """(position, resource, fullUrl) of a parsed resource: a Bundle's entries, or itself."""
    if doc.get("resourceType") != "Bundle":
        return [("resource", doc, None)]
    entries = doc.get("entry", [])
    out: list[tuple[str, dict[str, Any] | str, str | None]] = []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        url = entry.get("fullUrl") if isinstance(entry, dict) else None
        out.append(
            (
                f"entry[{i}]",
                res if isinstance(res, dict) else "entry without a resource",
                url if isinstance(url, str) else None,
            )
        )
    return out


def r4_errors(resource: dict[str, Any]) -> list[str]:
    """What makes a resource invalid FHIR R4 (empty: valid), each with its path; the checks
    fhirclient's models make (:mod:`vitaltwin.interop._r4`)."""
    return _r4.errors(resource)


def _more(n: int) -> str:
    return f" (and {n} more)" if n > 0 else ""


def _extensions(res: dict[str, Any]) -> dict[str, Any]:
    """vitaltwin's own extensions of a resource (see :mod:`vitaltwin.interop.fhir_export`), by
    name: ``{"quality": "…"}``."""
    out: dict[str, Any] = {}
    for e in res.get("extension") or []:
        url = e.get("url", "") if isinstance(e, dict) else ""
        if url.startswith(EXTENSION):
            values = [v for k, v in e.items() if k.startswith("value")]
            if values:
                out[url[len(EXTENSION) :]] = values[0]
    return out


def _key_identifier(res: dict[str, Any]) -> str | None:
    """The key vitaltwin exported under a derived id (identifier of system ``KEY_SYSTEM``)."""
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == KEY_SYSTEM:
            value = ident.get("value")
            return str(value) if value else None
    return None


def patient_key(reference: object, urls: dict[str, str]) -> str | None:
    """The patient id a reference points to, one key whatever its form: relative
    (``Patient/123``, ``Patient/123/_history/2``), absolute (``https://x/fhir/Patient/123``) or
    bundle-internal (``urn:uuid:…``, resolved through the bundle's ``fullUrl`` of the Patient
    entry, ``urls``). None when the reference is not to a Patient."""
    if not isinstance(reference, str) or not reference.strip():
        return None
    ref = reference.strip()
    if ref in urls:
        return urls[ref]
    if ref.startswith(("urn:uuid:", "urn:oid:")):
        return ref.split(":", 2)[2] or None  # not in this bundle: the id the uuid names
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


@dataclass
class _Acc(Records):
    encounters: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    waveforms: list[dict[str, Any]] = field(default_factory=list)


def _time(res: dict[str, Any]) -> datetime | str | None:
    raw = res.get("effectiveDateTime") or res.get("effectiveInstant")
    if raw is None and isinstance(res.get("effectivePeriod"), dict):
        raw = res["effectivePeriod"].get("start")
    if raw is None:
        return None
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return str(raw)
    if "T" not in str(raw) and len(str(raw)) == 10:
        return t.replace(tzinfo=UTC)  # a date only: kept at 00:00 UTC, flagged (see _DATE_ONLY)
    if t.tzinfo is None:
        return str(raw)
    return t.astimezone(UTC)


_DATE_ONLY = "effective time given as a date only (stored at 00:00 UTC)"


def _code(concept: dict[str, Any] | None) -> str | None:
    codes = [
        c.get("code")
        for c in (concept or {}).get("coding", [])
        if c.get("system") == LOINC and c.get("code")
    ]
    known = [str(c) for c in codes if c in CODES or c in METHOD_LOINC]
    chosen = known or [str(c) for c in codes]
    return chosen[0] if chosen else None


def _value(
    acc: _Acc,
    pos: str,
    pid: str,
    t: datetime,
    code: str | None,
    item: dict[str, Any],
    how: _How,
) -> None:
    where = f"{pos} {code or '(no LOINC)'}"
    if "dataAbsentReason" in item:
        reason = _code_text(item["dataAbsentReason"])
        acc.bad(where, "dataAbsentReason", f"data absent: {reason}")
        return
    if "valueSampledData" in item:
        sd = item["valueSampledData"]
        origin = sd.get("origin") or {}
        concept = item.get("code") or {}
        codings = concept.get("coding", [])
        sig = f"{codings[0].get('system', '')}|{codings[0].get('code', '')}" if codings else None
        if sig is None or "data" not in sd or "period" not in sd:
            acc.bad(where, "valueSampledData", "SampledData without code, data or period")
            return
        acc.waveforms.append(
            {
                "patient_id": pid,
                "start_time": t,
                "code": sig,
                "period_ms": float(sd["period"]),
                "origin": float(origin.get("value", 0.0)),
                "factor": float(sd.get("factor", 1.0)),
                "unit": origin.get("code") or origin.get("unit"),
                "dimensions": int(sd.get("dimensions", 1)),
                "data": str(sd["data"]),
                "source": acc.source,
                "position": where,
            }
        )
        return
    q = item.get("valueQuantity")
    if not isinstance(q, dict) or "value" not in q:
        kinds = [k for k in item if k.startswith("value")]
        acc.bad(where, kinds[0] if kinds else "value", "no numeric value")
        return
    if code is None:
        acc.bad(where, "code", "no LOINC coding", q.get("value"))
        return
    code, stated = generic(code)  # a method-specific code (by Noninvasive, ...)
    if stated is not None and how.method is None:
        how = replace(how, method=stated)
    unit = q.get("code") or q.get("unit") or "1"
    comparator = q.get("comparator") or "="
    if comparator not in COMPARATORS:
        acc.bad(where, "valueQuantity.comparator", "unknown comparator", comparator)
        return
    value = float(q["value"])
    got = acc.checked(code, value, unit, where, "valueQuantity.code", "valueQuantity.value")
    if got is None:
        return
    value, unit = got
    acc.add(
        pid,
        t,
        code,
        value,
        unit,
        where,
        how.quality,
        how.device,
        comparator,
        how.status,
        how.method,
    )


@dataclass(frozen=True)
class _How:
    """What an Observation says about all its values: flags, device, status, method."""

    quality: str | None
    device: str | None
    status: str
    method: str | None


STATUS = {
    "final": "final",
    "preliminary": "preliminary",
    "amended": "corrected",
    "corrected": "corrected",
    "entered-in-error": "entered-in-error",
    "unknown": "final",
}
"""FHIR Observation.status -> the record's status (registered and cancelled carry no result)."""


def _code_text(concept: dict[str, Any]) -> str:
    codings = concept.get("coding", [])
    return str(codings[0].get("code")) if codings else str(concept.get("text", "unknown"))


def _subject(acc: _Acc, rid: str, res: dict[str, Any], urls: dict[str, str]) -> str | None:
    """The patient key of a resource's subject (or patient); quarantined when it has none."""
    ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
    if not ref:
        acc.bad(rid, "subject", "no subject (patient)")
        return None
    pid = patient_key(ref, urls)
    if pid is None:
        acc.bad(rid, "subject", "subject is not a Patient reference", ref)
    return pid


def _observation(acc: _Acc, pos: str, res: dict[str, Any], urls: dict[str, str]) -> None:
    rid = f"{pos} Observation/{res.get('id', '?')}"
    fhir_status = res.get("status")
    if fhir_status not in STATUS:
        acc.bad(rid, "status", f"status {fhir_status}: no result to store", fhir_status)
        return
    ext = _extensions(res)
    status = "superseded" if ext.get("status") == "superseded" else STATUS[fhir_status]
    pid = _subject(acc, rid, res, urls)
    if pid is None:
        return
    t = _time(res)
    if not isinstance(t, datetime):
        acc.bad(rid, "effective[x]", "no effective time with a time zone", t)
        return
    raw = str(res.get("effectiveDateTime") or "")
    quality = ext.get("quality") or (_DATE_ONLY if raw and "T" not in raw else None)
    device_ref = res.get("device") or {}
    device = device_ref.get("display") or device_ref.get("reference")
    how = _How(quality, device, status, _method(res))
    if res.get("component"):
        for k, comp in enumerate(res["component"]):
            code = _code(comp.get("code"))
            _value(acc, f"{rid}.component[{k}]", pid, t, code, comp, how)
    else:
        _value(acc, rid, pid, t, _code(res.get("code")), res, how)


def _location(res: dict[str, Any]) -> str | None:
    """Where an Encounter is now: its active (else last) location's display or reference."""
    places = [p for p in res.get("location") or [] if isinstance(p.get("location"), dict)]
    now = [p for p in places if p.get("status") == "active"] or places[-1:]
    if not now:
        return None
    ref = now[-1]["location"]
    return str(ref.get("display") or ref.get("reference") or "") or None


def _replaced_by(res: dict[str, Any], urls: dict[str, str]) -> str | None:
    """The surviving patient of a merged one (``link`` of type ``replaced-by``)."""
    for link in res.get("link") or []:
        if link.get("type") == "replaced-by":
            return patient_key((link.get("other") or {}).get("reference"), urls)
    return None


MDC_SYSTEM = "urn:iso:std:iso:11073:10101"


def _method(res: dict[str, Any]) -> str | None:
    """How an Observation was measured: ``method.text`` when it is one of vitaltwin's methods
    (as the export writes it), else an IEEE 11073 term (system ``urn:iso:std:iso:11073:10101``,
    matched by its reference id, e.g. ``MDC_PRESS_BLD_ART_MEAN``) in ``method`` or ``code``, as
    device gateways code vital signs."""
    concept = res.get("method") or {}
    if concept.get("text") in METHODS:
        return str(concept["text"])
    for source in (concept, res.get("code") or {}):
        for c in source.get("coding") or []:
            if c.get("system") == MDC_SYSTEM:
                entry = MDC_CODES.get(str(c.get("display") or c.get("code") or "").upper())
                if entry is not None and entry[1] is not None:
                    return entry[1]
    return None


def _instant(raw: object) -> datetime | None:
    if not raw:
        return None
    t = _time({"effectiveDateTime": raw})
    return t if isinstance(t, datetime) else None


def _concept(concept: dict[str, Any] | None) -> tuple[str | None, str | None]:
    codings = (concept or {}).get("coding", [])
    if codings:
        c = codings[0]
        return f"{c.get('system', '')}|{c.get('code', '')}", c.get("display")
    text = (concept or {}).get("text")
    return (str(text), str(text)) if text else (None, None)


def _context(acc: _Acc, pos: str, rtype: str, res: dict[str, Any], urls: dict[str, str]) -> None:
    """Encounters, conditions and medication administrations (stored, or quarantined)."""
    rid = f"{pos} {rtype}/{res.get('id', '?')}"
    pid = _subject(acc, rid, res, urls)
    if pid is None:
        return
    if rtype == "Encounter":
        period = res.get("period") or {}
        acc.encounters.append(
            {
                "encounter_id": _key_identifier(res) or str(res.get("id", rid)),
                "patient_id": pid,
                "start_time": _instant(period.get("start")),
                "end_time": _instant(period.get("end")),
                "kind": (res.get("class") or {}).get("code"),
                "source": acc.source,
                "status": res.get("status") if res.get("status") in ENCOUNTER_STATUSES else None,
                "location": _location(res),
            }
        )
    elif rtype == "Condition":
        code, display = _concept(res.get("code"))
        if code is None:
            acc.bad(rid, "code", "condition without a code")
            return
        acc.conditions.append(
            {
                "patient_id": pid,
                "code": code,
                "display": display,
                "onset_time": _instant(res.get("onsetDateTime")),
                "source": acc.source,
            }
        )
    else:
        drug, _ = _concept(res.get("medicationCodeableConcept"))
        if drug is None and isinstance(res.get("medicationReference"), dict):
            drug = str(res["medicationReference"].get("reference"))
        period = res.get("effectivePeriod") or {}
        start = _instant(res.get("effectiveDateTime") or period.get("start"))
        if drug is None or start is None:
            acc.bad(
                rid,
                "medication" if drug is None else "effective[x]",
                "medication administration without a drug or a start time",
            )
            return
        dosage = res.get("dosage") or {}
        dose, rate = dosage.get("dose") or {}, dosage.get("rateQuantity") or {}
        acc.medications.append(
            {
                "patient_id": pid,
                "drug": drug,
                "start_time": start,
                "end_time": _instant(period.get("end")),
                "dose": dose.get("value"),
                "dose_unit": dose.get("code") or dose.get("unit"),
                "rate": rate.get("value"),
                "rate_unit": rate.get("code") or rate.get("unit"),
                "source": acc.source,
            }
        )


def convert_file(
    path: Path, received: datetime | None = None, validator: Validator = "schema"
) -> Record:
    """Read, validate and convert one FHIR file (see the module docstring); ``validator``
    ``fhirclient`` validates by building fhirclient's models, the slower reference of the
    default."""
    with no_cycle_collection():
        return convert_resources(list(read_resources(path)), str(path), received, validator)


def convert_chunks(
    path: Path, rows: int = 100_000, received: datetime | None = None
) -> Iterator[Record]:
    """:func:`convert_file` a part at a time: NDJSON ``rows`` lines per part (any file size);
    other files (a Bundle references its own entries) whole."""
    if not path.name.endswith((".ndjson", ".ndjson.gz")):
        yield convert_file(path, received)
        return
    when = received or datetime.now(UTC)
    lines = read_resources(path)
    while True:
        with no_cycle_collection():  # not across the yield: the caller's work collects as usual
            chunk = list(itertools.islice(lines, rows))
            part = convert_resources(chunk, str(path), when) if chunk else None
        if part is None:
            return
        yield part


def convert_resources(
    resources: list[tuple[str, dict[str, Any] | str, str | None]],
    source: str,
    received: datetime | None = None,
    validator: Validator = "schema",
) -> Record:
    """Validate and convert resources as :func:`read_resources` gives them."""
    acc = _Acc(source, received or datetime.now(UTC))
    invalid = _r4.VALIDATORS[validator]
    # bundle-internal references: the fullUrl of each Patient entry names that patient
    urls: dict[str, str] = {}
    for _, r, u in resources:
        if isinstance(r, dict) and r.get("resourceType") == "Patient" and r.get("id"):
            key = _key_identifier(r) or str(r["id"])
            if u:
                urls[u] = key
            if key != r["id"]:
                urls[f"Patient/{r['id']}"] = key
    for pos, res, url in resources:
        if isinstance(res, str):
            acc.bad(pos, "json", res)
            continue
        rtype = res.get("resourceType", "?")
        if problems := invalid(res):
            acc.bad(
                f"{pos} {rtype}/{res.get('id', '?')}",
                str(rtype),
                "invalid FHIR R4: " + "; ".join(problems[:5]) + _more(len(problems) - 5),
            )
            continue
        if rtype == "Observation":
            _observation(acc, pos, res, urls)
        elif rtype == "Patient":
            pid = _key_identifier(res) or str(res.get("id") or "")
            pid = pid or (patient_key(url, {}) or "" if url else "")
            if not pid:
                acc.bad(f"{pos} Patient", "id", "Patient without an id or fullUrl")
                continue
            sex = res.get("gender") if res.get("gender") in ("male", "female") else None
            acc.patient(pid, sex, parse_birth_date(str(res.get("birthDate", ""))))
            ext = _extensions(res)
            acc.patients[pid].update(
                age_years=ext.get("age-years"),
                icu_admission_time=_instant(ext.get("icu-admission-time")),
                hospital_admission_time=_instant(ext.get("hospital-admission-time")),
                icu_unit=ext.get("icu-unit"),
                merged_into=_replaced_by(res, urls),
            )
        elif rtype in ("Encounter", "Condition", "MedicationAdministration"):
            _context(acc, pos, rtype, res, urls)
        else:
            acc.bad(
                f"{pos} {rtype}/{res.get('id', '?')}",
                "resourceType",
                f"{rtype} is not stored by this version",
            )
    return acc.converted(
        encounters=pa.Table.from_pylist(acc.encounters, schema=ENCOUNTERS),
        conditions=pa.Table.from_pylist(acc.conditions, schema=CONDITIONS),
        medications=pa.Table.from_pylist(acc.medications, schema=MEDICATIONS),
        waveforms=pa.Table.from_pylist(acc.waveforms, schema=WAVEFORMS),
    )
