"""Versions of a result: corrections, retractions and preliminary → final, without overwriting.

A *result* is identified by (patient, LOINC code, effective time). Its versions arrive as rows
with a ``status`` (:data:`vitaltwin.data.schema.STATUSES`), and are applied in arrival order:

* ``preliminary``: a current value, until a later version of the result arrives;
* ``final``: current; it supersedes the result's earlier *preliminary* values (two final values
  of one result, e.g. from two monitors, both stay current);
* ``corrected`` (HL7 OBX-11 ``C``, FHIR ``amended``/``corrected``): current; it supersedes every
  earlier current value of the result;
* ``entered-in-error`` (HL7 ``W``/``D``, FHIR ``entered-in-error``): a retraction. The earlier
  current values with the same value (all of them when none matches) become
  ``entered-in-error``; the retraction row itself is kept with that status.

Replaced rows become ``superseded`` and stay stored (both versions are queryable for audit);
:func:`is_current` says which rows queries, the twin and risk models see.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

IDENTITY = ("patient_id", "loinc", "effective_time")
"""What makes two rows versions of one result."""

NOT_CURRENT = ("superseded", "entered-in-error")
"""Statuses of rows that are kept for audit but are no longer a value of the patient."""

CORRECTIVE = ("preliminary", "corrected", "entered-in-error")
"""Statuses whose arrival can change other rows (a final value changes only preliminary ones)."""


def is_current(status: pd.Series | np.ndarray) -> np.ndarray:
    """Whether each row is a current value (neither superseded nor retracted)."""
    return ~np.isin(np.asarray(status, dtype=object), NOT_CURRENT)


def resolve(rows: pd.DataFrame, arriving: np.ndarray | None = None) -> np.ndarray:
    """The status of every row once the versions are applied.

    ``rows`` (the identity columns, ``value`` and ``status``) are in arrival order; ``arriving``
    marks the rows whose arrival is applied now (default: all). The others are already stored
    with their resolved status: the current ones are the versions the arrivals may replace."""
    status = rows["status"].to_numpy(dtype=object).copy()
    if len(rows) == 0:
        return status
    new = np.ones(len(rows), bool) if arriving is None else np.asarray(arriving, bool)
    groups = rows.groupby(list(IDENTITY), sort=False, dropna=False).indices
    values = rows["value"].to_numpy()
    for idx in groups.values():
        if (
            len(idx) < 2
            or not new[idx].any()
            or not (
                np.isin(status[idx[new[idx]]], CORRECTIVE).any()
                or (status[idx] == "preliminary").any()
            )
        ):
            continue  # one version, or final values only: nothing to resolve
        live: list[int] = []
        for i in idx:
            s = status[i]
            if not new[i]:
                if s not in NOT_CURRENT:
                    live.append(i)
            elif s == "final":
                for j in [j for j in live if status[j] == "preliminary"]:
                    status[j] = "superseded"
                    live.remove(j)
                live.append(i)
            elif s == "corrected":
                for j in live:
                    status[j] = "superseded"
                live = [i]
            elif s == "entered-in-error":
                same = [j for j in live if values[j] == values[i]]
                for j in same or list(live):
                    status[j] = "entered-in-error"
                    live.remove(j)
            elif s == "preliminary":
                live.append(i)
    return status


def _current_rows(status: np.ndarray, rows: Callable[[], pd.DataFrame]) -> np.ndarray | None:
    """Which rows are current after resolving the versions (``rows`` gives the identity columns,
    value and status); None when there is nothing to resolve (final values only)."""
    if not np.isin(status, (*CORRECTIVE, *NOT_CURRENT)).any():
        return None
    return is_current(resolve(rows()))


def current_frame(observations: pd.DataFrame) -> pd.DataFrame:
    """:func:`current` for a pandas frame in arrival order (``patient_id`` may be absent: one
    patient's values)."""
    if "status" not in observations.columns:
        return observations
    keep = _current_rows(
        observations["status"].to_numpy(dtype=object),
        lambda: observations.assign(
            patient_id=observations.get("patient_id", pd.Series("", index=observations.index))
        ).reset_index(drop=True),
    )
    return observations if keep is None else observations[keep]


def current(observations: pa.Table) -> pa.Table:
    """The current values of a canonical observations table read as it arrived (row order):
    versions resolved, superseded and retracted rows left out. What a store holds is resolved
    at ingestion; this is for records read straight from files."""
    keep = _current_rows(
        observations.column("status").to_numpy(zero_copy_only=False),
        lambda: observations.select([*IDENTITY, "value", "status"]).to_pandas(),
    )
    return observations if keep is None else observations.filter(pa.array(keep))
