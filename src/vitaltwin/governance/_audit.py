"""The audit trail: append-only, hash-chained, with signed checkpoints.

Every entry is one JSON line holding its sequence number, the time, the previous entry's hash,
what happened (who, role, patients, action, operation, purpose, outcome, break-glass reason,
request id) and its own hash: SHA-256 over the previous hash and the entry's canonical JSON.
Editing an entry breaks its hash; removing, inserting or reordering breaks the sequence and the
links. Every ``checkpoint_every`` entries (and on close) a checkpoint entry signs the chain's
head with Ed25519, so whoever rewrites the whole chain after an edit also needs the signing
key. The file is created owner-only. What the file alone cannot show is a cut of its end back
to a checkpoint: each checkpoint is therefore also written to the service's log (a separate
system in a hospital) with its sequence number and hash, and :func:`verify_trail` reports how
far the signatures reach.

:func:`audit_event` renders an entry as a FHIR R4 AuditEvent after IHE Basic Audit Log Patterns
(BALP): RESTful operation type, the interaction as subtype, the user as requesting agent with
role, the patients as entities, the request id, the purpose of use (v3 ActReason; ``BTG`` for
break-glass).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger("vitaltwin.audit")

GENESIS = "0" * 64
ACTIONS = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "execute"}
"""FHIR AuditEvent.action codes."""


class AuditError(RuntimeError):
    """The trail cannot be opened or written (names the file and why)."""


@dataclass(frozen=True)
class AuditRecord:
    """What happened, as the service saw it."""

    action: str  # C R U D E
    operation: str  # e.g. "GET /v1/patients/{patient_id}", "sign-in"
    who: str
    role: str
    outcome: int  # HTTP status (2xx success, 401/403 refused)
    patients: tuple[str, ...] = ()
    purpose: str = "TREAT"  # v3 ActReason purpose of use
    break_glass: str | None = None  # the stated reason, when the glass was broken
    request_id: str | None = None
    source: str | None = None  # the caller's address
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"audit action {self.action!r}: one of {', '.join(ACTIONS)}")


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash(prev: str, entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(prev.encode() + _canonical(body)).hexdigest()


def _signed_text(seq: int, head: str) -> bytes:
    return f"vitaltwin-audit:{seq}:{head}".encode()


class AuditTrail:
    """The trail in the file at ``path`` (appended to when it exists), checkpoints signed with
    ``key``. Thread-safe."""

    def __init__(
        self,
        path: Path,
        key: Ed25519PrivateKey,
        *,
        checkpoint_every: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = Path(path)
        self._key = key
        self.public_key = key.public_key()
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self._lock = threading.Lock()
        self.seq, self.head = 0, GENESIS
        self._since_checkpoint = 0
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._resume()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def _last_line(self) -> bytes:
        """The file's last line, however long (read backwards in growing chunks)."""
        size = self.path.stat().st_size
        chunk = 65536
        with open(self.path, "rb") as f:
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read().rstrip(b"\n")
                cut = data.rfind(b"\n")
                if cut >= 0 or start == 0:
                    return data[cut + 1 :]
                chunk *= 4

    def _resume(self) -> None:
        try:
            last = json.loads(self._last_line())
            ok = _hash(str(last["prev"]), last) == last["hash"]
        except (json.JSONDecodeError, KeyError, TypeError):
            ok = False
        if not ok:
            raise AuditError(
                f"audit trail {self.path}: its last entry is damaged; run `vitaltwin audit "
                "verify` and keep the file as evidence before starting a new trail"
            )
        self.seq, self.head = int(last["seq"]), str(last["hash"])

    def _append(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        entry = {"seq": self.seq, "time": self.clock().isoformat(), "prev": self.head, **entry}
        entry["hash"] = _hash(self.head, entry)
        self._file.write(_canonical(entry).decode() + "\n")
        self._file.flush()
        self.head = entry["hash"]
        return entry

    def record(self, what: AuditRecord) -> int:
        """Append one entry; returns its sequence number."""
        body = asdict(what)
        body["patients"] = list(what.patients)
        with self._lock:
            entry = self._append({"kind": "event", **body})
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.checkpoint_every:
                self._checkpoint()
        return int(entry["seq"])

    def _checkpoint(self) -> None:
        covers, head = self.seq, self.head
        sig = self._key.sign(_signed_text(covers, head))
        self._append({"kind": "checkpoint", "covers": covers,
                      "signature": base64.b64encode(sig).decode()})  # fmt: skip
        self._file.flush()
        os.fsync(self._file.fileno())
        self._since_checkpoint = 0
        log.info("audit checkpoint", extra={"fields": {"audit_seq": covers, "audit_head": head}})

    def checkpoint(self) -> None:
        """Sign the chain's head now (when anything was added since the last checkpoint)."""
        with self._lock:
            if self._since_checkpoint:
                self._checkpoint()

    def close(self) -> None:
        self.checkpoint()
        with self._lock:
            self._file.close()


def read_trail(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of a trail (events and checkpoints), in file order."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@dataclass
class TrailCheck:
    """What :func:`verify_trail` found."""

    entries: int = 0
    events: int = 0
    checkpoints: int = 0
    signed_through: int = 0  # the last sequence number a valid signature covers
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_trail(path: Path, key: Ed25519PublicKey) -> TrailCheck:
    """Check every entry's hash, sequence and link, and every checkpoint's signature; the
    problems name the line and what is wrong (edited, removed, inserted or reordered)."""
    out = TrailCheck()
    expected_seq, prev = 1, GENESIS
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                seq, stated_prev, stated_hash = int(e["seq"]), str(e["prev"]), str(e["hash"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                out.problems.append(f"line {n}: not an audit entry")
                continue
            out.entries += 1
            if _hash(stated_prev, e) != stated_hash:
                out.problems.append(f"line {n} (seq {seq}): content does not match its hash "
                                    "(edited)")  # fmt: skip
            if seq != expected_seq:
                out.problems.append(f"line {n}: seq {seq} where {expected_seq} was expected "
                                    "(entries removed, inserted or reordered)")  # fmt: skip
            elif stated_prev != prev:
                out.problems.append(f"line {n} (seq {seq}): does not link to the entry before "
                                    "(removed, inserted or reordered)")  # fmt: skip
            if e.get("kind") == "checkpoint":
                out.checkpoints += 1
                try:
                    key.verify(base64.b64decode(e["signature"]),
                               _signed_text(int(e["covers"]), stated_prev))  # fmt: skip
                    if int(e["covers"]) == seq - 1:
                        out.signed_through = seq
                    else:
                        out.problems.append(f"line {n} (seq {seq}): checkpoint covers "
                                            f"{e['covers']}, not the entry before it")  # fmt: skip
                except (InvalidSignature, KeyError, ValueError):
                    out.problems.append(f"line {n} (seq {seq}): checkpoint signature invalid")
            else:
                out.events += 1
            expected_seq, prev = seq + 1, stated_hash
    return out


_INTERACTION = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "operation"}
_BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."


def audit_event(entry: dict[str, Any]) -> dict[str, Any]:
    """A trail entry as a FHIR R4 AuditEvent (IHE BALP; module docstring)."""
    action = str(entry["action"])
    patients = list(entry.get("patients") or [])
    search = action == "R" and len(patients) != 1
    profile = (
        ("PatientQuery" if search else "Patient" + _INTERACTION[action].capitalize())
        if patients
        else _INTERACTION[action].capitalize()
    )
    status = int(entry["outcome"])
    outcome = "0" if status < 400 else ("4" if status < 500 else "8")
    purpose = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                "code": str(entry.get("purpose") or "TREAT")}]  # fmt: skip
    if entry.get("break_glass"):
        purpose.append({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "BTG", "display": "break the glass"})  # fmt: skip
    entities: list[dict[str, Any]] = [
        {"what": {"reference": f"Patient/{p}"},
         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                  "code": "1", "display": "Person"},
         "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                  "code": "1", "display": "Patient"}}
        for p in patients
    ]  # fmt: skip
    if entry.get("request_id"):
        entities.append({"what": {"identifier": {"value": str(entry["request_id"])}},
                         "type": {"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/"
                                  "BasicAuditEntityType", "code": "XrequestId"},
                         "description": str(entry["operation"])})  # fmt: skip
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"vitaltwin-{entry['seq']}",
        "meta": {"profile": [_BALP + profile]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction",
                     "code": "search-type" if search and patients else _INTERACTION[action]}],
        "action": action,
        "recorded": str(entry["time"]),
        "outcome": outcome,
        "outcomeDesc": f"HTTP {status}" + (f"; break-glass: {entry['break_glass']}"
                                           if entry.get("break_glass") else ""),
        "purposeOfEvent": [{"coding": purpose}],
        "agent": [{"type": {"coding": [{
                       "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                       "code": "IRCP", "display": "information recipient"}]},
                   "who": {"identifier": {"value": str(entry["who"])}},
                   "role": [{"text": str(entry["role"])}],
                   "requestor": True,
                   **({"network": {"address": str(entry["source"]), "type": "2"}}
                      if entry.get("source") else {})}],
        "source": {"observer": {"display": "vitaltwin"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/"
                             "security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": entities,
    }  # fmt: skip
    return event
