"""The fast FHIR R4 validator (``interop._r4``) accepts and rejects exactly what fhirclient's
models do: on every shared FHIR sample, on hand-made invalid resources, and on Hypothesis-made
mutations of valid ones."""

from __future__ import annotations

import copy
import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitaltwin.interop import _r4
from vitaltwin.interop.fhir import convert_resources

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir"

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp1",
    "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
    "subject": {"reference": "urn:uuid:p1", "display": "Doe"},
    "effectiveDateTime": "2026-11-22T08:30:00+01:00",
    "_effectiveDateTime": {"extension": [{"url": "http://x", "valueString": "y"}]},
    "issued": "2026-11-22T08:30:01.123Z",
    "device": {"display": "Philips MX800"},
    "method": {"text": "invasive"},
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "unit": "mm[Hg]", "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 80.5, "comparator": "<", "code": "mm[Hg]"},
            "interpretation": [{"text": "low"}],
        },
    ],
    "contained": [{"resourceType": "Device", "id": "d1", "manufacturer": "Philips"}],
}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "urn:mrn", "value": "123"}],
    "name": [{"family": "Doe", "given": ["J", "K"]}],
    "gender": "female",
    "birthDate": "1960-01",
    "deceasedBoolean": False,
    "multipleBirthInteger": 2,
    "address": [{"postalCode": "12345", "period": {"start": "2020"}}],
}
ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "in-progress",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ICU"},
    "subject": {"reference": "Patient/p1"},
    "period": {"start": "2026-11-20T10:00:00Z"},
    "location": [{"location": {"reference": "Location/icu-3"}, "status": "active"}],
}
SEEDS = [OBSERVATION, PATIENT, ENCOUNTER]


def _agree(resource: dict[str, Any]) -> None:
    mine = _r4.errors(resource)
    reference = _r4.fhirclient_errors(resource)
    assert bool(mine) == bool(reference), (resource, mine, reference)


def test_seeds_are_valid() -> None:
    for seed in SEEDS:
        assert _r4.errors(seed) == [] and _r4.fhirclient_errors(seed) == []


INVALID = [
    ("Observation.code: required", {k: v for k, v in OBSERVATION.items() if k != "code"}),
    ("Observation.foo: not a property", {**OBSERVATION, "foo": 1}),
    ("Observation.status: expected str", {**OBSERVATION, "status": 3}),
    ("Observation.category: expected a list", {**OBSERVATION, "category": {"text": "x"}}),
    ("Observation.code: expected a single value", {**OBSERVATION, "code": []}),
    ("'2026-02-30' is not a valid", {**OBSERVATION, "effectiveDateTime": "2026-02-30"}),
    ("is not a valid FHIRInstant", {**OBSERVATION, "issued": "2026-11-22"}),
    ("Patient.birthDate: expected a FHIRDate string", {**PATIENT, "birthDate": 1960}),
    ("resourceType '' given for Resource", {**OBSERVATION, "contained": [{"resourceType": ""}]}),
    (
        "a Coding where Resource is expected",
        {**OBSERVATION, "contained": [{"resourceType": "Coding"}]},
    ),
    (
        "Observation.subject.reference: expected str",
        {**OBSERVATION, "subject": {"reference": ["a"]}},
    ),
    ("Patient._gender: not a property", {**PATIENT, "_gender": None}),
]


@pytest.mark.parametrize(("message", "resource"), INVALID, ids=[m for m, _ in INVALID])
def test_invalid_resources_are_rejected_with_the_path(
    message: str, resource: dict[str, Any]
) -> None:
    _agree(resource)
    assert any(message in e for e in _r4.errors(resource)), _r4.errors(resource)


def test_quirks_of_fhirclient_are_kept() -> None:
    """What fhirclient accepts, the validator accepts too (same verdicts, not better ones)."""
    quirks = [
        {**PATIENT, "name": [{"given": ["J", 5]}]},  # only a list's first item is type-checked
        {**OBSERVATION, "value": {"anything": 1}},  # a choice group's own name is a valid key
        {**PATIENT, "multipleBirthInteger": 2.5},  # any number where a number is expected
        {**OBSERVATION, "component": []},  # an empty list
        {**OBSERVATION, "note": None},  # null is absence
    ]
    for resource in quirks:
        _agree(resource)
        assert _r4.errors(resource) == []


def _slots(value: object, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON value, depth first."""
    if isinstance(value, dict):
        for k in value:
            out.append((value, k))
            _slots(value[k], out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((value, i))
            _slots(v, out)
    return out


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "",
            "x",
            "final",
            "2026",
            "2026-02-30",
            "2026-13-01",
            "2026-11-22T08:30:00",
            "2026-11-22T08:30:00Z",
            "2026-11-22T25:00:00Z",
            "08:30:00",
            "Observation",
            "Patient",
            "Coding",
            "Device",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "id",
                    "text",
                    "coding",
                    "code",
                    "value",
                    "system",
                    "reference",
                    "start",
                    "extension",
                    "url",
                    "valueString",
                    "_id",
                    "x",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)
keys = st.sampled_from(
    [
        "x",
        "value",
        "valueQuantity",
        "valueString",
        "_status",
        "_value",
        "resourceType",
        "extension",
        "modifierExtension",
        "text",
        "id",
        "code",
        "coding",
        "display",
    ]
)


@settings(
    max_examples=int(os.environ.get("VITALTWIN_HYPOTHESIS_EXAMPLES", "60")) * 5, deadline=None
)
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_mutations_get_the_same_verdict_as_fhirclient(seed: dict[str, Any], data: Any) -> None:
    resource = copy.deepcopy(seed)
    for _ in range(data.draw(st.integers(1, 3))):
        slots = _slots(resource, [])
        container, key = slots[data.draw(st.integers(0, len(slots) - 1))]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[key] = data.draw(json_values)
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[data.draw(keys)] = data.draw(json_values)
        else:
            container.append(data.draw(json_values))
        if not isinstance(resource, dict) or not resource:
            return
    _agree(resource)


def _shared_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    files = (
        sorted((SHARED / "r4-examples").glob("*.json"))
        + sorted((SHARED / "synthea").glob("*.json.gz"))[:3]
    )
    for f in files:
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            doc = json.load(fh)
        out.append(doc)
        out += [e["resource"] for e in doc.get("entry", []) if isinstance(e.get("resource"), dict)]
    return out


@pytest.mark.skipif(not SHARED.exists(), reason="shared FHIR samples not present")
def test_every_shared_resource_gets_the_same_verdict() -> None:
    resources = _shared_resources()
    assert len(resources) > 1000
    for resource in resources:
        _agree(resource)


def test_the_reader_rejects_the_same_resources_with_either_validator() -> None:
    resources: list[tuple[str, dict[str, Any] | str, str | None]]
    resources = [(f"line {i}", r, None) for i, (_, r) in enumerate(INVALID)] + [
        ("seed", s, None) for s in SEEDS
    ]
    when = datetime(2026, 12, 1, tzinfo=UTC)
    fast = convert_resources(resources, "x", when)
    reference = convert_resources(resources, "x", when, validator="fhirclient")
    invalid = [p for p in fast.quarantine.column("reason").to_pylist() if "invalid FHIR" in p]
    assert len(invalid) == len(INVALID)
    assert fast.quarantine.column("position").to_pylist() == (
        reference.quarantine.column("position").to_pylist()
    )
    assert fast.observations.equals(reference.observations)
