"""Unit normalization: a value in any accepted UCUM unit to the canonical unit of its code.

Dimensional conversions (temperature with its offset, pressure, fractions and percentages,
volume and count per volume) use pint. Mass and molar concentrations of one analyte are
converted through its molar mass: glucose 180.16 g/mol, lactate 90.08 g/mol, creatinine
113.12 g/mol, urea nitrogen (as N2) 28.01 g/mol. A unit pint cannot read, or one of the wrong
dimension for the code, raises :class:`UnitError` naming both units.
"""

from __future__ import annotations

from functools import lru_cache

import pint

_UREG: pint.UnitRegistry[float] = pint.UnitRegistry()

# UCUM codes -> pint expressions (the UCUM subset seen in vital signs and common labs).
_UCUM_TO_PINT: dict[str, str] = {
    "Cel": "degC",
    "[degF]": "degF",
    "K": "kelvin",
    "mm[Hg]": "mmHg",
    "kPa": "kilopascal",
    "cm[H2O]": "cmH2O",
    "/min": "1/minute",
    "{beats}/min": "1/minute",
    "{breaths}/min": "1/minute",
    "/s": "1/second",
    "%": "percent",
    "1": "dimensionless",
    "{ratio}": "dimensionless",
    "mmol/L": "millimole/liter",
    "umol/L": "micromole/liter",
    "mg/dL": "milligram/deciliter",
    "g/dL": "gram/deciliter",
    "g/L": "gram/liter",
    "mg/L": "milligram/liter",
    "ng/mL": "nanogram/milliliter",
    "U/L": "1/liter",  # enzyme units: only U/L <-> U/L
    "s": "second",
    "10*3/uL": "1/microliter",  # x 1e3: see _SCALE
    "10*9/L": "1/liter",  # x 1e9
    "/uL": "1/microliter",
    "10*6/uL": "1/microliter",  # x 1e6
    "mL": "milliliter",
    "L": "liter",
    "mL/h": "milliliter/hour",
    "L/min": "liter/minute",
    "kg": "kilogram",
    "g": "gram",
    "cm": "centimeter",
    "m": "meter",
    "[pH]": "dimensionless",
}

_SCALE: dict[str, float] = {"10*3/uL": 1e3, "10*9/L": 1e9, "10*6/uL": 1e6}

MOLAR_MASS_G_MOL: dict[str, float] = {
    "2345-7": 180.16,  # glucose, serum/plasma
    "2339-0": 180.16,  # glucose, blood
    "15074-8": 180.16,  # glucose, blood (molar)
    "2524-7": 90.08,  # lactate
    "32693-4": 90.08,
    "2160-0": 113.12,  # creatinine
    "3094-0": 28.01,  # urea nitrogen
}


class UnitError(ValueError):
    """A unit that cannot be read or converted; the message names the units and the code."""


@lru_cache(maxsize=256)
def _unit(ucum: str) -> pint.Unit:
    try:
        expr = _UCUM_TO_PINT[ucum]
    except KeyError:
        raise UnitError(f"unknown unit {ucum!r} (not a UCUM code vitaltwin reads)") from None
    return _UREG.Unit(expr)


def to_canonical(value: float, unit: str, canonical: str, loinc: str | None = None) -> float:
    """``value`` in ``unit`` expressed in ``canonical`` (both UCUM).

    Raises :class:`UnitError` for unknown units or incompatible dimensions.
    """
    if unit == canonical:
        return value
    src, dst = _unit(unit), _unit(canonical)
    scale = _SCALE.get(unit, 1.0) / _SCALE.get(canonical, 1.0)
    q = _UREG.Quantity(value * scale, src)
    try:
        return float(q.to(dst).magnitude)
    except pint.DimensionalityError:
        pass
    mm = MOLAR_MASS_G_MOL.get(loinc or "")
    if mm is not None:
        molar = _UREG.Quantity(mm, "gram/mole")
        for conv in (q * molar, q / molar):
            try:
                return float(conv.to(dst).magnitude)
            except pint.DimensionalityError:
                continue
    where = f" for {loinc}" if loinc else ""
    raise UnitError(f"cannot convert {unit!r} to {canonical!r}{where}")
