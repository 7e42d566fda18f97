"""FHIR R4 structural validation with fhirclient's R4 models as the schema, without building
the models.

fhirclient (4.x) validates a resource by instantiating its Python model: every element becomes
an object and every object asks its class for its property list again. On Synthea
Observations that is ~90 % of the FHIR ingest time. This module reads the same property lists
(``elementProperties()``: JSON name, type, list or single, choice group, required) once per
class and walks the JSON with the rules of ``FHIRAbstractBase.update_with_json``:

- a property's value must have the declared type (numbers: any ``int`` or ``float``; of a
  list, fhirclient checks the first item's type only, and so does this walk); ``null`` counts
  as absent;
- element values must be objects (or lists of objects) and are checked recursively; date,
  dateTime, instant and time strings must parse under fhirclient's own date classes, which
  are called as they are;
- a required property (or one member of a required choice such as ``value[x]``) must be
  present; keys that are not properties, not ``_property`` (primitive extensions, present
  and not ``null``) and not a choice group's name are superfluous;
- a ``Resource``-typed property (``contained``, a Bundle entry) takes the class its
  ``resourceType`` names; a resource whose ``resourceType`` differs from its class is
  invalid; an unknown ``resourceType`` is checked as a bare ``Element``.

:func:`errors` returns what is wrong, one path each (empty: valid). It accepts and rejects
exactly what fhirclient accepts and rejects: ``tests/interop/test_r4.py`` compares the two on
every shared FHIR file and on Hypothesis-made mutations of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from fhirclient.models.fhirabstractbase import FHIRAbstractBase
from fhirclient.models.fhirabstractresource import FHIRAbstractResource
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.fhirelementfactory import FHIRElementFactory

_PRIMITIVE, _ELEMENT, _RESOURCE, _DATE = range(4)
_NUMBERS = (int, float)


@dataclass(frozen=True, slots=True)
class _Schema:
    cls: type
    name: str
    # JSON name -> (kind, type, is a list, the name a required check counts: the choice
    # group's, else the JSON name); type is a Python type, an element class or a date class
    props: dict[str, _Prop]
    groups: frozenset[str]  # choice group names: valid keys, never checked
    required: tuple[tuple[str, tuple[str, ...]], ...]  # (group, its JSON names)
    resource_type: str | None  # for resource classes: the resourceType they require


_Prop = tuple[int, Any, bool, str]
_SCHEMAS: dict[type, _Schema] = {}


def _schema(cls: type) -> _Schema:
    if (known := _SCHEMAS.get(cls)) is not None:
        return known
    props: dict[str, _Prop] = {}
    groups: set[str] = set()
    required: dict[str, list[str]] = {}
    for _, jsname, typ, is_list, of_many, not_optional in cls().elementProperties():
        if isinstance(typ, type) and issubclass(typ, FHIRDate):
            kind = _DATE
        elif isinstance(typ, type) and issubclass(typ, FHIRAbstractResource):
            kind = _RESOURCE
        elif isinstance(typ, type) and issubclass(typ, FHIRAbstractBase):
            kind = _ELEMENT
        else:
            kind = _PRIMITIVE
        props[jsname] = (kind, typ, bool(is_list), of_many or jsname)
        if of_many is not None:
            groups.add(of_many)
        if not_optional:
            required.setdefault(of_many or jsname, []).append(jsname)
    rtype = cls.resource_type if issubclass(cls, FHIRAbstractResource) else None  # type: ignore[attr-defined]
    schema = _Schema(
        cls,
        cls.__name__,
        props,
        frozenset(groups),
        tuple((g, tuple(names)) for g, names in sorted(required.items())),
        rtype,
    )
    _SCHEMAS[cls] = schema
    return schema


@cache
def _named(resource_type: str) -> type:
    """The class fhirclient's factory instantiates for a ``resourceType`` (``Element`` when it
    knows none)."""
    return type(FHIRElementFactory.instantiate(resource_type, None))


def resource_class(resource_type: object) -> type:
    """The class fhirclient validates a resource of this ``resourceType`` with."""
    return _named(resource_type) if isinstance(resource_type, str) else _named("")


def errors(resource: dict[str, Any], path: str | None = None) -> list[str]:
    """What makes ``resource`` invalid FHIR R4 under fhirclient's models, one ``path: reason``
    per problem; empty when it is valid. ``path`` names the root (default: its
    ``resourceType``)."""
    cls = resource_class(resource.get("resourceType", "?"))
    out: list[str] = []
    _check_resource(cls, resource, path or str(resource.get("resourceType", "?")), out)
    return out


def fhirclient_errors(resource: dict[str, Any]) -> list[str]:
    """The reference :func:`errors` follows: build fhirclient's model (several times slower);
    its message, or empty when it accepts."""
    try:
        FHIRElementFactory.instantiate(resource.get("resourceType", "?"), resource)
    except Exception as exc:
        return [str(exc).replace("\n", " ")]
    return []


VALIDATORS = {"schema": errors, "fhirclient": fhirclient_errors}
"""How a reader may validate: ``schema`` (default) or ``fhirclient`` (the reference)."""


def _check_resource(cls: type, value: dict[str, Any], path: str, out: list[str]) -> type:
    """Check a resource object against ``cls`` (after the resourceType dispatch); return the
    class it was checked as."""
    schema = _schema(cls)
    if (
        schema.resource_type is not None
        and "resourceType" in value
        and value["resourceType"] != schema.resource_type
    ):
        out.append(
            f"{path}: resourceType {value['resourceType']!r} given for {schema.resource_type}"
        )
        return cls
    _check_object(schema, value, path, out, top=True)
    return cls


def _check_object(
    schema: _Schema, value: dict[str, Any], path: str, out: list[str], top: bool = False
) -> None:
    """Check an object's keys and required properties; ``top`` (a resource's own properties)
    checks element values through the memo of valid ones."""
    props = schema.props
    for key, item in value.items():
        prop = props.get(key)
        if prop is None:
            if key == "resourceType" or key in schema.groups:
                continue
            if key[:1] == "_" and key[1:] in props and item is not None:
                continue  # a primitive's id/extensions; fhirclient does not look inside
            out.append(f"{path}.{key}: not a property of {schema.name}")
            continue
        if item is None:
            continue
        kind, typ, is_list, _ = prop
        # the common cases inline: a single primitive, a single element
        if kind == _PRIMITIVE and not is_list:
            if not (isinstance(item, typ) or (typ in _NUMBERS and isinstance(item, _NUMBERS))):
                out.append(f"{path}.{key}: expected {typ.__name__}, got {type(item).__name__}")
        elif top:
            _memo_check(prop, item, f"{path}.{key}", out)
        elif kind == _ELEMENT and not is_list and type(item) is dict:
            _check_object(_SCHEMAS.get(typ) or _schema(typ), item, f"{path}.{key}", out)
        else:
            _check_value(prop, item, f"{path}.{key}", out)
    for group, names in schema.required:
        if all(value.get(name) is None for name in names):
            out.append(f"{path}.{group}: required by {schema.name}, missing")


_VALID: set[tuple[_Prop, str]] = set()
"""A resource's own non-primitive values found valid, by property (type and list or single)
and serialized JSON: feeds
repeat the same codes, categories, references, and times and values within a panel. Measured
on Synthea Observations, remembering every such value is faster than remembering only the
nested ones. Bounded (cleared when full)."""
_VALID_MAX = 200_000


def _memo_check(prop: _Prop, item: object, path: str, out: list[str]) -> None:
    try:
        # as str: orjson's bytes keep a ~4 KiB buffer each, which a memo of 200,000 entries
        # turns into ~800 MiB (measured); the decoded text takes its length
        key = (prop, orjson.dumps(item).decode())
    except TypeError:  # an integer beyond 64 bits: check without the memo
        key = None
    # orjson writes NaN and infinity as null: a value with null in it is always checked
    if key is None or "null" in key[1]:
        _check_value(prop, item, path, out)
        return
    if key in _VALID:
        return
    before = len(out)
    _check_value(prop, item, path, out)
    if len(out) == before:
        if len(_VALID) >= _VALID_MAX:
            _VALID.clear()
        _VALID.add(key)


def _check_value(prop: _Prop, item: object, path: str, out: list[str]) -> None:
    kind, typ, is_list, _ = prop
    if kind == _PRIMITIVE:
        if not isinstance(item, list):
            if is_list:
                out.append(f"{path}: expected a list, got {type(item).__name__}")
            elif not _matches(item, typ):
                out.append(f"{path}: expected {typ.__name__}, got {type(item).__name__}")
            return
        if not is_list:
            out.append(f"{path}: expected a single value, got list")
        elif item and item[0] is not None and not _matches(item[0], typ):
            out.append(f"{path}[0]: expected {typ.__name__}, got {type(item[0]).__name__}")
        return
    if kind == _DATE:
        items = item if isinstance(item, list) else [item]
        for v in items:
            if not isinstance(v, str):
                out.append(f"{path}: expected a {typ.__name__} string, got {type(v).__name__}")
                return
            # fhirclient's own check, without building its object: the class's pattern, then
            # its parser (which rejects e.g. 2024-02-30)
            if not typ._REGEX.fullmatch(v):
                out.append(f"{path}: {v!r} is not a valid {typ.__name__}")
                return
            try:
                typ._from_string(v)
            except (ValueError, TypeError, OverflowError) as exc:
                out.append(f"{path}: {v!r} is not a valid {typ.__name__} ({exc})")
                return
        if is_list != isinstance(item, list):
            out.append(_shape(is_list, item, path))
        return
    # an element or a resource: an object, or a list of objects
    if isinstance(item, dict):
        cls = _check_element(kind, typ, item, path, out)
        if is_list:
            out.append(_shape(is_list, item, path))
        elif not issubclass(cls, typ):
            out.append(f"{path}: a {cls.__name__} where {typ.__name__} is expected")
        return
    if not isinstance(item, list):
        out.append(f"{path}: expected an object, got {type(item).__name__}")
        return
    classes = []
    for i, v in enumerate(item):
        if not isinstance(v, dict):
            out.append(f"{path}[{i}]: expected an object, got {type(v).__name__}")
            return
        classes.append(_check_element(kind, typ, v, f"{path}[{i}]", out))
    if not is_list:
        out.append(_shape(is_list, item, path))
    elif classes and not issubclass(classes[0], typ):
        out.append(f"{path}[0]: a {classes[0].__name__} where {typ.__name__} is expected")


def _check_element(kind: int, typ: Any, value: dict[str, Any], path: str, out: list[str]) -> type:
    if kind == _RESOURCE:
        rtype = value.get("resourceType")
        cls: type = typ
        if rtype and rtype != typ.resource_type:
            cls = resource_class(rtype)
        if issubclass(cls, FHIRAbstractResource):
            return _check_resource(cls, value, path, out)
        _check_object(_schema(cls), value, path, out)
        return cls
    _check_object(_SCHEMAS.get(typ) or _schema(typ), value, path, out)
    element: type = typ
    return element


def _shape(is_list: bool, item: object, path: str) -> str:
    want = "a list" if is_list else "a single value"
    return f"{path}: expected {want}, got {type(item).__name__}"


def _matches(value: object, typ: type) -> bool:
    return isinstance(value, typ) or (typ in _NUMBERS and isinstance(value, _NUMBERS))
