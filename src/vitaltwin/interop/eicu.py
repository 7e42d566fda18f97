"""The eICU Collaborative Research Database (the demo, or the full credentialed release by path)
-> canonical record, a part at a time.

One ICU unit stay (``patientunitstayid``) is one patient of the record, ``eicu-<id>``, as a stay
is in the PhysioNet data; its encounter carries the hospital and unit type
(``hospital 73, Med-Surg ICU``); :func:`stay_sites` gives each stay's hospital and what the
``hospital`` table says of it (region, teaching, beds), the sites a transfer study leaves out.

**Time.** eICU gives times as minutes from unit admission (``*offset``) with the time of day of
admissions and the discharge year only. Each hospital stay is placed on ``anchor``'s date at its
real admission time of day (``hospitaladmittime24``), and each of its unit stays at
``hospital admission - hospitaladmitoffset`` minutes, so the stays of one hospital stay keep
their order and spacing, and every value keeps its time of day. Dates are therefore not real
(documented de-identification of the source); intervals are.

**Tables read** (what a twin and a treatment-response check need; others are not read):

* ``patient`` -> patients (sex, age — ``> 89`` as 90 —, unit type, ICU and hospital admission),
  encounters (unit admission to unit discharge), and the admission weight and height as body
  observations at unit admission.
* ``vitalAperiodic`` -> cuff blood pressure (systolic, diastolic, mean), method
  ``non-invasive-cuff``.
* ``vitalPeriodic`` (full release only; 5-minute medians of the monitor) -> heart rate, SpO2,
  respiratory rate, temperature, and arterial-line pressure (``systemic*``), method
  ``invasive-arterial``.
* ``infusionDrug`` -> medications: one row per charted rate, from its time until the next rate
  charted for the same drug in the stay (the last open), the drug as charted without its unit,
  the rate unit in UCUM (``Norepinephrine (mcg/min)`` -> ``norepinephrine``, ``ug/min``). A rate
  that is not a number is quarantined with the reason.
* ``treatment`` -> fluid boluses and volume resuscitation (``intravenous fluid|...|fluid bolus
  (250-1000mls)``) as medications without a dose (eICU charts that a bolus was given, not its
  volume).

Values outside the vocabulary's plausible range are quarantined with the reason; every value
read is stored, quarantined or counted as a duplicate. The large tables are read ``rows`` at a
time (bounded memory for the full release's 146 M ``vitalPeriodic`` rows).

Data: Pollard TJ et al., The eICU Collaborative Research Database, Sci Data 5:180178 (2018);
the demo: Johnson A et al., PhysioNet 2021, doi:10.13026/4mxk-na84.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from vitaltwin.data.schema import (
    ENCOUNTERS,
    MEDICATIONS,
    OBSERVATIONS,
    PATIENTS,
    QUARANTINE,
    UTC_TS,
    Record,
    observations_table,
)
from vitaltwin.data.vocabulary import CODES
from vitaltwin.interop._errors import ReadError
from vitaltwin.interop._records import quarantine_table
from vitaltwin.interop._tables import joined, read_table, record_part, table_path, whole_table

DEFAULT_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
SOURCE = "eicu"

APERIODIC: dict[str, tuple[str, str | None]] = {  # column -> (LOINC, method)
    "noninvasivesystolic": ("8480-6", "non-invasive-cuff"),
    "noninvasivediastolic": ("8462-4", "non-invasive-cuff"),
    "noninvasivemean": ("8478-0", "non-invasive-cuff"),
}
PERIODIC: dict[str, tuple[str, str | None]] = {
    "heartrate": ("8867-4", "ecg"),
    "sao2": ("59408-5", "pulse-oximetry"),
    "respiration": ("9279-1", None),
    "temperature": ("8310-5", None),
    "systemicsystolic": ("8480-6", "invasive-arterial"),
    "systemicdiastolic": ("8462-4", "invasive-arterial"),
    "systemicmean": ("8478-0", "invasive-arterial"),
}
BODY: dict[str, tuple[str, str | None]] = {  # the patient table's, at unit admission
    "admissionweight": ("29463-7", None),
    "admissionheight": ("8302-2", None),
}
RATE_UNITS = {  # as eICU labels them -> UCUM
    "mcg/min": "ug/min",
    "mcg/kg/min": "ug/kg/min",
    "mcg/hr": "ug/h",
    "mcg/kg/hr": "ug/kg/h",
    "mg/min": "mg/min",
    "mg/hr": "mg/h",
    "mg/kg/min": "mg/kg/min",
    "mg/kg/hr": "mg/kg/h",
    "ml/hr": "mL/h",
    "units/hr": "[U]/h",
    "units/min": "[U]/min",
    "units/kg/hr": "[U]/kg/h",
    "nanograms/kg/min": "ng/kg/min",
}
BOLUS = re.compile(r"fluid bolus|volume resuscitation", re.IGNORECASE)
_DRUG = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()]*)\)\s*$")


class EicuError(ReadError):
    """An eICU folder or table that cannot be read (names the table and the problem)."""


def is_eicu(directory: Path) -> bool:
    """Whether ``directory`` holds eICU tables (``patient`` and ``vitalAperiodic``)."""
    return all(table_path(directory, t) is not None for t in ("patient", "vitalAperiodic"))


def read_eicu(
    directory: str | Path,
    rows: int = 500_000,
    anchor: datetime = DEFAULT_ANCHOR,
    stays: set[int] | None = None,
) -> Iterator[Record]:
    """The database in ``directory`` as canonical records: first patients, encounters and
    medications, then the vital signs ``rows`` input rows at a time. ``stays`` restricts to
    those unit stays."""
    d = Path(directory)
    if not is_eicu(d):
        raise EicuError(f"{d}: not an eICU folder (needs patient.csv.gz and vitalAperiodic.csv.gz)")
    received = datetime.now(UTC)
    cols = ["patientunitstayid", "gender", "age", "hospitalid", "unittype", "hospitaladmittime24",
            "hospitaladmitoffset", "unitdischargeoffset", *BODY]  # fmt: skip
    patient = whole_table(d, "patient", cols, EicuError)
    if stays is not None:
        patient = patient[patient["patientunitstayid"].isin(stays)]
    admit = _unit_admission(patient, anchor)
    context = _context(patient, admit)
    body = _vitals(patient.assign(observationoffset=0), "patient", BODY, admit, received)
    yield record_part(body.values_read, body.observations, body.quarantine, context.patients,
                      encounters=context.encounters)  # fmt: skip
    yield _medications(d, admit, received, rows)
    for table, columns in (("vitalAperiodic", APERIODIC), ("vitalPeriodic", PERIODIC)):
        wanted = ["patientunitstayid", "observationoffset", *columns]
        for chunk in read_table(d, table, wanted, rows, EicuError):
            yield _vitals(chunk, table, columns, admit, received)


def convert_eicu(directory: str | Path, anchor: datetime = DEFAULT_ANCHOR) -> Record:
    """The whole database as one record (the demo; use :func:`read_eicu` for the full one)."""
    return joined(list(read_eicu(directory, anchor=anchor)))


def stay_sites(directory: str | Path) -> pd.DataFrame:
    """Where each stay was, for a study that leaves sites out: indexed by patient
    (``eicu-<stay id>``), ``hospital`` (``hospital 73``) and what the ``hospital`` table says of
    it — ``region`` (US census region), ``teaching`` (bool) and ``beds`` (the bed-count
    category) — None where it says nothing (the demo's hospital table leaves some regions
    empty). EicuError names a missing ``patient`` table; without a ``hospital`` table only
    ``hospital`` is filled."""
    d = Path(directory)
    patient = whole_table(d, "patient", ["patientunitstayid", "hospitalid"], EicuError)
    if table_path(d, "hospital") is None:
        info = pd.DataFrame(columns=["hospitalid", "region", "teachingstatus", "numbedscategory"])
    else:
        info = whole_table(
            d, "hospital", ["hospitalid", "region", "teachingstatus", "numbedscategory"], EicuError
        )
    merged = patient.merge(info.drop_duplicates("hospitalid"), on="hospitalid", how="left")
    teaching = merged["teachingstatus"].map(
        lambda v: None if pd.isna(v) else str(v).strip().lower() in ("true", "t", "1")
    )
    return pd.DataFrame(
        {
            "hospital": "hospital " + merged["hospitalid"].astype("int64").astype(str),
            "region": merged["region"].astype(object).where(merged["region"].notna(), None),
            "teaching": teaching.astype(object),
            "beds": merged["numbedscategory"]
            .astype(object)
            .where(merged["numbedscategory"].notna(), None),
        }
    ).set_axis(pd.Index(_ids(merged["patientunitstayid"]), name="patient_id"))


def _unit_admission(patient: pd.DataFrame, anchor: datetime) -> pd.Series:
    """Each stay's unit admission (UTC), by stay id (module docstring: Time)."""
    tod = pd.to_timedelta(patient["hospitaladmittime24"].fillna("00:00:00"))
    hospital = pd.Timestamp(anchor) + tod
    unit = hospital - pd.to_timedelta(patient["hospitaladmitoffset"].fillna(0), unit="min")
    return pd.Series(unit.array, index=patient["patientunitstayid"].to_numpy())


def _ids(stay: pd.Series) -> np.ndarray:
    return ("eicu-" + stay.astype("int64").astype(str)).to_numpy()


def _at(admit: pd.Series, stay: pd.Series, offset_min: pd.Series) -> pd.Series:
    """Times (UTC) of ``offset_min`` minutes after each row's unit admission (index: the rows')."""
    start = admit.reindex(stay.to_numpy()).array
    return pd.Series(start + pd.to_timedelta(offset_min.to_numpy(), unit="min"), index=stay.index)


def _context(patient: pd.DataFrame, admit: pd.Series) -> Record:
    pid = _ids(patient["patientunitstayid"])
    age = patient["age"].astype(str).str.strip()
    gender = patient["gender"].str.lower()
    unit_admit = _at(admit, patient["patientunitstayid"], pd.Series(0, index=patient.index))
    patients = pd.DataFrame(
        {
            "patient_id": pid,
            "sex": gender.where(gender.isin(["male", "female"]), None),
            "age_years": pd.to_numeric(age.replace({"> 89": "90"}), errors="coerce"),
            "birth_date": None,
            "icu_admission_time": unit_admit,
            "hospital_admission_time": unit_admit + pd.to_timedelta(
                patient["hospitaladmitoffset"].fillna(0), unit="min"),
            "icu_unit": patient["unittype"],
            "source": SOURCE,
            "merged_into": None,
        }
    )  # fmt: skip
    encounters = pd.DataFrame(
        {
            "encounter_id": pid,
            "patient_id": pid,
            "start_time": unit_admit,
            "end_time": unit_admit + pd.to_timedelta(patient["unitdischargeoffset"], unit="min"),
            "kind": "ICU",
            "source": SOURCE,
            "status": "finished",
            "location": [f"hospital {h}, {u}" for h, u in
                         zip(patient["hospitalid"], patient["unittype"], strict=True)],
        }
    )  # fmt: skip
    return record_part(
        patients=pa.Table.from_pandas(patients, schema=PATIENTS, preserve_index=False),
        encounters=pa.Table.from_pandas(encounters, schema=ENCOUNTERS, preserve_index=False),
    )


def _vitals(
    part: pd.DataFrame,
    table: str,
    columns: dict[str, tuple[str, str | None]],
    admit: pd.Series,
    received: datetime,
) -> Record:
    """One part of a vital-sign table: one observation per non-empty cell of a mapped column."""
    part = part[part["patientunitstayid"].isin(admit.index)]
    when = _at(admit, part["patientunitstayid"], part["observationoffset"])
    obs, bad, read = [], [], 0
    for col, (loinc, method) in columns.items():
        if col not in part.columns:
            continue
        raw = part[col]
        present = raw.notna()
        value = pd.to_numeric(raw[present], errors="coerce")
        read += int(present.sum())
        code = CODES[loinc]
        ok = value.between(code.low, code.high)
        rows = part.index[present]
        where = [f"{table} row {i + 2} {col}" for i in rows]
        keep = ok.to_numpy()
        n = int(keep.sum())
        obs.append(
            observations_table(
                {
                    "patient_id": _ids(part.loc[rows[keep], "patientunitstayid"]),
                    "effective_time": pa.array(when[rows[keep]], UTC_TS),
                    "loinc": [loinc] * n,
                    "value": value[keep].to_numpy(float),
                    "unit": [code.unit] * n,
                    "source": [SOURCE] * n,
                    "position": [w for w, k in zip(where, keep, strict=True) if k],
                    "device": [None] * n,
                    "received_time": pa.array([received] * n, UTC_TS),
                    "quality": [None] * n,
                    "method": [method] * n,
                }
            )
        )
        if not keep.all():
            shown = raw[present][~keep].astype(str).tolist()
            bad.append(
                quarantine_table(
                    SOURCE,
                    [w for w, k in zip(where, keep, strict=True) if not k],
                    col,
                    shown,
                    [
                        "value is not a number"
                        if np.isnan(v)
                        else f"outside plausible range {code.range_text()}"
                        for v in value[~keep].to_numpy(float)
                    ],
                    received,
                )
            )
    return record_part(
        read,
        pa.concat_tables([OBSERVATIONS.empty_table(), *obs]),
        pa.concat_tables([QUARANTINE.empty_table(), *bad]),
    )


def _medications(d: Path, admit: pd.Series, received: datetime, rows: int) -> Record:
    """Infusion rates (each until the next charted rate of its drug in the stay) and fluid
    boluses (module docstring)."""
    frames, bad = [], []
    cols = ["patientunitstayid", "infusionoffset", "drugname", "drugrate"]
    parts = [
        p[p["patientunitstayid"].isin(admit.index)]
        for p in read_table(d, "infusionDrug", cols, rows, EicuError)
    ]
    inf = pd.concat(parts, ignore_index=False) if parts else pd.DataFrame(columns=cols)
    inf = inf[inf["drugname"].notna() & inf["drugrate"].notna()]
    parsed = inf["drugname"].astype(str).str.extract(_DRUG)
    name = parsed["name"].fillna(inf["drugname"].astype(str)).str.strip().str.lower()
    unit_text = parsed["unit"].fillna("").str.strip().str.lower()
    rate = pd.to_numeric(inf["drugrate"], errors="coerce")
    known_unit = unit_text.isin(list(RATE_UNITS)) | (unit_text == "")
    ok = rate.notna() & (rate >= 0) & known_unit
    where = [f"infusionDrug row {i + 2}" for i in inf.index]
    if not ok.all():
        reasons = [
            "rate is not a number" if np.isnan(r) else
            "rate is negative" if r < 0 else f"rate unit {u!r} is not one vitaltwin reads"
            for r, u in zip(rate[~ok].to_numpy(float), unit_text[~ok], strict=True)
        ]  # fmt: skip
        raw = inf.loc[~ok, "drugrate"].astype(str).tolist()
        left = [w for w, k in zip(where, ok, strict=True) if not k]
        bad.append(quarantine_table(SOURCE, left, "drugrate", raw, reasons, received))
    good = pd.DataFrame(
        {
            "stay": inf["patientunitstayid"][ok],
            "offset": inf["infusionoffset"][ok],
            "drug": name[ok],
            "rate": rate[ok],
            "rate_unit": unit_text[ok].map(RATE_UNITS),
        }
    ).sort_values(["stay", "drug", "offset"], kind="stable")
    start = _at(admit, good["stay"], good["offset"])
    nxt = good.groupby(["stay", "drug"])["offset"].shift(-1)
    end = start + pd.to_timedelta(nxt - good["offset"], unit="min")
    frames.append(pd.DataFrame({
        "patient_id": _ids(good["stay"]), "drug": good["drug"].to_numpy(),
        "start_time": start.to_numpy(), "end_time": end.to_numpy(),
        "dose": np.nan, "dose_unit": None, "rate": good["rate"].to_numpy(float),
        "rate_unit": good["rate_unit"].to_numpy(dtype=object), "source": SOURCE,
    }))  # fmt: skip
    cols = ["patientunitstayid", "treatmentoffset", "treatmentstring"]
    for part in read_table(d, "treatment", cols, rows, EicuError):
        part = part[part["patientunitstayid"].isin(admit.index)]
        part = part[part["treatmentstring"].astype(str).str.contains(BOLUS)]
        frames.append(pd.DataFrame({
            "patient_id": _ids(part["patientunitstayid"]),
            "drug": part["treatmentstring"].astype(str).str.split("|").str[-1].to_numpy(),
            "start_time": _at(admit, part["patientunitstayid"], part["treatmentoffset"]).to_numpy(),
            "end_time": pd.NaT, "dose": np.nan, "dose_unit": None, "rate": np.nan,
            "rate_unit": None, "source": SOURCE,
        }))  # fmt: skip
    meds = pd.concat(frames, ignore_index=True)
    table = pa.Table.from_pandas(meds, schema=MEDICATIONS, preserve_index=False)
    return record_part(
        sum(t.num_rows for t in bad),  # the rows quarantined; the rest are medications
        quarantine=pa.concat_tables([QUARANTINE.empty_table(), *bad]),
        medications=table,
    )
