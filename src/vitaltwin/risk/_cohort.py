"""From the canonical record to an hourly prediction grid (one row per patient-hour).

The risk models see data the way a bedside system would: a row per patient and hour since ICU
admission, holding what was measured in that hour (LOINC codes mapped to short names below; the
last value wins when a code was measured more than once in the hour). Rows are the hours at which
a prediction is made: the hours that carry a sepsis label where the source gives labels (the
PhysioNet 2019 layout, one row per charted hour), otherwise every hour from ICU admission to
the last observation. Nothing in a row comes from a later hour: features are built from this
grid by :mod:`vitaltwin.risk._features` with only past rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from vitaltwin.data import Record
from vitaltwin.data.versions import current
from vitaltwin.data.vocabulary import HOURLY_VARIABLES
from vitaltwin.interop import ReadError, read_any

if TYPE_CHECKING:
    from vitaltwin.store import Store

SEPSIS_LABEL = "sepsis_physionet2019"
NAME_BY_LOINC = {v.loinc: v.name for v in HOURLY_VARIABLES}
"""The grid's variables (the vocabulary's hourly variables), by LOINC code, with their short
names."""
VARIABLE_NAMES = tuple(v.name for v in HOURLY_VARIABLES)


class CohortError(ValueError):
    """A dataset that cannot become a prediction grid; the message says what is missing."""


@dataclass(frozen=True)
class Cohort:
    """The hourly grid and the patient table it came from.

    ``grid`` columns: ``patient_id``, ``hour`` (hours since ICU admission, 0 = first hour),
    ``sepsis`` (0/1 label, or -1 where the source has none), one column per name in
    :data:`VARIABLE_NAMES` (NaN where not measured in that hour). ``patients`` is indexed by
    ``patient_id`` with ``sex``, ``age_years``, ``icu_unit``, ``hosp_adm_h`` (hours from hospital
    to ICU admission, negative as in PhysioNet's ``HospAdmTime``), ``icu_admission_time``, and
    ``site`` and ``hospital`` (None where the source does not say): the site a transfer study
    leaves out (:func:`vitaltwin.risk.sites_of`; the ICU unit where no site is given) and the
    hospital the patient was in."""

    def admission_order(self) -> pd.Series:
        """Rank of each patient by ICU admission time, then identifier (sources without dates,
        such as PhysioNet 2019, put every admission at one instant: identifier order then)."""
        p = self.patients.reset_index().sort_values(["icu_admission_time", "patient_id"])
        return pd.Series(np.arange(len(p)), index=p["patient_id"].to_numpy())

    grid: pd.DataFrame
    patients: pd.DataFrame
    source: str

    @property
    def n_patients(self) -> int:
        return int(self.grid["patient_id"].nunique())

    def subset(self, patient_ids: np.ndarray | list[str]) -> Cohort:
        keep = set(map(str, patient_ids))
        g = self.grid[self.grid["patient_id"].isin(keep)].reset_index(drop=True)
        return Cohort(g, self.patients.loc[self.patients.index.isin(keep)], self.source)


def build_cohort(
    observations: pd.DataFrame,
    patients: pd.DataFrame,
    labels: pd.DataFrame | None,
    source: str = "canonical",
    sites: pd.DataFrame | None = None,
) -> Cohort:
    """Hourly grid from canonical tables (pandas frames with the canonical column names).
    ``sites`` (indexed by patient, columns ``site`` and optionally ``hospital``) says where each
    patient was, for a source whose sites are not its ICU units (eICU's hospitals).

    A censored value (comparator ``<``, ``>``, ...) enters as its bound: a lactate of ``<0.5``
    counts as 0.5, the usual reading of a result below the assay's limit. Pass current values
    only (the store's read API and :func:`vitaltwin.data.versions.current` give them)."""
    for col in ("patient_id", "effective_time", "loinc", "value"):
        if col not in observations.columns:
            raise CohortError(f"{source}: observations lack column {col!r}")
    for col in ("patient_id", "icu_admission_time"):
        if col not in patients.columns:
            raise CohortError(f"{source}: patients lack column {col!r}")
    pat = patients.drop_duplicates("patient_id").set_index("patient_id")
    if pat["icu_admission_time"].isna().any():
        missing = pat.index[pat["icu_admission_time"].isna()][:5].tolist()
        raise CohortError(f"{source}: no ICU admission time for patients {missing}")
    adm = pat["icu_admission_time"]
    obs = observations[observations["loinc"].isin(NAME_BY_LOINC.keys())]
    unknown = set(obs["patient_id"].unique()) - set(pat.index)
    if unknown:
        raise CohortError(
            f"{source}: observations of {len(unknown)} patients missing from the patient table, "
            f"e.g. {sorted(unknown)[:3]}"
        )
    hour = (obs["effective_time"] - obs["patient_id"].map(adm)).dt.total_seconds() // 3600
    obs = obs.assign(hour=hour.astype(np.int64), name=obs["loinc"].map(NAME_BY_LOINC))
    obs = obs[obs["hour"] >= 0].sort_values(["patient_id", "hour", "effective_time"])
    wide = (
        obs.groupby(["patient_id", "hour", "name"], sort=False)["value"]
        .last()
        .unstack("name")
        .reindex(columns=list(VARIABLE_NAMES))
    )
    if labels is not None and len(labels):
        lab = labels[labels["label"] == SEPSIS_LABEL]
        lh = (lab["time"] - lab["patient_id"].map(adm)).dt.total_seconds() // 3600
        rows = pd.DataFrame(
            {
                "patient_id": lab["patient_id"].to_numpy(),
                "hour": lh.astype(np.int64).to_numpy(),
                "sepsis": lab["value"].astype(np.int64).to_numpy(),
            }
        ).drop_duplicates(["patient_id", "hour"], keep="last")
    else:
        last = obs.groupby("patient_id")["hour"].max()
        rows = pd.DataFrame(
            {
                "patient_id": np.repeat(last.index.to_numpy(), last.to_numpy() + 1),
                "hour": np.concatenate([np.arange(h + 1) for h in last.to_numpy()]),
                "sepsis": -1,
            }
        )
    grid = rows.merge(wide.reset_index(), on=["patient_id", "hour"], how="left")
    grid = grid.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)
    hosp = pat.get("hospital_admission_time")
    hosp_h = (
        (hosp - adm).dt.total_seconds() / 3600
        if hosp is not None
        else pd.Series(np.nan, index=pat.index)
    )
    out_pat = pd.DataFrame(
        {
            "sex": pat.get("sex", pd.Series(None, index=pat.index, dtype=object)),
            "age_years": pat.get("age_years", pd.Series(np.nan, index=pat.index)).astype(float),
            "icu_unit": pat.get("icu_unit", pd.Series(None, index=pat.index, dtype=object)),
            "hosp_adm_h": hosp_h.astype(float),
            "icu_admission_time": adm,
            **{
                col: (
                    pd.Series(None, index=pat.index, dtype=object)
                    if sites is None or col not in sites.columns
                    else sites[col].reindex(pat.index).astype(object)
                )
                for col in ("site", "hospital")
            },
        },
        index=pat.index,
    )
    return Cohort(grid, out_pat.loc[out_pat.index.isin(set(grid["patient_id"]))], source)


def cohort_from_record(
    record: Record, source: str = "canonical", sites: pd.DataFrame | None = None
) -> Cohort:
    """Hourly grid from a canonical record (what any adapter returns): current values only
    (:func:`vitaltwin.data.versions.current`); ``sites`` as :func:`build_cohort`'s."""
    obs = current(record.observations).select(["patient_id", "effective_time", "loinc", "value"])
    return build_cohort(
        obs.to_pandas(),
        record.patients.to_pandas(),
        record.labels.to_pandas(),
        source=source,
        sites=sites,
    )


UNSTATED_REGION = "region not stated"


def eicu_cohort(directory: Path) -> Cohort:
    """Hourly grid of an eICU database folder, each stay's site its hospital's US census region
    (:data:`UNSTATED_REGION` where the ``hospital`` table leaves it empty): a region held out is
    every one of its hospitals held out, so each patient a transfer study scores there comes from
    a hospital its model never saw. eICU gives no sepsis labels (every hour carries -1)."""
    from vitaltwin.interop.eicu import EicuError, convert_eicu, stay_sites

    try:
        record = convert_eicu(directory)
        where = stay_sites(directory)
    except EicuError as exc:
        raise CohortError(str(exc)) from None
    sites = pd.DataFrame(
        {"site": where["region"].fillna(UNSTATED_REGION), "hospital": where["hospital"]}
    )
    return cohort_from_record(record, source=directory.name, sites=sites)


def cohort_from_store(
    store: Store, patient_ids: list[str] | None = None, source: str = "store"
) -> Cohort:
    """Hourly grid from what a store holds (all patients, or ``patient_ids``), leaving out the
    patients whose consent excludes research (a cohort trains and validates models)."""
    excluded = store.research_excluded()
    if excluded:
        every = store.patients(patient_ids).column("patient_id").to_pylist()
        patient_ids = [p for p in every if p not in excluded]
    obs = store.observations(patient_ids, loinc=list(NAME_BY_LOINC))
    obs = obs.select(["patient_id", "effective_time", "loinc", "value"]).to_pandas()
    return build_cohort(
        obs,
        store.patients(patient_ids).to_pandas(),
        store.labels(patient_ids, label=SEPSIS_LABEL).to_pandas(),
        source=source,
    )


def load_cohort(path: Path) -> Cohort:
    """A dataset in the canonical format (a directory written by ``vitaltwin export``:
    ``observations.parquet``, ``patients.parquet``, optionally ``labels.parquet``), an eICU
    database folder (:func:`eicu_cohort`) or any file an adapter reads
    (:func:`vitaltwin.interop.read_any`)."""
    from vitaltwin.interop.eicu import is_eicu

    if path.is_dir() and is_eicu(path):
        return eicu_cohort(path)
    if path.is_dir():
        if not (path / "observations.parquet").exists():
            raise CohortError(
                f"{path}: no observations.parquet (expected `vitaltwin export` output)"
            )
        obs_t = pq.read_table(path / "observations.parquet")
        if "status" in obs_t.column_names:  # an export with versions: current values only
            obs_t = current(obs_t)
        wanted = ["patient_id", "effective_time", "loinc", "value"]
        obs = obs_t.select([c for c in wanted if c in obs_t.column_names]).to_pandas()
        pat = pq.read_table(path / "patients.parquet").to_pandas()
        lab_path = path / "labels.parquet"
        lab = pq.read_table(lab_path).to_pandas() if lab_path.exists() else None
        return build_cohort(obs, pat, lab, source=path.name)
    if not path.exists():
        raise CohortError(f"{path}: no such file or directory")
    try:
        record = read_any(path)
    except ReadError as exc:
        raise CohortError(str(exc)) from None
    return cohort_from_record(record, source=path.name)
