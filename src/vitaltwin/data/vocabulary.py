"""The clinical vocabulary: every code vitaltwin understands, said once.

Each entry is a LOINC code with its short name (the PhysioNet 2019 column name where the
Challenge has the variable; the hourly grid of the risk models uses these names), a display
name, the canonical UCUM unit every value is converted to on the way in, and one plausible
range: a value outside it is not a measurement of a living patient (or a unit mix-up) and is
quarantined with the reason by every adapter. Adding a vital sign or a lab is one entry here.

Ranges are wide on purpose (they catch impossible values, not abnormal ones). Where a model can
represent only part of a plausible range, the model's own declaration says so (the twin's
observables carry the model's domain, :class:`vitaltwin.model.Observable`): that is a property
of the model, not of the clinical world.

Local codes (monitor labels, lab-system mnemonics) map to LOINC through :data:`LOCAL_CODES`; a
site adds its own table (``vitaltwin ingest --codes``). Unit spellings seen in feeds map to UCUM
through :data:`UCUM_ALIASES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["vital", "lab", "setting", "body", "score"]


@dataclass(frozen=True)
class Code:
    """One clinical quantity: LOINC code, names, canonical UCUM unit, plausible range."""

    loinc: str
    name: str
    display: str
    unit: str
    low: float
    high: float
    kind: Kind

    def plausible(self, value: float) -> bool:
        """Whether ``value`` (in :attr:`unit`) lies inside the plausible range."""
        return self.low <= value <= self.high

    def range_text(self) -> str:
        """``[low, high] unit`` as quarantine reasons and errors state it."""
        return f"[{self.low:g}, {self.high:g}] {self.unit}"


def _v(loinc: str, name: str, display: str, unit: str, low: float, high: float, kind: Kind) -> Code:
    return Code(loinc, name, display, unit, float(low), float(high), kind)


HOURLY_VARIABLES: tuple[Code, ...] = (
    _v("8867-4", "HR", "heart rate", "/min", 10, 300, "vital"),
    _v("59408-5", "O2Sat", "SpO2 by pulse oximetry", "%", 20, 100, "vital"),
    _v("8310-5", "Temp", "body temperature", "Cel", 25, 45, "vital"),
    _v("8480-6", "SBP", "systolic blood pressure", "mm[Hg]", 20, 300, "vital"),
    _v("8478-0", "MAP", "mean blood pressure", "mm[Hg]", 10, 250, "vital"),
    _v("8462-4", "DBP", "diastolic blood pressure", "mm[Hg]", 5, 250, "vital"),
    _v("9279-1", "Resp", "respiratory rate", "/min", 1, 80, "vital"),
    _v("19889-5", "EtCO2", "end-tidal CO2", "mm[Hg]", 1, 150, "vital"),
    _v("11555-0", "BaseExcess", "base excess", "mmol/L", -40, 40, "lab"),
    _v("1959-6", "HCO3", "bicarbonate", "mmol/L", 1, 60, "lab"),
    _v("19994-3", "FiO2", "inspired O2 fraction", "1", 0.15, 1.0, "setting"),
    _v("2744-1", "pH", "arterial pH", "[pH]", 6.5, 8.0, "lab"),
    _v("2019-8", "PaCO2", "arterial PCO2", "mm[Hg]", 5, 200, "lab"),
    _v("2708-6", "SaO2", "arterial O2 saturation", "%", 20, 100, "lab"),
    _v("1920-8", "AST", "aspartate aminotransferase", "U/L", 0, 30000, "lab"),
    _v("3094-0", "BUN", "urea nitrogen", "mg/dL", 0, 300, "lab"),
    _v("6768-6", "Alkalinephos", "alkaline phosphatase", "U/L", 0, 5000, "lab"),
    _v("17861-6", "Calcium", "calcium", "mg/dL", 1, 25, "lab"),
    _v("2075-0", "Chloride", "chloride", "mmol/L", 50, 160, "lab"),
    _v("2160-0", "Creatinine", "creatinine", "mg/dL", 0.05, 30, "lab"),
    _v("1968-7", "Bilirubin_direct", "direct bilirubin", "mg/dL", 0, 50, "lab"),
    _v("2345-7", "Glucose", "glucose", "mg/dL", 5, 2000, "lab"),
    _v("2524-7", "Lactate", "lactate", "mmol/L", 0.1, 40, "lab"),
    _v("19123-9", "Magnesium", "magnesium", "mg/dL", 0.2, 15, "lab"),
    _v("2777-1", "Phosphate", "phosphate", "mg/dL", 0.1, 25, "lab"),
    _v("2823-3", "Potassium", "potassium", "mmol/L", 1, 12, "lab"),
    _v("1975-2", "Bilirubin_total", "total bilirubin", "mg/dL", 0, 60, "lab"),
    _v("10839-9", "TroponinI", "troponin I", "ng/mL", 0, 500, "lab"),
    _v("4544-3", "Hct", "haematocrit", "%", 5, 75, "lab"),
    _v("718-7", "Hgb", "haemoglobin", "g/dL", 1, 25, "lab"),
    _v("3173-2", "PTT", "activated partial thromboplastin time", "s", 5, 250, "lab"),
    _v("6690-2", "WBC", "white-cell count", "10*3/uL", 0, 500, "lab"),
    _v("3255-7", "Fibrinogen", "fibrinogen", "mg/dL", 10, 2000, "lab"),
    _v("777-3", "Platelets", "platelets", "10*3/uL", 1, 3000, "lab"),
)
"""The 34 measured variables of the PhysioNet 2019 Challenge (8 vital signs, 26 laboratory
values and settings), in the Challenge's column order: the columns of the hourly grid."""

OTHER_CODES: tuple[Code, ...] = (
    _v("32693-4", "LactateArterial", "lactate in arterial blood", "mmol/L", 0.1, 40, "lab"),
    _v("8302-2", "Height", "body height", "cm", 30, 260, "body"),
    _v("29463-7", "Weight", "body weight", "kg", 0.3, 400, "body"),
    _v("15074-8", "GlucoseMolar", "glucose in blood (molar)", "mmol/L", 0.3, 110, "lab"),
    _v("2339-0", "GlucoseBlood", "glucose in blood", "mg/dL", 5, 2000, "lab"),
    _v("9269-2", "GCS", "Glasgow coma score total", "1", 3, 15, "score"),
    # not the same quantity as total calcium (17861-6) and troponin I (10839-9): kept apart
    _v("1994-3", "CalciumIonized", "ionized calcium", "mmol/L", 0.2, 3.0, "lab"),
    _v("6598-7", "TroponinT", "troponin T", "ng/mL", 0, 100, "lab"),
)
"""Codes the FHIR and HL7 v2 feeds carry beyond the Challenge's variables."""

CODES: dict[str, Code] = {c.loinc: c for c in (*HOURLY_VARIABLES, *OTHER_CODES)}
"""Every code vitaltwin understands, by LOINC."""

BY_NAME: dict[str, Code] = {c.name: c for c in CODES.values()}

FIO2 = CODES["19994-3"]


def code(loinc: str) -> Code:
    """The vocabulary entry of ``loinc``; a ``KeyError`` naming the code when it is unknown."""
    try:
        return CODES[loinc]
    except KeyError:
        raise KeyError(f"LOINC {loinc!r} is not in the vitaltwin vocabulary") from None


def by_name(name: str) -> Code:
    """The vocabulary entry with the short ``name`` (``"HR"``, ``"O2Sat"``)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no code named {name!r} in the vitaltwin vocabulary") from None


LOCAL_CODES: dict[str, str] = {
    # Philips/GE monitor and common lab-system labels seen in feeds -> LOINC
    "HR": "8867-4",
    "PULSE": "8867-4",
    "SPO2": "59408-5",
    "RESP": "9279-1",
    "TEMP": "8310-5",
    "NBP-S": "8480-6",
    "NBP-D": "8462-4",
    "NBP-M": "8478-0",
    "ABP-S": "8480-6",
    "ABP-D": "8462-4",
    "ABP-M": "8478-0",
    "LACTATE": "2524-7",
    "WBC": "6690-2",
    "CREAT": "2160-0",
}
"""Default local-code mapping (upper-cased identifier or text -> LOINC)."""

LOCAL_METHODS: dict[str, str] = {
    **dict.fromkeys(("NBP-S", "NBP-D", "NBP-M"), "non-invasive-cuff"),
    **dict.fromkeys(("ABP-S", "ABP-D", "ABP-M"), "invasive-arterial"),
    "HR": "ecg",  # the monitor's heart rate is ECG-derived; "Pulse" comes from the oximeter
    "PULSE": "pulse-oximetry",
}
"""How a value under a local label was measured: the labels say what LOINC's vital-sign codes
do not (invasive arterial and cuff pressure share 8478-0; ECG heart rate and pulse rate share
8867-4), see :data:`vitaltwin.data.schema.METHODS`."""

MDC_CODES: dict[str, tuple[str, str | None]] = {
    # IEEE 11073-10101 reference ids, as bedside monitors send them in HL7 OBX-3
    # (``150035^MDC_PRESS_BLD_ART_MEAN^MDC``): -> (LOINC, method). Matched by the reference id
    # (the name), which is unambiguous; numeric term codes differ between sources.
    "MDC_PRESS_BLD_ART_SYS": ("8480-6", "invasive-arterial"),
    "MDC_PRESS_BLD_ART_DIA": ("8462-4", "invasive-arterial"),
    "MDC_PRESS_BLD_ART_MEAN": ("8478-0", "invasive-arterial"),
    "MDC_PRESS_BLD_ART_ABP_SYS": ("8480-6", "invasive-arterial"),
    "MDC_PRESS_BLD_ART_ABP_DIA": ("8462-4", "invasive-arterial"),
    "MDC_PRESS_BLD_ART_ABP_MEAN": ("8478-0", "invasive-arterial"),
    "MDC_PRESS_BLD_NONINV_SYS": ("8480-6", "non-invasive-cuff"),
    "MDC_PRESS_BLD_NONINV_DIA": ("8462-4", "non-invasive-cuff"),
    "MDC_PRESS_BLD_NONINV_MEAN": ("8478-0", "non-invasive-cuff"),
    "MDC_PRESS_CUFF_SYS": ("8480-6", "non-invasive-cuff"),
    "MDC_PRESS_CUFF_DIA": ("8462-4", "non-invasive-cuff"),
    "MDC_PRESS_CUFF_MEAN": ("8478-0", "non-invasive-cuff"),
    "MDC_ECG_HEART_RATE": ("8867-4", "ecg"),
    "MDC_PULS_OXIM_PULS_RATE": ("8867-4", "pulse-oximetry"),
    "MDC_PULS_OXIM_SAT_O2": ("59408-5", "pulse-oximetry"),
    "MDC_RESP_RATE": ("9279-1", None),
}
"""Device nomenclature (IEEE 11073 MDC) -> LOINC and measurement method."""

METHOD_LOINC: dict[str, tuple[str, str]] = {
    "76534-7": ("8480-6", "non-invasive-cuff"),  # Systolic blood pressure by Noninvasive
    "76535-4": ("8462-4", "non-invasive-cuff"),  # Diastolic blood pressure by Noninvasive
}
"""Method-specific LOINC codes -> (the vital sign's code, method). Only codes whose LOINC name
was checked (LOINC's method axis "Noninvasive"); others are added when verified."""


def generic(code: str) -> tuple[str, str | None]:
    """A code as the record keeps it: a method-specific LOINC code as its vital sign's code
    with the method it states; any other code as is, with no method."""
    return METHOD_LOINC.get(code, (code, None))


MDC_UNITS: dict[str, str] = {
    "MDC_DIM_MMHG": "mm[Hg]",
    "MDC_DIM_BEAT_PER_MIN": "/min",
    "MDC_DIM_RESP_PER_MIN": "/min",
    "MDC_DIM_PERCENT": "%",
    "MDC_DIM_DEGC": "Cel",
}
"""Device unit reference ids (OBX-6 ``266016^MDC_DIM_MMHG^MDC``) -> UCUM."""

UCUM_ALIASES: dict[str, str] = {
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "bpm": "/min",
    "mmhg": "mm[Hg]",
    "c": "Cel",
    "degc": "Cel",
    "f": "[degF]",
    "degf": "[degF]",
    "10^9/l": "10*9/L",
    "10*9/l": "10*9/L",
    "%": "%",
}
"""Unit spellings seen in feeds (lower-cased) -> UCUM."""
