"""Known artefact signatures of bedside measurements, found before the filter sees the values.

A value inside its plausible range can still be an artefact whose signature is known; the
filter's innovation gate catches only what is far from the twin's forecast, and an artefact
near it (or a twin that is unsure) would drag the state. Each cycle's values (one patient, one
minute) are screened as a set, per measurement method:

* **Not one measurement**: a MAP outside its own diastolic-systolic range (by more than
  2 mmHg): the three numbers do not belong together. All three rejected.
* **Cuff failure** (method ``non-invasive-cuff``, or not given): a pulse pressure below
  10 mmHg, or a diastolic below 20 mmHg with a systolic of 50 or more (an oscillometric
  cuff's failed deflation or motion, e.g. 74/10): all three rejected.
* **Damped arterial line** (``invasive-arterial``): a pulse pressure below 15 mmHg with a MAP of
  40 or more. Over-damping flattens the waveform: systolic falls and diastolic rises, while the
  mean stays nearly right (Gardner 1981 [gardner1981]; McGhee & Bridges 2002 [mcghee2002]):
  systolic and diastolic rejected, MAP kept.
* **Flush** (``invasive-arterial``): a systolic of 250 or more, or a MAP of 200 or more, with a
  pulse pressure below 20 mmHg: the square wave of a flush or a fast-flush test, not the
  patient [mcghee2002]. All three rejected.
* **Probe off or poor signal** (SpO2): the oximeter's pulse rate (heart rate by
  ``pulse-oximetry``) and the ECG's differing by more than 30 /min in the same minute: the
  oximeter is not reading a pulse. Its SpO2 and its pulse rate rejected.

Every decision is returned with its reason, naming the values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SBP, DBP, MAP, HR = "8480-6", "8462-4", "8478-0", "8867-4"
SPO2 = ("59408-5", "2708-6")
CUFF, ARTERIAL, OXIMETER, ECG = "non-invasive-cuff", "invasive-arterial", "pulse-oximetry", "ecg"


def _group_key(keys: list[pd.Series], method: pd.Series) -> pd.Series:
    """One string per row naming its cycle (and method)."""
    key: pd.Series = keys[0].astype(str)
    for k in [*keys[1:], method]:
        key = key + "|" + k.astype(str)
    return key


def screen(df: pd.DataFrame, keys: list[pd.Series]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Screen the rows of ``df`` (``loinc``, ``value``, optionally ``method``) grouped into
    cycles by ``keys`` (Series aligned with ``df``). Returns which rows to keep and, for each
    rejected row (its position in ``df``), the reason."""
    n = len(df)
    keep = np.ones(n, bool)
    reasons: list[tuple[int, str]] = []
    if n == 0:
        return keep, reasons
    method = df["method"].fillna("") if "method" in df.columns else pd.Series("", index=df.index)
    loinc = df["loinc"].astype(str)
    values = df["value"].to_numpy(np.float64)
    pos = np.arange(n)
    cycle = _group_key(keys, pd.Series("", index=df.index))

    def reject(rows: np.ndarray, why: str) -> None:
        for r in rows:
            if keep[r]:
                keep[r] = False
                reasons.append((int(r), why))

    # pressures: one set per cycle and method
    bp = loinc.isin([SBP, DBP, MAP]).to_numpy()
    if bp.any():
        frame = pd.DataFrame(
            {"g": _group_key(keys, method)[bp].to_numpy(), "code": loinc[bp].to_numpy(),
             "v": values[bp], "pos": pos[bp], "method": method[bp].to_numpy()}
        )  # fmt: skip
        last = frame.groupby(["g", "code"])["v"].last().unstack()
        for c in (SBP, DBP, MAP):
            if c not in last.columns:
                last[c] = np.nan
        how = frame.groupby("g")["method"].first()
        s, d, m = last[SBP], last[DBP], last[MAP]
        pp = s - d
        cuff = how.reindex(last.index).isin([CUFF, ""])
        art = how.reindex(last.index).eq(ARTERIAL)
        why = pd.Series("", index=last.index, dtype=object)
        keep_map = pd.Series(False, index=last.index)
        rules = [
            ((m < d - 2) | (m > s + 2),
             "MAP {m:g} outside its own {d:g}-{s:g} mmHg: not one measurement", False),
            (cuff & (pp < 10),
             "pulse pressure {pp:g} < 10 mmHg ({s:g}/{d:g}): cuff failure", False),
            (cuff & (d < 20) & (s >= 50),
             "diastolic {d:g} < 20 mmHg with systolic {s:g}: cuff failure", False),
            (art & ((s >= 250) | (m >= 200)) & (pp < 20),
             "{s:g}/{d:g} with pulse pressure {pp:g} mmHg: arterial line flush", False),
            (art & (pp < 15) & (m >= 40),
             "pulse pressure {pp:g} < 15 mmHg ({s:g}/{d:g}): damped arterial line, MAP {m:g} kept",
             True),
        ]  # fmt: skip
        for hit, text, map_ok in rules:
            new = hit.fillna(False).astype(bool) & why.eq("")
            for g in last.index[new.to_numpy()]:
                why[g] = text.format(s=s[g], d=d[g], m=m[g], pp=pp[g])
                keep_map[g] = map_ok
        bad = why.ne("")
        if bad.any():
            hit_rows = frame[frame["g"].isin(why.index[bad.to_numpy()])]
            for g, rows in hit_rows.groupby("g"):
                kept = rows["code"].eq(MAP) & bool(keep_map[g])
                via = rows["method"].iloc[0] or "method not given"
                reject(rows.loc[~kept, "pos"].to_numpy(), f"{why[g]} ({via})")
    # SpO2: the oximeter's pulse rate against the ECG's in the same cycle
    hr = loinc.eq(HR).to_numpy()
    if hr.any() and "method" in df.columns:
        rate = pd.DataFrame(
            {"g": cycle[hr].to_numpy(), "m": method[hr].to_numpy(), "v": values[hr]}
        )
        by = rate.groupby(["g", "m"])["v"].last().unstack()
        if OXIMETER in by.columns and ECG in by.columns:
            gap = (by[OXIMETER] - by[ECG]).abs()
            off = gap.index[(gap > 30).to_numpy()]
            if len(off):
                sat = loinc.isin(list(SPO2)).to_numpy() | (hr & method.eq(OXIMETER).to_numpy())
                in_off = cycle.isin(off).to_numpy()
                for g in off:
                    at = pos[sat & in_off & cycle.eq(g).to_numpy()]
                    reject(at, f"pulse oximeter rate {by.loc[g, OXIMETER]:g} vs ECG "
                                 f"{by.loc[g, ECG]:g} /min: probe off or poor signal")  # fmt: skip
    return keep, reasons
