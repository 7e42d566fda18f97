"""Monitoring a twin's event forecasts in service: how well the probabilities it gave came true,
window by window, and whether what it sees has drifted.

A forecast made at data time ``t`` says how likely each declared event (e.g. MAP < 65 mmHg held
30 min) is within the next ``horizon_h`` hours. Unlike a sepsis label, such an event needs no
chart review: the monitors show whether it happened. :class:`ForecastMonitor` keeps the
forecasts (at most one per patient every ``every_s`` seconds, so a patient forecast often does
not weigh more) and the monitored values as **per-minute medians** (a median is not moved by a
few seconds of artefact, such as a flushed arterial line), and once the patient's data reach
``t + horizon_h`` it decides the outcome:

* **happened** when the condition held for ``max(sustained_min, 1)`` minutes in
  ``(t, t + horizon_h]``: a run of samples all meeting it, each at most ``MAX_GAP_MIN`` (5)
  minutes after the last (a longer gap breaks the run, so missing data are never read as an
  event), lasting from its first sample to a minute past its last; a vital sign's run needs two
  samples (``VITAL_CONFIRM``: a single artefactual minute is not an event), a lab's one;
* **did not happen** when it never did and the window was observed: at least one value for an
  event at any time (a lab such as lactate, measured every few hours), data covering at least
  half the window for a sustained one (each sample covering up to five minutes after it) and
  no run still going when the data stopped;
* **unknown** otherwise (counted, left out of the figures: a missing lactate is not a normal one).

A forecast's outcome is decided once, when the patient's data first pass its horizon (values
arriving later for its window are not used), and the minute medians and forecasts are kept for
``keep_h`` (72 h): the monitor's memory grows with the beds, not with time.

**Forecast bands** are checked the same way: a forecast may carry, per monitored value, its
band ``band_horizon_min`` (60) minutes ahead as quantiles (5, 50, 95 %), read as a normal
(:func:`vitaltwin.twin.normal_of_quantiles`); once the patient's data pass that minute, the
minute median nearest to it (within ``BAND_TOLERANCE_MIN``; none: no outcome, a gap is not
one) is the outcome. Its standardized error goes to :attr:`ForecastMonitor.band_calibration`
(:class:`vitaltwin.twin.OnlineBandCalibration`), from which the service issues its calibrated
one-hour bands, and :meth:`ForecastMonitor.band_coverage` counts how often the outcome fell
inside the 50 % and 90 % bands as issued (that normal's) and as calibrated when the forecast
was made.

The minute-median rule is this monitor's reading of the event, not the forecast's (which applies
the definition to the model's noise-free observables at its own time step); the difference is
the measurement noise the forecast's event probabilities do not include.

Per time window (``window_h`` of data time, by the forecast's time) and event, the figures and
the actions are those of :func:`vitaltwin.risk.monitor`'s retraining policy (AUROC and
calibration with patient-bootstrap intervals, judged once the window holds ``min_positive``
events), plus the Brier score and the mean forecast beside the observed rate. Drift is the
population stability index of each monitored value's minute medians, and of each event's
forecast probabilities, against the earliest window kept (the deciles of its values).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from vitaltwin.data.schema import microseconds
from vitaltwin.data.vocabulary import code as vocabulary_code
from vitaltwin.model import Event, TwinSpec
from vitaltwin.risk._evaluate import calibration
from vitaltwin.risk._model import bin_fractions, decile_edges
from vitaltwin.risk._monitor import RetrainingPolicy, WindowReport, _judge, psi
from vitaltwin.twin import OnlineBandCalibration, normal_of_quantiles

FORECAST_POLICY = RetrainingPolicy(min_positive=20, n_boot=100)
"""The policy's defaults for forecasts: a ward's window holds fewer events than a sepsis
cohort's, and the page recomputes the open window on request."""

MIN_COVERAGE = 0.5
"""Fraction of a sustained event's minutes that data must cover for "did not happen"."""
NEVER = -1e18  # the newest data time (epoch s) of a patient without any
CLOSE_EVERY_S = 5.0
"""Buffered values are folded into minute medians at most this often (wall clock), and
whenever a figure is asked for."""
MAX_GAP_MIN = 5
"""Samples at most this many minutes apart continue a run (a demo in fast-forward, a monitor
sampled every few minutes); a longer gap breaks it."""
BAND_TOLERANCE_MIN = 2
"""A band's outcome is the minute median at most this many minutes from its target minute."""
NORMAL_HALF_WIDTH = (float(norm.ppf(0.75)), float(norm.ppf(0.95)))
"""The 50 % and 90 % central bands of a normal, in SDs."""
VITAL_CONFIRM = 2
"""Samples in a row a vital sign's event needs (one artefactual minute is not an event); a
lab's needs one."""


def json_safe(x: Any) -> Any:
    """``x`` with NaN floats as None and tuples as lists, in nested dicts and lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, float | np.floating):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


@dataclass
class _Minutes:
    """Closed per-minute medians of one monitored value of one patient, in time order."""

    minutes: list[int] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)

    def extend(self, minutes: npt.NDArray[np.int64], medians: npt.NDArray[np.float64]) -> int:
        """Append minutes (in time order) after the last one kept; returns how many came too
        late (a minute already closed)."""
        last = self.minutes[-1] if self.minutes else -(2**62)
        keep = minutes > last
        self.minutes.extend(minutes[keep].tolist())
        self.medians.extend(medians[keep].tolist())
        return int((~keep).sum())

    def drop_before(self, minute: int) -> None:
        i = bisect.bisect_left(self.minutes, minute)
        if i:
            del self.minutes[:i], self.medians[:i]

    def between(
        self, start: int | None, end: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Closed minutes in ``[start, end)`` (None: unbounded) and their medians, in time
        order."""
        i = 0 if start is None else bisect.bisect_left(self.minutes, start)
        j = len(self.minutes) if end is None else bisect.bisect_left(self.minutes, end)
        return (
            np.asarray(self.minutes[i:j], np.int64),
            np.asarray(self.medians[i:j], np.float64),
        )


def shift(reference: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> float:
    """The population stability index of ``values`` against ``reference``'s deciles."""
    edges = decile_edges(reference)
    return psi(bin_fractions(reference, edges), bin_fractions(values, edges))


def summary(y: npt.NDArray[np.int64], p: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    """Brier score, mean forecast and observed rate of outcomes ``y`` forecast ``p`` (NaN
    without outcomes)."""
    if not y.size:
        return math.nan, math.nan, math.nan
    return float(np.mean((p - y) ** 2)), float(p.mean()), float(y.mean())


def group_medians(
    keys: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The distinct ``keys`` (sorted) and the median of the values of each."""
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    counts = np.diff(np.append(starts, k.size))
    med = (v[starts + (counts - 1) // 2] + v[starts + counts // 2]) / 2.0
    return k[starts], med


def first_run(
    event: Event,
    minutes: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    min_samples: int = 1,
) -> int | None:
    """The first minute of the first run in which ``event``'s condition held for
    ``max(sustained_min, 1)`` minutes (``values``: per-minute medians at ``minutes``, in time
    order), or None. A run is a sequence of samples all meeting the condition, at most
    :data:`MAX_GAP_MIN` apart, at least ``min_samples`` of them; it lasts from its first
    sample's minute to one minute past its last."""
    cond = values < event.threshold if event.below else values > event.threshold
    idx = np.flatnonzero(cond)
    if idx.size == 0:
        return None
    m = minutes[idx]
    # a run breaks at a sample not meeting the condition, or at a gap in the data
    brk = (np.diff(idx) != 1) | (np.diff(m) > MAX_GAP_MIN)
    starts = np.concatenate([[0], np.flatnonzero(brk) + 1])
    ends = np.append(starts[1:], idx.size) - 1
    lasts = m[ends] - m[starts] + 1
    need = max(math.ceil(event.sustained_min), 1)
    ok = np.flatnonzero((lasts >= need) & (ends - starts + 1 >= min_samples))
    return int(m[starts[ok[0]]]) if ok.size else None


def covered(minutes: npt.NDArray[np.int64], end: int) -> int:
    """Minutes of a window ending at ``end`` (exclusive) that data cover: each sample covers
    itself and the minutes after it up to the next sample, at most :data:`MAX_GAP_MIN`."""
    if minutes.size == 0:
        return 0
    nxt = np.append(minutes[1:], end)
    return int(np.minimum(nxt - minutes, MAX_GAP_MIN).sum())


def outcome(
    event: Event,
    minutes: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    start: int,
    end: int,
    min_samples: int = 1,
) -> int:
    """1 if ``event`` happened in the window of minutes ``[start, end)`` whose data are
    ``values`` at ``minutes`` (per-minute medians, in time order), 0 if it did not, -1 if the
    window was not observed enough to say (module docstring)."""
    if first_run(event, minutes, values, min_samples) is not None:
        return 1
    if event.sustained_min <= 0:
        return 0 if minutes.size else -1
    if minutes.size == 0:
        return -1
    last = values[-1] < event.threshold if event.below else values[-1] > event.threshold
    if last and end - minutes[-1] > MAX_GAP_MIN:
        return -1  # a run still going when the data stopped: it may have gone on
    return 0 if covered(minutes, end) >= MIN_COVERAGE * (end - start) else -1


@dataclass
class EventWindow:
    """One event's forecasts made in one window, scored against what happened."""

    event: str
    report: WindowReport
    unknown: int  # forecasts whose outcome the data could not decide
    brier: float
    mean_forecast: float
    observed_rate: float
    forecast_psi: float  # of this window's forecast probabilities against the earliest window's

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "report": vars(self.report)}


@dataclass
class ForecastMonitoringReport:
    """Figures per window (rows: windows, oldest first) and event, with the values' drift."""

    horizon_h: float
    window_h: float
    policy: RetrainingPolicy
    windows: list[str]
    events: dict[str, list[EventWindow]]  # event -> one per window that has resolved forecasts
    drift: pd.DataFrame  # monitored value x window: PSI against the earliest window
    pending: int  # forecasts whose horizon the data have not reached yet
    bands: dict[str, dict[str, float]] = field(default_factory=dict)  # band_coverage()

    @property
    def decision(self) -> str:
        acts = {
            a.split(":")[0] for ws in self.events.values() for w in ws for a in w.report.actions
        }
        return "retrain" if "retrain" in acts else ("investigate" if acts else "ok")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        out: dict[str, Any] = json_safe({
            "horizon_h": self.horizon_h,
            "window_h": self.window_h,
            "decision": self.decision,
            "policy": vars(self.policy),
            "pending": self.pending,
            "bands": self.bands,
            "windows": self.windows,
            "events": {e: [w.to_dict() for w in ws] for e, ws in self.events.items()},
            "drift": {w: self.drift[w].to_dict() for w in self.drift.columns},
        })  # fmt: skip
        return out


class ForecastMonitor:
    """Forecasts against outcomes (module docstring); safe to use from any thread.

    ``spec``: the twin declaration whose events are forecast and whose observables' LOINC codes
    name the monitored values. ``reference_auroc``: an event's development AUROC, when known
    (the policy's drop check applies only then)."""

    def __init__(
        self,
        spec: TwinSpec,
        horizon_h: float,
        every_s: float = 900.0,
        window_h: float = 6.0,
        keep_h: float = 72.0,
        policy: RetrainingPolicy = FORECAST_POLICY,
        reference_auroc: Mapping[str, float] | None = None,
        band_horizon_min: float = 60.0,
    ) -> None:
        self.events: tuple[Event, ...] = tuple(spec.events)
        self.observables = tuple(spec.observables)
        self.horizon_h, self.every_s, self.window_h, self.keep_h = (
            horizon_h,
            every_s,
            window_h,
            keep_h,
        )
        self.policy = policy
        self.reference_auroc = dict(reference_auroc or {})
        self._name = {code: o.name for o in spec.observables for code in o.loinc}
        self._confirm = {
            o.name: VITAL_CONFIRM if vocabulary_code(o.loinc[0]).kind == "vital" else 1
            for o in spec.observables
        }
        self._names = [o.name for o in spec.observables]
        self._lock = threading.Lock()
        self._series: dict[str, dict[str, _Minutes]] = {}  # patient -> value -> medians
        self._index: dict[str, int] = {}  # patient -> row of the arrays below
        self._pids: list[str] = []
        self._newest_s = np.full(16, NEVER)  # data time (epoch s) of each one's newest value
        self._pending: list[tuple[npt.NDArray[Any], ...]] = []  # values of open minutes
        self._pending_rows = 0
        self._closed_at = -math.inf  # time.monotonic() of the last close
        self.late = 0  # minutes whose values came after the minute had closed (not used)
        self._forecasts: list[tuple[str, float, dict[str, float]]] = []
        self._last: dict[str, float] = {}
        self._cache: dict[tuple[str, str], tuple[int, EventWindow]] = {}
        # outcomes of resolved forecasts (patient, time) -> event -> 1/0/-1, decided once
        self._resolved: dict[tuple[str, float], dict[str, int]] = {}
        # closed per-minute medians by monitored value and window, for the drift
        self._by_window: dict[str, dict[str, list[float]]] = {}
        self._report_lock = threading.Lock()
        self._onset: dict[str, int] = {}  # patient -> minute of the first event seen
        self._onset_read: dict[tuple[str, str], int] = {}  # (patient, event) -> minutes read
        self.band_horizon_min = band_horizon_min
        self.band_calibration = OnlineBandCalibration(self._names)
        # bands waiting for their outcome: (patient index, target minute, name -> (centre, sd,
        # the calibrated 50 % and 90 % half-widths in SDs when the forecast was made))
        self._bands: list[tuple[int, int, dict[str, tuple[float, ...]]]] = []
        # per name: outcomes, inside the issued 50 / 90 % bands, inside the calibrated ones
        self._band_counts: dict[str, npt.NDArray[np.int64]] = {}

    def forecast(
        self,
        patient_id: str,
        when: datetime,
        probabilities: Mapping[str, float],
        band: Mapping[str, Mapping[str, float]] | None = None,
    ) -> bool:
        """Keep a forecast made at data time ``when``: event probabilities and, optionally, per
        monitored value its band ``band_horizon_min`` ahead (quantiles ``q05``, ``q50``,
        ``q95``); False when the patient's previous kept forecast is less than ``every_s``
        older."""
        t = when.timestamp()
        with self._lock:
            if t - self._last.get(patient_id, -math.inf) < self.every_s:
                return False
            self._last[patient_id] = t
            known = {e.name for e in self.events}
            probs = {k: float(v) for k, v in probabilities.items() if k in known}
            self._forecasts.append((patient_id, t, probs))
            kept: dict[str, tuple[float, ...]] = {}
            for name, q in (band or {}).items():
                if name not in self._names:
                    continue
                centre, sd = normal_of_quantiles(q["q05"], q["q50"], q["q95"])
                if math.isfinite(centre) and math.isfinite(sd) and sd > 0:
                    cal = self.band_calibration
                    kept[name] = (centre, sd, cal.half_width(name, 0.5),
                                  cal.half_width(name, 0.9))  # fmt: skip
            if kept:
                target = int((t + self.band_horizon_min * 60.0) // 60)
                self._bands.append((self._patient_index(patient_id), target, kept))
        return True

    def _resolve_bands(self) -> None:
        """Outcomes of the bands whose target minute the patient's data have passed (under the
        lock, after closing minutes): their errors calibrate, and they are counted in or out."""
        if not self._bands:
            return
        waiting = []
        resolved: dict[str, list[tuple[float, ...]]] = {}
        for i, target, band in self._bands:
            if self._newest_s[i] // 60 <= target + BAND_TOLERANCE_MIN:
                waiting.append((i, target, band))
                continue
            series = self._series.get(self._pids[i], {})
            for name, kept in band.items():
                m = series.get(name)
                if m is None:
                    continue
                mins, vals = m.between(target - BAND_TOLERANCE_MIN,
                                       target + BAND_TOLERANCE_MIN + 1)  # fmt: skip
                if mins.size:
                    value = float(vals[np.argmin(np.abs(mins - target))])
                    resolved.setdefault(name, []).append((value, *kept))
        self._bands = waiting
        issued = NORMAL_HALF_WIDTH
        for name, rows in resolved.items():
            v, c, sd, k50, k90 = np.array(rows).T
            z = np.abs(v - c) / sd
            counts = self._band_counts.setdefault(name, np.zeros(5, np.int64))
            counts += [z.size, (z <= issued[0]).sum(), (z <= issued[1]).sum(),
                       (z <= k50).sum(), (z <= k90).sum()]  # fmt: skip
            self.band_calibration.record(name, v, c, sd)

    def band_coverage(self) -> dict[str, dict[str, float]]:
        """Per monitored value with resolved one-hour bands: how many, the share of outcomes
        inside the 50 % and 90 % bands as issued (the normal read from the issued quantiles)
        and as calibrated when each forecast was made, and the calibration's factors now."""
        with self._lock:
            self._close()
            counts = {k: v.copy() for k, v in self._band_counts.items()}
        cal = self.band_calibration
        return {
            name: {
                "outcomes": float(n),
                "issued_50": i50 / n,
                "issued_90": i90 / n,
                "calibrated_50": c50 / n,
                "calibrated_90": c90 / n,
                "factor_50": cal.factor(name, 0.5),
                "factor_90": cal.factor(name, 0.9),
            }
            for name, (n, i50, i90, c50, c90) in counts.items()
            if n
        }

    def observed(self, observations: pa.Table) -> None:
        """Observations just stored (canonical columns): their values wait in a buffer until
        their patient's data reach a later minute, then each minute's median is kept
        (vectorized: a second of a 5,000-bed ward is one pass over arrays)."""
        names = observations.column("loinc").to_numpy(zero_copy_only=False)
        ucode, code_i = np.unique(names.astype(str), return_inverse=True)
        name_of = np.array([self._names.index(self._name[c]) if c in self._name else -1
                            for c in ucode.tolist()], np.int64)  # fmt: skip
        name_i = name_of[code_i]
        values = observations.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
        ok = (name_i >= 0) & np.isfinite(values)
        if not ok.any():
            return
        pids = observations.column("patient_id").to_numpy(zero_copy_only=False)[ok]
        times = microseconds(observations.column("effective_time")).to_numpy()[ok]
        seconds = times / 1e6  # since the epoch, UTC
        upid, pid_i = np.unique(pids.astype(str), return_inverse=True)
        with self._lock:
            index = np.array([self._patient_index(p) for p in upid.tolist()], np.int64)
            patient = index[pid_i]
            before = self._newest_s[index] // 60
            np.maximum.at(self._newest_s, patient, seconds)
            newest = self._newest_s
            self._pending.append(
                (patient, name_i[ok], (seconds // 60).astype(np.int64), values[ok])
            )
            self._pending_rows += int(ok.sum())
            advanced = bool((newest[index] // 60 > before).any())
            now = time.monotonic()
            if (advanced and now - self._closed_at > CLOSE_EVERY_S) or self._pending_rows > 2e6:
                self._close()
            cutoff = float(newest.max()) - self.keep_h * 3600.0
            if self._forecasts and self._forecasts[0][1] < cutoff:
                self._forecasts = [f for f in self._forecasts if f[1] >= cutoff]
                self._resolved = {k: v for k, v in self._resolved.items() if k[1] >= cutoff}
                first = self._window(cutoff)
                for windows in self._by_window.values():
                    for key in [k for k in windows if k < first]:
                        del windows[key]  # ISO times of one zone sort as times
                for series in self._series.values():
                    for m in series.values():
                        m.drop_before(int(cutoff // 60))
                self._onset = {p: m for p, m in self._onset.items() if m >= cutoff // 60}
                self._bands = [b for b in self._bands if b[1] >= cutoff // 60]

    def _newest(self, pid: str) -> float:
        i = self._index.get(pid)
        return NEVER if i is None else float(self._newest_s[i])

    def _patient_index(self, pid: str) -> int:
        i = self._index.get(pid)
        if i is None:
            i = self._index[pid] = len(self._pids)
            self._pids.append(pid)
            if i >= self._newest_s.size:
                grown = np.full(max(16, 2 * self._newest_s.size), NEVER)
                grown[: self._newest_s.size] = self._newest_s
                self._newest_s = grown
        return i

    def _close(self) -> None:
        """Medians of the buffered minutes before each patient's newest, then the bands those
        minutes resolve (under the lock)."""
        self._close_minutes()
        self._resolve_bands()

    def _close_minutes(self) -> None:
        self._closed_at = time.monotonic()
        if not self._pending:
            return
        patient, name, minute, value = (np.concatenate(c) for c in zip(*self._pending, strict=True))
        done = minute < (self._newest_s[patient] // 60).astype(np.int64)
        self._pending = [(patient[~done], name[~done], minute[~done], value[~done])]
        self._pending_rows = int((~done).sum())
        if not done.any():
            return
        n_names = len(self._names)
        span = int(minute[done].max()) + 1
        key = (patient[done] * n_names + name[done]) * span + minute[done]
        keys, medians = group_medians(key, value[done])
        series_key, minutes = np.divmod(keys, span)
        bounds = np.flatnonzero(np.diff(series_key)) + 1
        for chunk, mins, meds in zip(np.split(series_key, bounds), np.split(minutes, bounds),
                                     np.split(medians, bounds), strict=True):  # fmt: skip
            p, n = divmod(int(chunk[0]), n_names)
            pid, obs = self._pids[p], self._names[n]
            self.late += (
                self._series.setdefault(pid, {}).setdefault(obs, _Minutes()).extend(mins, meds)
            )
        w = self.window_h * 3600.0
        window_start = (minutes * 60.0 // w).astype(np.int64)
        obs_of = series_key % n_names
        for n in np.unique(obs_of).tolist():
            for ws in np.unique(window_start[obs_of == n]).tolist():
                sel = (obs_of == n) & (window_start == ws)
                by = self._by_window.setdefault(self._names[n], {})
                by.setdefault(self._window(ws * w), []).extend(medians[sel].tolist())

    def describe(self) -> str:
        """The declared events in words, e.g. ``MAP < 65 mmHg held 30 min``."""
        units = {o.name: o.unit.replace("[", "").replace("]", "") for o in self.observables}
        return ", ".join(
            f"{e.observable} {'<' if e.below else '>'} {e.threshold:g} {units[e.observable]}"
            + (f" held {e.sustained_min:g} min" if e.sustained_min > 0 else "")
            for e in self.events
        )

    def onsets(self) -> dict[str, datetime]:
        """Each patient's first declared event seen on the monitors (the start of its first
        qualifying run), among the minutes kept: the outcomes of the alert scorecard. Each
        call reads only the minutes closed since the last (and a run's length before them),
        so asking often does not hold up :meth:`observed`."""
        with self._lock:
            self._close()
            for pid, series in self._series.items():
                if pid in self._onset:
                    continue
                firsts = []
                for e in self.events:
                    m = series.get(e.observable)
                    if m is None:
                        continue
                    # a run that began earlier and is still going was already long enough
                    # to count when last read, unless it began within this look-back
                    look_back = max(math.ceil(e.sustained_min), 1) + MAX_GAP_MIN
                    since = self._onset_read.get((pid, e.name))
                    mins, vals = m.between(None if since is None else since - look_back, None)
                    if mins.size:
                        self._onset_read[(pid, e.name)] = int(mins[-1]) + 1
                    first = first_run(e, mins, vals, self._confirm[e.observable])
                    if first is not None:
                        firsts.append(first)
                if firsts:
                    self._onset[pid] = min(firsts)
            return {p: datetime.fromtimestamp(m * 60.0, UTC) for p, m in self._onset.items()}

    def pooled(self) -> dict[str, dict[str, float]]:
        """Per event, every resolved forecast kept, pooled over the windows: forecasts decided,
        events, AUROC, calibration intercept and slope, Brier score, mean forecast, observed
        rate (NaN where a figure needs both outcomes)."""
        df, _ = self._outcomes()
        out: dict[str, dict[str, float]] = {}
        nan = math.nan
        for e in self.events:
            rows = df[(df["event"] == e.name) & (df["outcome"] >= 0)]
            y = rows["outcome"].to_numpy(np.int64)
            p = rows["probability"].to_numpy(np.float64)
            both = 0 < y.sum() < y.size
            a, b = calibration(y, p) if both else (nan, nan)
            brier, mean_forecast, observed_rate = summary(y, p)
            out[e.name] = {
                "forecasts": float(y.size),
                "events": float(y.sum()),
                "auroc": float(roc_auc_score(y, p)) if both else nan,
                "intercept": a,
                "slope": b,
                "brier": brier,
                "mean_forecast": mean_forecast,
                "observed_rate": observed_rate,
            }
        return out

    def _window(self, t: float) -> str:
        w = self.window_h * 3600.0
        return datetime.fromtimestamp(math.floor(t / w) * w, UTC).isoformat()

    def _outcomes(self) -> tuple[pd.DataFrame, int]:
        """Resolved forecasts: patient, time, window, event, probability, outcome."""
        span = round(self.horizon_h * 60)
        rows, pending = [], 0
        with self._lock:
            self._close()
            for pid, t, probs in self._forecasts:
                if self._newest(pid) < t + self.horizon_h * 3600.0 + 60.0:
                    pending += 1
                    continue
                decided = self._resolved.get((pid, t))
                if decided is None:
                    decided = self._resolved[(pid, t)] = self._decide(pid, t, probs, span)
                for event, y in decided.items():
                    rows.append((pid, t, self._window(t), event, probs[event], y))
        cols = ["patient_id", "time", "window", "event", "probability", "outcome"]
        return pd.DataFrame(rows, columns=cols), pending

    def _decide(self, pid: str, t: float, probs: Mapping[str, float], span: int) -> dict[str, int]:
        """The outcome of each event of the forecast made at ``t`` (under the lock)."""
        start = int(t // 60) + 1
        out = {}
        for e in self.events:
            if e.name not in probs:
                continue
            series = self._series.get(pid, {}).get(e.observable)
            mins, vals = series.between(start, start + span) if series else ([], [])
            out[e.name] = outcome(e, np.asarray(mins, np.int64), np.asarray(vals), start,
                                  start + span, self._confirm[e.observable])  # fmt: skip
        return out

    def _values_by_window(self) -> dict[str, dict[str, npt.NDArray[np.float64]]]:
        with self._lock:
            self._close()
            return {
                n: {k: np.asarray(v) for k, v in ws.items()} for n, ws in self._by_window.items()
            }

    def report(self) -> ForecastMonitoringReport:
        """The figures of every window whose forecasts have resolved (module docstring).
        Windows whose forecasts did not change since the last report are not recomputed."""
        with self._report_lock:
            return self._report()

    def _report(self) -> ForecastMonitoringReport:
        df, pending = self._outcomes()
        for key in [k for k in self._cache if k[1] not in set(df["window"])]:
            del self._cache[key]  # windows no longer kept
        windows = sorted(df["window"].unique().tolist()) if len(df) else []
        events: dict[str, list[EventWindow]] = {}
        for e in self.events:
            sub = df[df["event"] == e.name]
            ref: npt.NDArray[np.float64] | None = None
            out = []
            for w in windows:
                rows = sub[sub["window"] == w]
                if rows.empty:
                    continue
                p_all = rows["probability"].to_numpy(np.float64)
                ref = p_all if ref is None else ref
                cached = self._cache.get((e.name, w))
                if cached is None or cached[0] != len(rows):
                    cached = (len(rows), self._event_window(e.name, w, rows, ref))
                    self._cache[(e.name, w)] = cached
                out.append(cached[1])
            events[e.name] = out
        values = self._values_by_window()
        drift = pd.DataFrame(index=sorted(values), columns=windows, dtype=float)
        for name, ws in values.items():
            if not ws:
                continue
            earliest = ws[min(ws)]
            for w in windows:
                if w in ws:
                    drift.loc[name, w] = shift(earliest, ws[w])
        return ForecastMonitoringReport(
            self.horizon_h,
            self.window_h,
            self.policy,
            windows,
            events,
            drift,
            pending,
            self.band_coverage(),
        )

    def _event_window(
        self, event: str, window: str, rows: pd.DataFrame, ref: npt.NDArray[np.float64]
    ) -> EventWindow:
        # the bootstrap resamples patients: each one's rows together, in time order
        known = rows[rows["outcome"] >= 0].sort_values(["patient_id", "time"], kind="stable")
        y = known["outcome"].to_numpy(np.int64)
        p = known["probability"].to_numpy(np.float64)
        pos = int(y.sum())
        r = WindowReport(window, int(y.size), pos, math.nan, math.nan, math.nan, [])
        if pos >= self.policy.min_positive and pos < y.size:
            ref_auroc = self.reference_auroc.get(event, math.nan)
            _judge(r, y, p, known["patient_id"].to_numpy(), ref_auroc, self.policy)
            if math.isnan(ref_auroc):
                r.notes.append("no development AUROC known: its drop is not judged")
        else:
            r.notes.append(
                f"{pos} events in {y.size} forecasts (< {self.policy.min_positive} events, or "
                "no forecast without one): performance not judged"
            )
        moved = shift(ref, rows["probability"].to_numpy(np.float64))
        if moved > self.policy.psi_major:
            r.drifted_features.append(f"forecast:{event}")
        unknown = int((rows["outcome"] < 0).sum())
        return EventWindow(event, r, unknown, *summary(y, p), moved)
