"""HL7 version 2 in: ORU^R01 results, ADT patients and visits (A01 admit, A02 transfer, A03
discharge, A04 register, A08 update, A11 cancel admit, A13 cancel discharge, A40 merge), batch
files, parsed with python-hl7.

A file that is not HL7 v2 at all (segments before a message header, two batch headers, a file
without messages) is rejected with python-hl7's reason and the file name; a message that cannot
be parsed inside a readable file is quarantined and the others are read. Every OBX is accounted
for: numeric results (value types NM and SN) with a LOINC code — coding system ``LN``, or a
local code found in the mapping table — become observations in the code's canonical unit; the
rest are quarantined with the reason and the location (message control id, OBX set id).

* OBX-11 gives the result's status (``C`` corrects, ``W``/``D`` retract, ``P`` is preliminary;
  ``X`` stores nothing), see :mod:`vitaltwin.data.versions`;
* SN keeps its comparator (``<^0.5`` is stored as 0.5 with comparator ``<``); a ratio, range or
  categorical SN is quarantined with that reason;
* a local label (``ABP-M`` vs ``NBP-M``, :data:`vitaltwin.data.vocabulary.LOCAL_METHODS`) or
  a device's IEEE 11073 reference id (``MDC_PRESS_BLD_ART_MEAN``,
  :data:`vitaltwin.data.vocabulary.MDC_CODES`, with MDC units) says how it was measured;
* times without a zone are read in the zone of MSH-7 when it has one, else in the sender's zone
  (``sender_tz``, default UTC), and flagged in ``quality``; an impossible time is quarantined.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import hl7
import pyarrow as pa

from vitaltwin.data import Record
from vitaltwin.data.schema import COMPARATORS, ENCOUNTERS, PATIENT_EVENTS, parse_birth_date
from vitaltwin.data.vocabulary import (
    LOCAL_CODES,
    LOCAL_METHODS,
    MDC_CODES,
    MDC_UNITS,
    UCUM_ALIASES,
    generic,
)
from vitaltwin.interop._errors import ReadError
from vitaltwin.interop._records import Records


def load_code_table(path: Path) -> dict[str, str]:
    """A site's local-code table: CSV with columns ``local_code,loinc`` (header required).

    Entries are added to (and override) :data:`LOCAL_CODES`; a malformed row raises
    :class:`Hl7Error` naming the file and line."""
    import csv

    table = dict(LOCAL_CODES)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise Hl7Error(f"{path}: cannot read ({exc})") from None
    for i, row in enumerate(rows, start=2):
        local, loinc = (row.get("local_code") or "").strip(), (row.get("loinc") or "").strip()
        if not local or not re.fullmatch(r"\d{1,7}-\d", loinc):
            raise Hl7Error(f"{path}: line {i}: need local_code and a LOINC code, got {row}")
        table[local.upper()] = loinc
    return table


class Hl7Error(ReadError):
    """An HL7 v2 file or message that cannot be parsed; names the file and the reason."""


def _normalize(text: str) -> str:
    return re.sub(r"\r\n|\n", "\r", text).strip("\r\x0b\x1c ")


def _check_delimiters(header: str) -> None:
    """The delimiters a header segment declares (the field separator after ``MSH``, then the
    encoding characters of MSH-2) must be distinct and not letters or digits: python-hl7
    asserts on repeated ones (an AssertionError, also caught by the callers)."""
    sep = header[3:4]
    enc = header[4:].split(sep, 1)[0] if sep else ""
    chars = sep + enc[:4]
    if not sep or len(set(chars)) != len(chars) or any(c.isalnum() or c.isspace() for c in chars):
        raise ValueError(f"invalid delimiters {chars!r} in {header[:3]} (MSH-1/MSH-2)")


def messages(text: str, where: str) -> Iterator[tuple[str, Any]]:
    """``(text, parsed message)`` for each message of a file or stream (one message, several,
    or FHS/BHS batches); a message that cannot be parsed comes as ``(text, Hl7Error)`` so that
    the others are still read. Raises :class:`Hl7Error` when the input is not HL7 v2 at all."""
    t = _normalize(text)
    if not t:
        raise Hl7Error(f"{where}: empty")
    if t.startswith(("FHS", "BHS")):
        try:
            for header in re.findall(r"(?:^|\r)((?:FHS|BHS|MSH)[^\r]*)", t):
                _check_delimiters(header)
            parsed = hl7.parse_file(t)  # a File of Batches, with or without FHS/BHS
            found = [(str(m), m) for batch in parsed for m in batch]
        except (hl7.ParseException, IndexError, KeyError, ValueError, AssertionError) as exc:
            raise Hl7Error(f"{where}: not a parsable HL7 v2 batch ({exc!r})") from None
        if not found:
            raise Hl7Error(f"{where}: batch without messages")
        yield from found
        return
    if not t.startswith("MSH"):
        raise Hl7Error(f"{where}: does not start with MSH, BHS or FHS")
    for part in re.split(r"\r(?=MSH\|)", t):
        try:
            _check_delimiters(part)
            msg = hl7.parse(part)
            msg.segment("MSH")
        except (hl7.ParseException, IndexError, KeyError, ValueError, AssertionError) as exc:
            yield part, Hl7Error(f"not a parsable HL7 v2 message ({exc!r})")
        else:
            yield part, msg


class _BadTimeError(ValueError):
    """An HL7 timestamp that is not a valid DTM."""


def _ts(raw: str, tz: tzinfo) -> tuple[datetime, bool] | None:
    """``(UTC time, zone assumed)`` of an HL7 DTM; None when empty; :class:`_BadTimeError` when
    it is not a valid time (``20261399250000``). A time without an offset is read in ``tz``."""
    if not raw.strip():
        return None
    m = re.fullmatch(r"(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?", raw.strip())
    if not m:
        raise _BadTimeError(raw)
    d, hh, mm, ss, off = m.groups()
    try:
        t = datetime.strptime(d + (hh or "00") + (mm or "00") + (ss or "00"), "%Y%m%d%H%M%S")
        if off:
            t = datetime.strptime(t.strftime("%Y%m%d%H%M%S") + off, "%Y%m%d%H%M%S%z")
            return t.astimezone(UTC), False
        return t.replace(tzinfo=tz).astimezone(UTC), True
    except (ValueError, OverflowError):
        raise _BadTimeError(raw) from None


def _message_zone(msh: Any, sender_tz: tzinfo) -> tuple[tzinfo, str]:
    """The zone of zone-less times in a message: MSH-7's offset when it has one, else the
    configured sender zone; with the flag stored on values timed in it."""
    m = re.fullmatch(r"\d{8,14}(?:\.\d+)?([+-])(\d{2})(\d{2})", _field(msh, 7).strip())
    if m:
        sign = 1 if m.group(1) == "+" else -1
        offset = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        if offset < timedelta(hours=24):
            return timezone(sign * offset), "time zone from MSH-7"
    return sender_tz, "time zone assumed (sender_tz)"


@dataclass
class _Acc(Records):
    encounters: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


def _field(seg: Any, i: int) -> str:
    try:
        return str(seg[i])
    except IndexError:
        return ""


def _oru(
    acc: _Acc, msg: Any, where: str, local: Mapping[str, str], tz: tzinfo, zone_flag: str
) -> None:
    pid = _field(msg.segment("PID"), 3).split("^")[0] if _has(msg, "PID") else ""
    obr_time = _field(msg.segment("OBR"), 7) if _has(msg, "OBR") else ""
    if not _has(msg, "OBX"):
        acc.bad(where, "OBX", "ORU^R01 without results (no OBX segment)")
        return
    for obx in msg.segments("OBX"):
        pos = f"{where} OBX {_field(obx, 1) or '?'}"
        vtype, ident, raw, unit = (_field(obx, 2), _field(obx, 3), _field(obx, 5), _field(obx, 6))
        if not pid:
            acc.bad(pos, "PID-3", "no patient identifier")
            continue
        parts = ident.split("^")
        code = (
            parts[0]
            if len(parts) > 2 and parts[2] == "LN"
            else (
                local.get(parts[0].upper()) or local.get(parts[1].upper() if len(parts) > 1 else "")
            )
        )
        if code is None and re.fullmatch(r"\d{1,7}-\d", parts[0]):
            code = parts[0]  # a LOINC-shaped identifier without the coding system
        mdc = _mdc(parts[1:2] + parts[4:5])  # the identifier's text, or its alternate's
        if code is None and mdc is not None:  # a device's IEEE 11073 reference id
            code = mdc[0]
        method = _method(_field(obx, 17).split("^")[:2], mdc, parts)
        if code is not None:
            code, stated = generic(code)
            method = method or stated
        if vtype not in ("NM", "SN"):
            acc.bad(pos, "OBX-2", f"value type {vtype or '(none)'} is not numeric", raw)
            continue
        if code is None:
            acc.bad(pos, "OBX-3", f"code {ident!r} not mapped to LOINC", raw)
            continue
        comparator, num, why = _numeric(vtype, raw)
        if why:
            acc.bad(pos, "OBX-5", why, raw)
            continue
        status = RESULT_STATUS.get(_field(obx, 11).strip().upper())
        if status is None:
            acc.bad(pos, "OBX-11", f"result status {_field(obx, 11)!r}: no result to store", raw)
            continue
        try:
            value = float(num)
        except ValueError:
            acc.bad(pos, "OBX-5", "value is not a number", raw)
            continue
        raw_time = _field(obx, 14) or obr_time
        try:
            ts = _ts(raw_time, tz)
        except _BadTimeError:
            acc.bad(pos, "OBX-14", "observation time is not a valid HL7 time", raw_time)
            continue
        if ts is None:
            acc.bad(pos, "OBX-14", "no observation time", raw_time)
            continue
        t, assumed = ts
        unit_parts = unit.split("^")
        ucum = (
            MDC_UNITS[unit_parts[1].strip().upper()]
            if len(unit_parts) > 1 and unit_parts[1].strip().upper() in MDC_UNITS
            else UCUM_ALIASES.get(unit_parts[0].lower(), unit_parts[0])
        )
        got = acc.checked(code, value, ucum, pos, "OBX-6", "OBX-5")
        if got is None:
            continue
        value, ucum = got
        acc.add(
            pid,
            t,
            code,
            value,
            ucum,
            pos,
            zone_flag if assumed else None,
            _field(obx, 18).split("~")[0] or None,  # equipment instance identifier, as sent
            comparator,
            status,
            method,
        )


RESULT_STATUS = {
    "": "final",
    "F": "final",
    "C": "corrected",
    "P": "preliminary",
    "R": "preliminary",  # entered, not verified
    "S": "preliminary",  # partial
    "I": "preliminary",  # specimen in lab, result pending
    "W": "entered-in-error",  # wrong: retracts the result
    "D": "entered-in-error",  # deletes the result
}
"""HL7 OBX-11 (table 0085) -> the record's status; X (cannot be obtained) and others store
nothing (quarantined with the reason)."""


def _numeric(vtype: str, raw: str) -> tuple[str, str, str | None]:
    """(comparator, number, why not) of an NM or SN value. SN is ``comparator^num1`` for a
    number or a censored value (``<^0.5``, ``>=^600``); a ratio (``1^:^2``), a range
    (``1^-^3``) or a categorical suffix (``^10^+``) is not one number: it is kept in the
    quarantine with that reason rather than stored as a number it is not."""
    if vtype == "NM":
        return "=", raw.strip(), None
    parts = raw.split("^")
    if re.fullmatch(r"[+-]?\d+(\.\d*)?", parts[0].strip()):
        parts = ["", *parts]  # senders often drop the empty comparator: 1^:^2 for ^1^:^2
    comparator = parts[0].strip() or "="
    if len(parts) > 2 and any(p.strip() for p in parts[2:]):
        kind = {":": "a ratio", "/": "a ratio", "-": "a range", "+": "a categorical value"}
        return "=", "", f"SN value is {kind.get(parts[2].strip(), 'structured')}, not one number"
    if comparator not in COMPARATORS:
        return "=", "", f"SN comparator {comparator!r} is not <, <=, >, >= or ="
    return comparator, parts[1].strip() if len(parts) > 1 else "", None


def _method(obx17: list[str], mdc: tuple[str, str | None] | None, obx3: list[str]) -> str | None:
    """How a result was measured: OBX-17 (observation method: an MDC term or a local label),
    else the MDC term of OBX-3 (a PCD-01 result coded LOINC with an MDC alternate), else a local
    label in OBX-3 (not a LOINC code's display text, which says nothing of the method)."""
    labels = [x.strip().upper() for x in obx17]
    if obx3[2:3] != ["LN"]:
        labels += [x.strip().upper() for x in obx3[:2]]
    explicit = _mdc(obx17)
    return next(
        (
            m
            for m in (
                explicit[1] if explicit else None,
                *(LOCAL_METHODS.get(x) for x in labels[: len(obx17)]),
                mdc[1] if mdc else None,
                *(LOCAL_METHODS.get(x) for x in labels[len(obx17) :]),
            )
            if m
        ),
        None,
    )


def _mdc(texts: list[str]) -> tuple[str, str | None] | None:
    """(LOINC, method) of the first IEEE 11073 reference id among ``texts``."""
    return next(
        (MDC_CODES[t.strip().upper()] for t in texts if t.strip().upper() in MDC_CODES), None
    )


def _has(msg: Any, name: str) -> bool:
    try:
        msg.segment(name)
    except KeyError:
        return False
    return True


ADT_EVENTS = ("A01", "A02", "A03", "A04", "A08", "A11", "A13", "A40")
"""ADT triggers stored: admit, transfer, discharge, register, update, cancel admit, cancel
discharge, merge patient (identifier list)."""
_STATUS = {"A01": "in-progress", "A04": "in-progress", "A13": "in-progress",
           "A03": "finished", "A11": "cancelled"}  # fmt: skip
_NEEDS_VISIT = ("A02", "A03", "A11", "A13")  # they change a stay that must be named


def _time(acc: _Acc, seg: Any, i: int, where: str, tz: tzinfo) -> datetime | None:
    """A time field; an invalid one is quarantined and read as absent."""
    try:
        got = _ts(_field(seg, i), tz)
    except _BadTimeError:
        acc.bad(where, f"{seg[0]}-{i}", "not a valid HL7 time", _field(seg, i))
        return None
    return got[0] if got else None


def _adt(acc: _Acc, msg: Any, msh: Any, event: str, where: str, tz: tzinfo) -> None:
    """One ADT message: the patient's demographics (PID), the stay's new state (PV1: visit
    number PV1-19, location PV1-3, admit PV1-44, discharge PV1-45; the trigger's status) and an
    event row keeping this version (:data:`vitaltwin.data.schema.PATIENT_EVENTS`)."""
    if not _has(msg, "PID"):
        acc.bad(
            where,
            "PID",
            "ADT message without a PID segment (are its segments separated by carriage returns?)",
            str(msg)[:200],
        )
        return
    pid_seg = msg.segment("PID")
    pid = _field(pid_seg, 3).split("^")[0]
    if not pid:
        acc.bad(where, "PID-3", "no patient identifier")
        return
    prior = None
    if event == "A40":
        prior = _field(msg.segment("MRG"), 1).split("^")[0] if _has(msg, "MRG") else ""
        if not prior or prior == pid:
            acc.bad(where, "MRG-1", "merge without a prior patient identifier (MRG-1)")
            return
    sex = {"M": "male", "F": "female"}.get(_field(pid_seg, 8))
    birth = parse_birth_date(_field(pid_seg, 7))
    evn = msg.segment("EVN") if _has(msg, "EVN") else None
    when = None
    if evn is not None:
        when = _time(acc, evn, 6, where, tz) or _time(acc, evn, 2, where, tz)
    when = when or _time(acc, msh, 7, where, tz)
    visit = location = prior_location = None
    if _has(msg, "PV1"):
        pv1 = msg.segment("PV1")
        visit = _field(pv1, 19).split("^")[0] or None
        location = _field(pv1, 3) or None
        prior_location = _field(pv1, 6) or None
        if visit is None and event in _NEEDS_VISIT:
            acc.bad(
                where, "PV1-19", f"{event} without a visit number: which stay it changes is unknown"
            )
        elif event != "A40":
            _encounter(acc, pv1, pid, visit or f"{pid}:{_field(msh, 10)}", event, where, tz)
    elif event in _NEEDS_VISIT:
        acc.bad(where, "PV1", f"{event} without a PV1 segment: which stay it changes is unknown")
    if prior is not None:  # A40: the prior key is retired into this one
        if prior not in acc.patients:
            acc.patient(prior, None)
        acc.patients[prior]["merged_into"] = pid
    earlier = acc.patients.get(pid)
    acc.patient(pid, sex, birth)
    if earlier is not None:  # what this message leaves out, an earlier one of the file said
        acc.patients[pid] = {
            k: v if v is not None else earlier[k] for k, v in acc.patients[pid].items()
        }
    acc.events.append(
        {
            "patient_id": pid,
            "event": event,
            "event_time": when,
            "encounter_id": visit,
            "location": location,
            "prior_location": prior_location,
            "prior_patient_id": prior,
            "sex": sex,
            "birth_date": birth,
            "source": acc.source,
            "position": where,
        }
    )


def _encounter(
    acc: _Acc, pv1: Any, pid: str, visit: str, event: str, where: str, tz: tzinfo
) -> None:
    """The stay's state after this event, applied over what earlier messages of the file said
    (the store applies it over what it holds the same way: ``Store._update``)."""
    state = {
        "encounter_id": visit,
        "patient_id": pid,
        "start_time": _time(acc, pv1, 44, where, tz),
        "end_time": _time(acc, pv1, 45, where, tz),
        "kind": {"I": "inpatient", "O": "outpatient", "E": "emergency"}.get(_field(pv1, 2)),
        "source": acc.source,
        "status": _STATUS.get(event),
        "location": _field(pv1, 3) or None,
    }
    if state["status"] is None and state["end_time"] is not None:
        state["status"] = "finished"
    before = acc.encounters.get(visit, {})
    merged = {k: v if v is not None else before.get(k) for k, v in state.items()}
    if state["status"] == "in-progress":  # admitted again or the discharge cancelled: no end
        merged["end_time"] = state["end_time"]
    acc.encounters[visit] = merged


def _message(
    acc: _Acc, msg: Any, msh: Any, where: str, local_codes: Mapping[str, str], sender_tz: tzinfo
) -> None:
    mtype = _field(msh, 9)
    kind = mtype.split("^")[:2]
    tz, zone_flag = _message_zone(msh, sender_tz)
    if kind == ["ORU", "R01"]:
        _oru(acc, msg, where, local_codes, tz, zone_flag)
    elif kind[0] == "ADT" and len(kind) > 1 and kind[1] in ADT_EVENTS:
        _adt(acc, msg, msh, kind[1], where, tz)
    else:
        acc.bad(where, "MSH-9", f"message type {mtype or '(none)'} is not stored")


def convert_text(
    text: str,
    source: str,
    local_codes: Mapping[str, str] = LOCAL_CODES,
    sender_tz: tzinfo = UTC,
    received: datetime | None = None,
) -> Record:
    """Convert an HL7 v2 file or message (raises :class:`Hl7Error` for structure errors)."""
    acc = _Acc(source, received or datetime.now(UTC))
    for k, (part, msg) in enumerate(messages(text, source)):
        if isinstance(msg, Hl7Error):
            acc.bad(f"message {k + 1}", "MSH", str(msg), part)
            continue
        msh = msg.segment("MSH")
        where = f"message {k + 1} ({_field(msh, 10) or 'no control id'})"
        try:
            _message(acc, msg, msh, where, local_codes, sender_tz)
        except Exception as exc:  # a message python-hl7 parsed but we cannot read: its trace
            acc.bad(where, "message", f"message could not be read ({type(exc).__name__}: {exc})")
    return acc.converted(
        encounters=pa.Table.from_pylist(list(acc.encounters.values()), schema=ENCOUNTERS),
        patient_events=pa.Table.from_pylist(acc.events, schema=PATIENT_EVENTS),
    )


def convert_file(path: Path, **kwargs: Any) -> Record:
    """Read and convert one HL7 v2 file."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise Hl7Error(f"{path}: cannot read ({exc})") from None
    return convert_text(text, str(path), **kwargs)
