"""What a ward overview shows, kept in memory from what the service does (no store reads on
the way to the screen): per bed the latest vital signs, the twin's deterioration risk with its
trend, the risk model's score, the data's freshness.

* **Vitals**: the latest value of each of the ward twin's observables handed over by the
  ingest worker (:meth:`WardBoard.stored`), with its time, and the wall-clock time the bed's
  last data arrived (freshness: a monitor that stops is visible even in a replay whose data
  times are in the past).
* **Deterioration risk**: the twin's forecast probability of its most likely declared event
  (MAP < 65 mmHg held 30 min, SpO2 < 90 %, lactate > 4 mmol/L) within the forecast horizon
  (:meth:`WardBoard.forecast`), with the model version and the last ``trend_points`` values.
* **Risk model**: the registered model's latest score, when the service runs one
  (:meth:`WardBoard.risk`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vitaltwin.data.schema import microseconds
from vitaltwin.physiology import WARD_TWIN

VITALS = ("HR", "MAP", "SBP", "DBP", "SpO2", "RR", "Temp", "Lactate")
"""The values a bed shows, in this order."""
STALE_AFTER_S = 30.0
"""A bed whose data stopped this long ago (wall clock) is shown stale."""


@dataclass
class _Bed:
    row: int  # of the board's vitals arrays
    received: float = 0.0  # time.time() of the last data
    risk: deque[tuple[datetime, float, str]] = field(default_factory=deque)
    risk_version: str = ""
    model_score: tuple[datetime, float, bool, str] | None = None  # time, p, confident, version


NO_TIME = np.iinfo(np.int64).min
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WardBoard:
    """The ward's beds (module docstring); safe to use from any thread. The latest vitals are
    kept in arrays (beds x :data:`VITALS`), updated a stored batch at a time."""

    def __init__(self, trend_points: int = 48) -> None:
        self.trend_points = trend_points
        self._beds: dict[str, _Bed] = {}
        self._lock = threading.Lock()
        self._names = {
            code: o.name for o in WARD_TWIN.observables for code in o.loinc if o.name in VITALS
        }
        self.units = {o.name: o.unit for o in WARD_TWIN.observables if o.name in VITALS}
        self._values = np.full((16, len(VITALS)), np.nan)
        self._times_us = np.full((16, len(VITALS)), NO_TIME, np.int64)  # since the epoch, UTC

    def _bed(self, pid: str) -> _Bed:
        bed = self._beds.get(pid)
        if bed is None:
            bed = self._beds[pid] = _Bed(len(self._beds), risk=deque(maxlen=self.trend_points))
            if bed.row >= len(self._values):
                grow = len(self._values)
                self._values = np.vstack([self._values, np.full_like(self._values, np.nan)])
                self._times_us = np.vstack(
                    [self._times_us, np.full((grow, len(VITALS)), NO_TIME, np.int64)]
                )
        return bed

    def stored(self, observations: pa.Table) -> None:
        """Observations just stored (canonical columns): keep each bed's latest values."""
        now = time.time()
        codes = observations.column("loinc").to_numpy(zero_copy_only=False).astype(str)
        ucode, code_i = np.unique(codes, return_inverse=True)
        col_of = np.array([VITALS.index(self._names[c]) if c in self._names else -1
                           for c in ucode.tolist()], np.int64)  # fmt: skip
        col = col_of[code_i]
        values = pc.fill_null(observations.column("value").cast(pa.float64()), np.nan)
        v = values.to_numpy()
        t = microseconds(observations.column("effective_time")).to_numpy()
        pids = observations.column("patient_id").to_numpy(zero_copy_only=False).astype(str)
        upid, pid_i = np.unique(pids, return_inverse=True)
        ok = (col >= 0) & np.isfinite(v)
        with self._lock:
            beds = [self._bed(p) for p in upid.tolist()]
            for bed in beds:
                bed.received = now
            rows = np.array([b.row for b in beds], np.int64)[pid_i[ok]]
            cols, tt, vv = col[ok], t[ok], v[ok]
            # the latest of each bed's values of a vital in the batch (ties: the last sent)
            order = np.lexsort((np.arange(tt.size), tt, rows * len(VITALS) + cols))
            key = (rows * len(VITALS) + cols)[order]
            last = order[np.append(key[1:] != key[:-1], True)]
            rows, cols, tt, vv = rows[last], cols[last], tt[last], vv[last]
            newer = tt >= self._times_us[rows, cols]
            self._values[rows[newer], cols[newer]] = vv[newer]
            self._times_us[rows[newer], cols[newer]] = tt[newer]

    def forecast(self, pid: str, when: datetime, probs: dict[str, float], version: str) -> None:
        """A twin forecast's event probabilities: the bed's deterioration risk is the most
        likely event's."""
        if not probs:
            return
        event = max(probs, key=lambda k: probs[k])
        with self._lock:
            bed = self._bed(pid)
            bed.risk.append((when, float(probs[event]), event))
            bed.risk_version = version

    def risk(self, pid: str, when: datetime, p: float, confident: bool, version: str) -> None:
        """The risk model's latest score for a bed."""
        with self._lock:
            self._bed(pid).model_score = (when, float(p), confident, version)

    def patients(self) -> list[str]:
        with self._lock:
            return sorted(self._beds)

    def bed(self, pid: str) -> dict[str, Any]:
        """One bed as JSON-ready values (times ISO 8601 UTC); KeyError when unknown."""
        now = time.time()
        with self._lock:
            b = self._beds[pid]
            vitals = {
                name: (EPOCH + timedelta(microseconds=int(t_us)), float(value))
                for name, value, t_us in zip(
                    VITALS, self._values[b.row], self._times_us[b.row], strict=True
                )
                if t_us != NO_TIME
            }
            trend = list(b.risk)
            version, score, received = b.risk_version, b.model_score, b.received
        age_s = now - received if received else None
        last = trend[-1] if trend else None
        return {
            "patient_id": pid,
            "vitals": {
                name: {"value": v, "unit": self.units[name], "time": t.isoformat()}
                for name, (t, v) in sorted(vitals.items(), key=lambda kv: VITALS.index(kv[0]))
            },
            "data_age_s": age_s,
            "stale": age_s is None or age_s > STALE_AFTER_S,
            "deterioration": None
            if last is None
            else {
                "probability": last[1],
                "event": last[2],
                "time": last[0].isoformat(),
                "model_version": version,
                "trend": [p for _, p, _ in trend],
            },
            "risk_model": None
            if score is None
            else {
                "probability": score[1],
                "low_confidence": not score[2],
                "time": score[0].isoformat(),
                "model_version": score[3],
            },
        }
