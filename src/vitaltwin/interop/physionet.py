"""PhysioNet/CinC Challenge 2019 sepsis data (PSV files or the shared Parquet) -> canonical record.

Each hourly row becomes one observation per measured variable, at ``admission + (ICULOS - 1) h``
(ICULOS counts hours since ICU admission from 1 for the first hour); ``admission`` is
configurable (default 2000-01-01T00:00Z — the Challenge data carry no dates). The 34
measurements map to LOINC codes with their UCUM units; the six descriptors (Age, Gender, Unit1,
Unit2, HospAdmTime, ICULOS) go to the patient record and the time axis; SepsisLabel becomes a
label. Values outside each code's plausibility range are quarantined with the reason, not
stored. Data: Reyna et al. 2020 [reyna2020].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from vitaltwin.data.schema import LABELS, PATIENTS, QUARANTINE, observations_table


@dataclass(frozen=True)
class Variable:
    column: str
    loinc: str
    unit: str  # UCUM
    low: float  # plausibility range: outside it a value is quarantined
    high: float
    description: str


VARIABLES: tuple[Variable, ...] = (
    Variable("HR", "8867-4", "/min", 10, 300, "heart rate"),
    Variable("O2Sat", "59408-5", "%", 20, 100, "SpO2 by pulse oximetry"),
    Variable("Temp", "8310-5", "Cel", 25, 45, "body temperature"),
    Variable("SBP", "8480-6", "mm[Hg]", 20, 300, "systolic blood pressure"),
    Variable("MAP", "8478-0", "mm[Hg]", 10, 250, "mean blood pressure"),
    Variable("DBP", "8462-4", "mm[Hg]", 5, 250, "diastolic blood pressure"),
    Variable("Resp", "9279-1", "/min", 1, 80, "respiratory rate"),
    Variable("EtCO2", "19889-5", "mm[Hg]", 1, 150, "end-tidal CO2"),
    Variable("BaseExcess", "11555-0", "mmol/L", -40, 40, "base excess"),
    Variable("HCO3", "1959-6", "mmol/L", 1, 60, "bicarbonate"),
    Variable("FiO2", "19994-3", "1", 0.15, 1.0, "inspired O2 fraction"),
    Variable("pH", "2744-1", "[pH]", 6.5, 8.0, "arterial pH"),
    Variable("PaCO2", "2019-8", "mm[Hg]", 5, 200, "arterial PCO2"),
    Variable("SaO2", "2708-6", "%", 20, 100, "arterial O2 saturation"),
    Variable("AST", "1920-8", "U/L", 0, 30000, "aspartate aminotransferase"),
    Variable("BUN", "3094-0", "mg/dL", 0, 300, "urea nitrogen"),
    Variable("Alkalinephos", "6768-6", "U/L", 0, 5000, "alkaline phosphatase"),
    Variable("Calcium", "17861-6", "mg/dL", 1, 25, "calcium"),
    Variable("Chloride", "2075-0", "mmol/L", 50, 160, "chloride"),
    Variable("Creatinine", "2160-0", "mg/dL", 0.05, 30, "creatinine"),
    Variable("Bilirubin_direct", "1968-7", "mg/dL", 0, 50, "direct bilirubin"),
    Variable("Glucose", "2345-7", "mg/dL", 5, 2000, "glucose"),
    Variable("Lactate", "2524-7", "mmol/L", 0.1, 40, "lactate"),
    Variable("Magnesium", "19123-9", "mg/dL", 0.2, 15, "magnesium"),
    Variable("Phosphate", "2777-1", "mg/dL", 0.1, 25, "phosphate"),
    Variable("Potassium", "2823-3", "mmol/L", 1, 12, "potassium"),
    Variable("Bilirubin_total", "1975-2", "mg/dL", 0, 60, "total bilirubin"),
    Variable("TroponinI", "10839-9", "ng/mL", 0, 500, "troponin I"),
    Variable("Hct", "4544-3", "%", 5, 75, "haematocrit"),
    Variable("Hgb", "718-7", "g/dL", 1, 25, "haemoglobin"),
    Variable("PTT", "3173-2", "s", 5, 250, "activated partial thromboplastin time"),
    Variable("WBC", "6690-2", "10*3/uL", 0, 500, "white-cell count"),
    Variable("Fibrinogen", "3255-7", "mg/dL", 10, 2000, "fibrinogen"),
    Variable("Platelets", "777-3", "10*3/uL", 1, 3000, "platelets"),
)
"""The 34 measured variables of the Challenge (8 vital signs, 26 laboratory values)."""

DESCRIPTORS = ("Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS")
"""The six non-measurement columns: to the patient record and the time axis."""

DEFAULT_ADMISSION = datetime(2000, 1, 1, tzinfo=UTC)


class PhysioNetError(ValueError):
    """A PhysioNet file that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class Converted:
    """Canonical tables from one input; ``values_read`` counts the records that must end
    stored, quarantined or duplicate (observation values and quarantine entries)."""

    observations: pa.Table
    quarantine: pa.Table
    patients: pa.Table
    labels: pa.Table
    values_read: int
    encounters: pa.Table | None = None
    conditions: pa.Table | None = None
    medications: pa.Table | None = None
    waveforms: pa.Table | None = None

    def context(self) -> dict[str, pa.Table | None]:
        """The tables other than observations and quarantine, for ``Store.ingest``."""
        return {
            "patients": self.patients,
            "labels": self.labels,
            "encounters": self.encounters,
            "conditions": self.conditions,
            "medications": self.medications,
            "waveforms": self.waveforms,
        }


def read_psv(path: Path) -> pd.DataFrame:
    """One Challenge PSV file (one patient); the patient id is the file stem."""
    try:
        df = pd.read_csv(path, sep="|")
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PhysioNetError(f"{path}: cannot read as PSV ({exc})") from None
    missing = [c for c in (*(v.column for v in VARIABLES), "ICULOS") if c not in df.columns]
    if missing:
        raise PhysioNetError(f"{path}: missing columns {missing}")
    df.insert(0, "patient_id", path.stem)
    df.insert(1, "hour", np.arange(len(df)))
    return df


def convert(
    df: pd.DataFrame,
    source: str,
    admission: datetime = DEFAULT_ADMISSION,
    received: datetime | None = None,
) -> Converted:
    """Hourly rows (the shared Parquet layout, or :func:`read_psv`) to the canonical tables."""
    if admission.tzinfo is None:
        raise PhysioNetError("admission time must be timezone-aware (UTC)")
    received = received or datetime.now(UTC)
    for c in ("patient_id", "ICULOS"):
        if c not in df.columns:
            raise PhysioNetError(f"{source}: missing column {c!r}")
    iculos = pd.to_numeric(df["ICULOS"], errors="coerce").to_numpy(dtype=np.float64)
    bad_t = ~np.isfinite(iculos)
    times = pd.to_datetime(admission) + pd.to_timedelta(np.where(bad_t, 0, iculos - 1), unit="h")
    rowpos = (
        df["hour"].to_numpy() if "hour" in df.columns else np.arange(len(df))
    )  # position within the stay
    pid = df["patient_id"].astype(str).to_numpy()

    pos = pd.Series(pid).str.cat(pd.Series(rowpos).astype(str), sep=":row ").to_numpy()
    obs_parts: list[pd.DataFrame] = []
    q_parts: list[pd.DataFrame] = []
    n_read = 0
    for v in VARIABLES:
        vals = pd.to_numeric(df[v.column], errors="coerce").to_numpy(dtype=np.float64)
        raw = df[v.column]
        # present: anything but an empty cell or NaN ("NaN" is the Challenge's missing marker)
        if pd.api.types.is_numeric_dtype(raw):
            present = raw.notna().to_numpy()
        else:
            present = (
                raw.notna().to_numpy()
                & ~raw.astype(str).str.strip().isin(["", "NaN", "nan"]).to_numpy()
            )
        n_read += int(present.sum())
        ok = present & ~bad_t & (vals >= v.low) & (vals <= v.high)
        bad = present & ~ok
        if ok.any():
            obs_parts.append(
                pd.DataFrame(
                    {
                        "patient_id": pid[ok],
                        "effective_time": times[ok],
                        "loinc": v.loinc,
                        "value": vals[ok],
                        "unit": v.unit,
                        "position": pos[ok],
                    }
                )
            )
        if bad.any():
            reason = np.where(
                bad_t[bad],
                "ICULOS missing: no time",
                np.where(
                    np.isnan(vals[bad]),
                    f"{v.column} is not a number",
                    f"{v.column} outside plausible range [{v.low:g}, {v.high:g}] {v.unit}",
                ),
            )
            q_parts.append(
                pd.DataFrame(
                    {
                        "position": pos[bad],
                        "field": v.column,
                        "raw_value": raw[bad].astype(str).to_numpy(),
                        "reason": reason,
                    }
                )
            )
    obs = pd.concat(obs_parts, ignore_index=True) if obs_parts else _empty_obs()
    n = len(obs)
    observations = observations_table(
        {
            "patient_id": obs["patient_id"].tolist(),
            "effective_time": pd.to_datetime(obs["effective_time"], utc=True),
            "loinc": obs["loinc"].tolist(),
            "value": obs["value"].to_numpy(dtype=np.float64),
            "unit": obs["unit"].tolist(),
            "source": [source] * n,
            "position": obs["position"].tolist(),
            "device": [None] * n,
            "received_time": [received] * n,
            "quality": [None] * n,
        }
    )
    q = (
        pd.concat(q_parts, ignore_index=True)
        if q_parts
        else pd.DataFrame(columns=["position", "field", "raw_value", "reason"])
    )
    quarantine = pa.table(
        {
            "source": [source] * len(q),
            "position": q["position"].astype(str).tolist(),
            "field": q["field"].astype(str).tolist(),
            "raw_value": q["raw_value"].astype(str).tolist(),
            "reason": q["reason"].astype(str).tolist(),
            "received_time": [received] * len(q),
        },
        schema=QUARANTINE,
    )
    return Converted(
        observations,
        quarantine,
        _patients(df, source, admission),
        _labels(df, times, source),
        n_read,
    )


def _empty_obs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": [],
            "effective_time": pd.to_datetime([], utc=True),
            "loinc": [],
            "value": [],
            "unit": [],
            "position": [],
        }
    )


def _patients(df: pd.DataFrame, source: str, admission: datetime) -> pa.Table:
    first = df.groupby("patient_id", sort=False).first()
    sex = first["Gender"].map({0: "female", 1: "male"})
    unit = [
        "MICU" if u1 == 1 else ("SICU" if u2 == 1 else None)
        for u1, u2 in zip(first["Unit1"], first["Unit2"], strict=True)
    ]
    hosp = [
        admission + timedelta(hours=float(h)) if pd.notna(h) else None for h in first["HospAdmTime"]
    ]
    return pa.table(
        {
            "patient_id": first.index.astype(str).tolist(),
            "sex": [s if isinstance(s, str) else None for s in sex],
            "age_years": first["Age"].astype(float).tolist(),
            "birth_date": [None] * len(first),
            "icu_admission_time": [admission] * len(first),
            "hospital_admission_time": hosp,
            "icu_unit": unit,
            "source": [source] * len(first),
        },
        schema=PATIENTS,
    )


def _labels(df: pd.DataFrame, times: pd.DatetimeIndex, source: str) -> pa.Table:
    if "SepsisLabel" not in df.columns:
        return LABELS.empty_table()
    return pa.table(
        {
            "patient_id": df["patient_id"].astype(str).tolist(),
            "time": pd.to_datetime(times, utc=True),
            "label": ["sepsis_physionet2019"] * len(df),
            "value": df["SepsisLabel"].fillna(0).astype("int8").tolist(),
            "source": [source] * len(df),
        },
        schema=LABELS,
    )
