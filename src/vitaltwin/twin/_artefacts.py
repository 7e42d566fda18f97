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


def _groups(columns: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """A group id per row for the distinct combinations of ``columns``, and the number of
    groups."""
    frame = pd.DataFrame({str(i): c for i, c in enumerate(columns)})
    ids = frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()
    return ids, int(ids.max()) + 1 if len(ids) else 0


def _per_group(g: np.ndarray, n_groups: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each group's value among ``rows`` (NaN where it has none; the last one where several)."""
    out = np.full(n_groups, np.nan)
    out[g[rows]] = values[rows]
    return out


RULES = (
    ("not one", "MAP {m:g} outside its own {d:g}-{s:g} mmHg: not one measurement", False),
    ("cuff pp", "pulse pressure {pp:g} < 10 mmHg ({s:g}/{d:g}): cuff failure", False),
    ("cuff dia", "diastolic {d:g} < 20 mmHg with systolic {s:g}: cuff failure", False),
    ("flush", "{s:g}/{d:g} with pulse pressure {pp:g} mmHg: arterial line flush", False),
    ("damped", "pulse pressure {pp:g} < 15 mmHg ({s:g}/{d:g}): damped arterial line, "
               "MAP {m:g} kept", True),
)  # fmt: skip
"""The pressure signatures in the order they are tried (module docstring): name, the reason's
template, whether the MAP is kept."""


def screen(df: pd.DataFrame, keys: list[pd.Series]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Screen the rows of ``df`` (``loinc``, ``value``, optionally ``method``) grouped into
    cycles by ``keys`` (Series aligned with ``df``). Returns which rows to keep and, for each
    rejected row (its position in ``df``), the reason. Vectorized over the rows: the live
    service screens every bed's values each second."""
    n = len(df)
    keep = np.ones(n, bool)
    reasons: list[tuple[int, str]] = []
    if n == 0:
        return keep, reasons
    has_method = "method" in df.columns
    method = df["method"].fillna("").to_numpy(object) if has_method else np.full(n, "", object)
    loinc = df["loinc"].to_numpy(object)
    values = df["value"].to_numpy(np.float64)
    key_cols = [k.to_numpy() for k in keys]

    def reject(rows: np.ndarray, why: str) -> None:
        for r in rows:
            if keep[r]:
                keep[r] = False
                reasons.append((int(r), why))

    # pressures: one set per cycle and method
    bp = np.flatnonzero(np.isin(loinc, [SBP, DBP, MAP]))
    if bp.size:
        g, n_g = _groups([c[bp] for c in key_cols] + [method[bp]])
        code, v, how = loinc[bp], values[bp], method[bp]
        rows = np.arange(bp.size)
        s = _per_group(g, n_g, rows[code == SBP], v)
        d = _per_group(g, n_g, rows[code == DBP], v)
        m = _per_group(g, n_g, rows[code == MAP], v)
        first = np.full(n_g, "", object)
        first[g[::-1]] = how[::-1]  # each group's method (its first row's)
        cuff = np.isin(first, [CUFF, ""])
        art = first == ARTERIAL
        pp = s - d
        with np.errstate(invalid="ignore"):
            hits = {
                "not one": (m < d - 2) | (m > s + 2),
                "cuff pp": cuff & (pp < 10),
                "cuff dia": cuff & (d < 20) & (s >= 50),
                "flush": art & ((s >= 250) | (m >= 200)) & (pp < 20),
                "damped": art & (pp < 15) & (m >= 40),
            }
        rule = np.full(n_g, -1)
        for k, (name, _, _) in enumerate(RULES):
            rule = np.where((rule < 0) & hits[name], k, rule)
        for gi in np.flatnonzero(rule >= 0):
            _, text, map_ok = RULES[rule[gi]]
            why = text.format(s=s[gi], d=d[gi], m=m[gi], pp=pp[gi])
            in_g = g == gi
            gone = in_g & ~((code == MAP) & map_ok)
            reject(bp[gone], f"{why} ({first[gi] or 'method not given'})")
    # SpO2: the oximeter's pulse rate against the ECG's in the same cycle
    if has_method:
        hr = np.flatnonzero(loinc == HR)
        pleth = hr[method[hr] == OXIMETER]
        ecg = hr[method[hr] == ECG]
        if pleth.size and ecg.size:
            g, n_g = _groups(key_cols)
            p_rate = _per_group(g, n_g, pleth, values)
            e_rate = _per_group(g, n_g, ecg, values)
            with np.errstate(invalid="ignore"):
                off = np.flatnonzero(np.abs(p_rate - e_rate) > 30)
            if off.size:
                sat = np.isin(loinc, list(SPO2)) | ((loinc == HR) & (method == OXIMETER))
                for gi in off:
                    reject(np.flatnonzero(sat & (g == gi)),
                           f"pulse oximeter rate {p_rate[gi]:g} vs ECG {e_rate[gi]:g} /min: "
                           "probe off or poor signal")  # fmt: skip
    return keep, reasons
