"""MIMIC-IV (the demo, or the full credentialed release by path) -> canonical record, a part at
a time.

A MIMIC patient (``subject_id``) is one patient of the record, ``mimic-<subject_id>``; each
hospital admission (``hadm_id``) and each ICU stay (``stay_id``) is an encounter
(``mimic-hadm-<id>``, kind ``inpatient``; ``mimic-stay-<id>``, kind ``ICU``, located in its
first care unit).

**Time.** MIMIC shifts each patient's dates into the future (2100-2200) and keeps times of day,
intervals and the ordering; its times are local and carry no zone. They are read as UTC: every
interval is real, dates and the zone are not.

**Tables read** (others are not read):

* ``hosp/patients``, ``hosp/admissions``, ``icu/icustays`` -> patients (sex; age at the first
  ICU admission from ``anchor_age`` — MIMIC's 91 for anyone over 89 is stored as 90 —, first ICU
  and hospital admission, first care unit) and encounters.
* ``hosp/labevents`` -> the laboratory values the vocabulary knows, by MIMIC item
  (:data:`LAB_ITEMS`: blood only, converted to the vocabulary's unit). Ionized calcium and
  troponin T keep their own codes: they are not total calcium and troponin I. Censored results
  (``<0.01``, in the value or, with no value, at the start of the comment) keep their
  comparator. Other items are not read.
* ``icu/inputevents`` -> medications: every infusion and bolus with its start, end, amount and
  rate in UCUM (a bolus has an amount and no rate; a unit label not in :data:`RATE_UNITS` or
  :data:`DOSE_UNITS` is kept as MIMIC writes it), the drug by its MIMIC item label.

Values outside the vocabulary's plausible range, or not numbers, are quarantined with the
reason. The large tables are read ``rows`` at a time.

Data: Johnson AEW et al., MIMIC-IV, a freely accessible electronic health record dataset,
Sci Data 10:1 (2023); the demo: Johnson A et al., PhysioNet 2023, doi:10.13026/dp1f-ex47.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from vitaltwin.data.schema import (
    ENCOUNTERS,
    MEDICATIONS,
    PATIENTS,
    UTC_TS,
    Record,
    observations_table,
)
from vitaltwin.data.units import UnitError, to_canonical
from vitaltwin.data.vocabulary import CODES
from vitaltwin.interop._errors import ReadError
from vitaltwin.interop._records import quarantine_table
from vitaltwin.interop._tables import joined, read_table, record_part, table_path, whole_table

SOURCE = "mimic-iv"

LAB_ITEMS: dict[int, str] = {
    50971: "2823-3",  # potassium
    50822: "2823-3",  # potassium, whole blood
    50912: "2160-0",  # creatinine
    50902: "2075-0",  # chloride
    50806: "2075-0",  # chloride, whole blood
    51006: "3094-0",  # urea nitrogen
    51221: "4544-3",  # haematocrit
    50810: "4544-3",  # haematocrit, calculated (blood gas)
    50882: "1959-6",  # bicarbonate
    51265: "777-3",  # platelet count
    51222: "718-7",  # haemoglobin
    50811: "718-7",  # haemoglobin (blood gas)
    51301: "6690-2",  # white blood cells
    51300: "6690-2",  # WBC count
    50931: "2345-7",  # glucose (serum)
    50809: "2339-0",  # glucose (blood gas: whole blood)
    50960: "19123-9",  # magnesium
    50893: "17861-6",  # calcium, total
    50808: "1994-3",  # free (ionized) calcium: not total calcium
    50970: "2777-1",  # phosphate
    51275: "3173-2",  # PTT
    50878: "1920-8",  # AST
    50885: "1975-2",  # bilirubin, total
    50883: "1968-7",  # bilirubin, direct
    50863: "6768-6",  # alkaline phosphatase
    50820: "2744-1",  # pH (blood gas)
    50818: "2019-8",  # pCO2 (blood gas)
    50802: "11555-0",  # base excess
    50813: "2524-7",  # lactate
    51003: "6598-7",  # troponin T: not troponin I
    50817: "2708-6",  # oxygen saturation (blood gas)
    51214: "3255-7",  # fibrinogen, functional
}
"""MIMIC-IV laboratory items (``d_labitems``, blood) -> LOINC of the vocabulary. MIMIC-IV 2.2's
``d_labitems`` carries no LOINC codes; this table is written from its labels and units."""

LAB_UNITS = {  # MIMIC's unit labels -> UCUM
    "mEq/L": "mmol/L",  # potassium, chloride, bicarbonate: monovalent, 1 mEq = 1 mmol
    "mmol/L": "mmol/L",
    "mg/dL": "mg/dL",
    "g/dL": "g/dL",
    "%": "%",
    "K/uL": "10*3/uL",
    "IU/L": "U/L",
    "sec": "s",
    "units": "[pH]",
    "mm Hg": "mm[Hg]",
    "ng/mL": "ng/mL",
}
DOSE_UNITS = {"ml": "mL", "mg": "mg", "dose": "{dose}", "units": "[U]", "mcg": "ug",
              "grams": "g", "mEq": "meq", "mEq.": "meq", "mmol": "mmol"}  # fmt: skip
RATE_UNITS = {"mL/hour": "mL/h", "mcg/kg/min": "ug/kg/min", "units/hour": "[U]/h",
              "mcg/hour": "ug/h", "mcg/kg/hour": "ug/kg/h", "mg/hour": "mg/h",
              "mEq./hour": "meq/h", "mg/min": "mg/min", "grams/hour": "g/h",
              "grams/min": "g/min", "mg/kg/hour": "mg/kg/h", "units/min": "[U]/min",
              "units/kg/hour": "[U]/kg/h", "mL/min": "mL/min", "mL/kg/hour": "mL/kg/h"}  # fmt: skip


class MimicError(ReadError):
    """A MIMIC-IV folder or table that cannot be read (names the table and the problem)."""


def is_mimic(directory: Path) -> bool:
    """Whether ``directory`` holds MIMIC-IV modules (``hosp/patients`` and ``icu/icustays``)."""
    return all(table_path(directory, t) is not None for t in ("hosp/patients", "icu/icustays"))


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, errors="coerce").dt.tz_localize(UTC)


def read_mimic(
    directory: str | Path, rows: int = 500_000, subjects: set[int] | None = None
) -> Iterator[Record]:
    """The database in ``directory`` as canonical records: patients, encounters and medications
    first, then laboratory values ``rows`` input rows at a time. ``subjects`` restricts to those
    patients."""
    d = Path(directory)
    if not is_mimic(d):
        raise MimicError(f"{d}: not a MIMIC-IV folder (needs hosp/patients and icu/icustays)")
    received = datetime.now(UTC)
    patient_cols = ["subject_id", "gender", "anchor_age", "anchor_year"]
    patients = whole_table(d, "hosp/patients", patient_cols, MimicError)
    adm_cols = ["subject_id", "hadm_id", "admittime", "dischtime"]
    adm = whole_table(d, "hosp/admissions", adm_cols, MimicError)
    stay_cols = ["subject_id", "hadm_id", "stay_id", "first_careunit", "intime", "outtime"]
    stays = whole_table(d, "icu/icustays", stay_cols, MimicError)
    if subjects is not None:
        patients = patients[patients["subject_id"].isin(subjects)]
        adm = adm[adm["subject_id"].isin(subjects)]
        stays = stays[stays["subject_id"].isin(subjects)]
    yield _context(patients, adm, stays)
    keep = set(patients["subject_id"].tolist())
    yield _inputs(d, keep, received, rows)
    cols = ["labevent_id", "subject_id", "itemid", "charttime", "value", "valuenum", "valueuom",
            "comments"]  # fmt: skip
    for part in read_table(d, "hosp/labevents", cols, rows, MimicError):
        yield _labs(part[part["subject_id"].isin(keep)], received)


def convert_mimic(directory: str | Path) -> Record:
    """The whole database as one record (the demo; use :func:`read_mimic` for the full one)."""
    return joined(list(read_mimic(directory)))


def _context(patients: pd.DataFrame, adm: pd.DataFrame, stays: pd.DataFrame) -> Record:
    stays = stays.assign(intime=_utc(stays["intime"]), outtime=_utc(stays["outtime"]))
    adm = adm.assign(admittime=_utc(adm["admittime"]), dischtime=_utc(adm["dischtime"]))
    first = stays.sort_values("intime").drop_duplicates("subject_id").set_index("subject_id")
    first_adm = adm.sort_values("admittime").drop_duplicates("subject_id").set_index("subject_id")
    p = patients.set_index("subject_id")
    icu_in = first["intime"].reindex(p.index)
    age = p["anchor_age"] + (icu_in.dt.year - p["anchor_year"]).fillna(0)
    sex = p["gender"].map({"F": "female", "M": "male"})
    table = pd.DataFrame(
        {
            "patient_id": "mimic-" + p.index.astype(str),
            "sex": sex.where(sex.notna(), None).to_numpy(),
            "age_years": np.minimum(age.to_numpy(float), 90.0),  # over 89: 90
            "birth_date": None,
            "icu_admission_time": icu_in.to_numpy(),
            "hospital_admission_time": first_adm["admittime"].reindex(p.index).to_numpy(),
            "icu_unit": first["first_careunit"].reindex(p.index).to_numpy(),
            "source": SOURCE,
            "merged_into": None,
        }
    )
    enc = pd.concat(
        [
            pd.DataFrame({
                "encounter_id": "mimic-hadm-" + adm["hadm_id"].astype(str),
                "patient_id": "mimic-" + adm["subject_id"].astype(str),
                "start_time": adm["admittime"], "end_time": adm["dischtime"],
                "kind": "inpatient", "source": SOURCE, "status": "finished", "location": None,
            }),
            pd.DataFrame({
                "encounter_id": "mimic-stay-" + stays["stay_id"].astype(str),
                "patient_id": "mimic-" + stays["subject_id"].astype(str),
                "start_time": stays["intime"], "end_time": stays["outtime"],
                "kind": "ICU", "source": SOURCE, "status": "finished",
                "location": stays["first_careunit"],
            }),
        ],
        ignore_index=True,
    )  # fmt: skip
    return record_part(
        patients=pa.Table.from_pandas(table, schema=PATIENTS, preserve_index=False),
        encounters=pa.Table.from_pandas(enc, schema=ENCOUNTERS, preserve_index=False),
    )


def _labs(part: pd.DataFrame, received: datetime) -> Record:
    """One part of ``labevents``: the mapped items, in the vocabulary's units."""
    part = part[part["itemid"].isin(list(LAB_ITEMS))]
    if part.empty:
        return record_part()
    # a censored result ("<0.01") is in the value, or with an empty value at the start of the
    # comment (the demo's troponin T below the assay's limit: "<0.01.  cTropnT > 0.10 ...")
    pattern = r"^\s*(?P<cmp>[<>]=?)\s*(?P<num>\d*\.?\d+)"
    censored = part["value"].astype(str).str.extract(pattern)
    in_comment = part["comments"].astype(str).str.extract(pattern)
    use = censored["num"].isna() & part["valuenum"].isna()
    censored[use] = in_comment[use]
    value = part["valuenum"].astype(float).fillna(pd.to_numeric(censored["num"], errors="coerce"))
    comparator = censored["cmp"].fillna("=")
    loinc = part["itemid"].map(LAB_ITEMS)
    unit_label = part["valueuom"].fillna("")
    # each (code, unit) converted once: every conversion here is a factor
    factor = pd.Series(np.nan, index=part.index)
    reason = pd.Series("", index=part.index, dtype=object)
    for key, idx in part.groupby([loinc, unit_label]).groups.items():
        code, label = str(key[0]), str(key[1])  # type: ignore[index]  # a (code, unit) pair
        canon = CODES[code].unit
        ucum = LAB_UNITS.get(label)
        if ucum is None:
            reason[idx] = f"unit {label!r} is not one vitaltwin reads for {code}"
            continue
        try:
            factor[idx] = to_canonical(1.0, ucum, canon, code)
        except UnitError as exc:
            reason[idx] = str(exc)
    canon_value = value * factor
    low = loinc.map(lambda c: CODES[c].low)
    high = loinc.map(lambda c: CODES[c].high)
    reason[(reason == "") & value.isna()] = "value is not a number"
    out = (reason == "") & ~canon_value.between(low, high)
    reason[out] = np.array([f"outside plausible range {CODES[c].range_text()}" for c in loinc[out]],
                           dtype=object)  # fmt: skip
    ok = reason == ""
    where = "labevents " + part["labevent_id"].astype(str)
    good = part[ok]
    n = len(good)
    obs = observations_table(
        {
            "patient_id": ("mimic-" + good["subject_id"].astype(str)).to_numpy(),
            "effective_time": pa.array(_utc(good["charttime"]), UTC_TS),
            "loinc": loinc[ok].to_numpy(),
            "value": canon_value[ok].to_numpy(float),
            "unit": [CODES[c].unit for c in loinc[ok]],
            "source": [SOURCE] * n,
            "position": where[ok].to_numpy(),
            "device": [None] * n,
            "received_time": pa.array([received] * n, UTC_TS),
            "quality": [None] * n,
            "comparator": comparator[ok].to_numpy(),
        }
    )
    raw = part.loc[~ok, "value"].fillna("").astype(str).tolist()
    bad = quarantine_table(
        SOURCE, where[~ok].tolist(), "value", raw, reason[~ok].tolist(), received
    )
    return record_part(len(part), obs, bad)


def _inputs(d: Path, subjects: set[int], received: datetime, rows: int) -> Record:
    """Every input event as a medication (module docstring)."""
    items = whole_table(d, "icu/d_items", ["itemid", "label"], MimicError)
    labels = items.set_index("itemid")["label"]
    cols = ["subject_id", "itemid", "starttime", "endtime", "amount", "amountuom", "rate",
            "rateuom"]  # fmt: skip
    frames = []
    for part in read_table(d, "icu/inputevents", cols, rows, MimicError):
        part = part[part["subject_id"].isin(subjects)]
        frames.append(pd.DataFrame({
            "patient_id": "mimic-" + part["subject_id"].astype(str),
            "drug": part["itemid"].map(labels).fillna("item " + part["itemid"].astype(str))
                    .str.lower(),
            "start_time": _utc(part["starttime"]), "end_time": _utc(part["endtime"]),
            "dose": part["amount"].astype(float),
            "dose_unit": part["amountuom"].map(lambda u: DOSE_UNITS.get(u, u)),
            "rate": part["rate"].astype(float),
            "rate_unit": part["rateuom"].map(lambda u: RATE_UNITS.get(u, u)),
            "source": SOURCE,
        }))  # fmt: skip
    meds = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MEDICATIONS.names)
    )
    meds = meds[meds["start_time"].notna()]
    return record_part(
        medications=pa.Table.from_pandas(meds, schema=MEDICATIONS, preserve_index=False)
    )
