"""Who may do what: roles as bundles of SMART on FHIR-style scopes and a patient rule.

A scope reads ``context/Resource.permissions`` (``user/Observation.rs``): the context is
``patient`` (one patient's app), ``user`` (what the signed-in user may see) or ``system`` (a
backend client); permissions are SMART v2's c(reate), r(ead), u(pdate), d(elete), s(earch).
A scope held in a wider context covers a narrower one (``system`` > ``user`` > ``patient``),
``*`` covers every resource.

Scopes say *what kind* of data; the role's patient rule says *whose*: ``assigned`` (the
patients of the user's units and care team), ``all`` (backend clients and devices, which
serve the whole hospital) or ``none`` (aggregates only: a data scientist sees the alert burden
and the models' monitoring, not a patient's chart). Everything not granted is denied. Roles
that treat patients may break the glass: open a patient outside their assignment with a stated
reason, always audited and reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PatientRule = Literal["assigned", "all", "none"]

SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([cruds]+)")
_WIDER = {
    "patient": {"patient", "user", "system"},
    "user": {"user", "system"},
    "system": {"system"},
}


def granted(asked: str, held: tuple[str, ...]) -> bool:
    """Whether scopes ``held`` cover scope ``asked`` (module docstring)."""
    want = SCOPE.fullmatch(asked)
    if want is None:
        raise ValueError(f"not a scope: {asked!r}")
    context, resource, perms = want.groups()
    for h in held:
        have = SCOPE.fullmatch(h)
        if have is None:
            continue
        if (
            have.group(1) in _WIDER[context]
            and have.group(2) in ("*", resource)
            and set(perms) <= set(have.group(3))
        ):
            return True
    return False


@dataclass(frozen=True)
class Role:
    """A role: its scopes, whose patients it sees, whether it may break the glass."""

    name: str
    scopes: tuple[str, ...]
    patients: PatientRule
    break_glass: bool
    description: str


_CHART = (
    "user/Patient.rs",
    "user/Observation.rs",
    "user/MedicationAdministration.rs",
    "user/RiskAssessment.rs",
    "user/Flag.rsu",
)

ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("clinician", _CHART, "assigned", True,
             "physician: the charts, twins, risk and alerts of the patients of their units and "
             "care team"),
        Role("nurse", _CHART, "assigned", True,
             "bedside nurse: as a clinician, for the patients of their unit and care team"),
        Role("charge_nurse", _CHART, "assigned", True,
             "charge nurse: as a nurse; receives escalated alerts of their unit"),
        Role("data_scientist", ("user/RiskAssessment.rs", "user/Flag.rs"), "none", False,
             "the alert burden and the models' monitoring, never a patient's chart"),
        Role("administrator", ("system/Metrics.r",), "none", False,
             "operations: health, metrics, the ingest worker; no patient data"),
        Role("auditor", ("user/AuditEvent.rs",), "none", False,
             "reads and verifies the audit trail"),
        Role("device", ("system/*.c",), "all", False,
             "a monitor or device gateway: sends observations (and the patients and encounters "
             "they belong to), reads nothing"),
        Role("system", (), "all", False,
             "a backend client (EHR, integration engine): the scopes it was registered with"),
    )
}  # fmt: skip
"""Every role; the alert chain's roles (nurse, charge nurse, clinician) are among them."""


@dataclass(frozen=True)
class Identity:
    """Who is calling: subject, role, scopes, and the units and patients assigned to them
    (``all_patients`` for backend clients and devices)."""

    subject: str
    role: str
    scopes: tuple[str, ...]
    units: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()
    all_patients: bool = False

    @property
    def may_break_glass(self) -> bool:
        r = ROLES.get(self.role)
        return r is not None and r.break_glass

    def assigned(self, patient_id: str, unit: str | None) -> bool:
        """Whether this identity's assignment covers a patient (in ``unit``, if known)."""
        return (
            self.all_patients
            or patient_id in self.patients
            or (unit is not None and unit in self.units)
        )


def identity_for(
    subject: str,
    role: str,
    *,
    units: tuple[str, ...] = (),
    patients: tuple[str, ...] = (),
    scopes: tuple[str, ...] | None = None,
) -> Identity:
    """The identity of ``subject`` in ``role`` (its scopes unless ``scopes`` are given: a
    backend client's registered ones, or a narrower set)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    r = ROLES[role]
    held = r.scopes if scopes is None else scopes
    for s in held:
        if SCOPE.fullmatch(s) is None:
            raise ValueError(f"not a scope: {s!r}")
    return Identity(subject, role, tuple(held), units, patients, all_patients=r.patients == "all")
