"""PhysioNet/CinC Challenge 2019 sepsis data (PSV files or the shared Parquet) -> canonical record.

Each hourly row becomes one observation per measured variable, at ``admission + (ICULOS - 1) h``
(ICULOS counts hours since ICU admission from 1 for the first hour); ``admission`` is
configurable (default 2000-01-01T00:00Z — the Challenge data carry no dates). The 34
measurements map to LOINC codes with their UCUM units; the six descriptors (Age, Gender, Unit1,
Unit2, HospAdmTime, ICULOS) go to the patient record and the time axis; each stay becomes an
ICU encounter from ``admission`` to the end of its last hour (``admission + max(ICULOS) h``);
SepsisLabel becomes a label. Values outside each code's plausibility range are quarantined with
the reason, not stored. Data: Reyna et al. 2020 [reyna2020].
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from vitaltwin.data.schema import (
    ENCOUNTERS,
    LABELS,
    PATIENTS,
    QUARANTINE,
    Record,
    observations_table,
)
from vitaltwin.data.vocabulary import HOURLY_VARIABLES, Code
from vitaltwin.interop._errors import ReadError

VARIABLES: tuple[Code, ...] = HOURLY_VARIABLES
"""The 34 measured variables of the Challenge, from the vocabulary: each column's name is the
code's short name; units and plausible ranges are the vocabulary's."""

DESCRIPTORS = ("Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS")
"""The six non-measurement columns: to the patient record and the time axis."""

DEFAULT_ADMISSION = datetime(2000, 1, 1, tzinfo=UTC)


class PhysioNetError(ReadError):
    """A PhysioNet file that cannot be read; the message names the file and the field."""


def read_psv(path: Path) -> pd.DataFrame:
    """One Challenge PSV file (one patient); the patient id is the file stem."""
    try:
        df = pd.read_csv(path, sep="|")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PhysioNetError(f"{path}: cannot read as PSV ({exc})") from None
    missing = [c for c in (*(v.name for v in VARIABLES), "ICULOS") if c not in df.columns]
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
) -> Record:
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
        vals = pd.to_numeric(df[v.name], errors="coerce").to_numpy(dtype=np.float64)
        raw = df[v.name]
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
                    f"{v.name} is not a number",
                    np.where(
                        np.isinf(vals[bad]),
                        f"{v.name} is infinite",
                        f"{v.name} outside plausible range {v.range_text()}",
                    ),
                ),
            )
            q_parts.append(
                pd.DataFrame(
                    {
                        "position": pos[bad],
                        "field": v.name,
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
    return Record(
        observations,
        quarantine,
        _patients(df, source, admission),
        _labels(df, times, source),
        n_read,
        encounters=_encounters(pid, iculos, source, admission),
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
            "merged_into": [None] * len(first),
        },
        schema=PATIENTS,
    )


def _encounters(pid: np.ndarray, iculos: np.ndarray, source: str, admission: datetime) -> pa.Table:
    """One ICU encounter per stay, ``admission`` to the end of the last charted hour (None when
    no row of the stay has an ICULOS)."""
    last = pd.Series(iculos).groupby(pid, sort=False).max()
    start = pd.Timestamp(admission)
    return pa.table(
        {
            "encounter_id": [f"{p}:icu" for p in last.index.astype(str)],
            "patient_id": last.index.astype(str).tolist(),
            "start_time": [admission] * len(last),
            "end_time": [start + pd.Timedelta(hours=h) if np.isfinite(h) else None for h in last],
            "kind": ["ICU"] * len(last),
            "source": [source] * len(last),
            "status": [None] * len(last),  # the Challenge does not say whether a stay ended
            "location": [None] * len(last),
        },
        schema=ENCOUNTERS,
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
