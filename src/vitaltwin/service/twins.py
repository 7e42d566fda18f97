"""Live twins in the service: every patient whose vitals are stored gets a twin, and all of them
are kept in one :class:`vitaltwin.twin.TwinShard`, so each round assimilates every patient with
new data in one batched call (at 1 Hz: one call per second for the whole ward).

* **Data flow**: the ingest worker hands over what it has just stored (:meth:`notify`); the
  supervisor's thread takes everything handed over since its last round and assimilates it.
  The store is read only to resume (below) and for a new patient's demographics.
* **Start**: a patient's twin starts at their first observation handed over, from their
  demographics (age and sex where the record has them) with the vital-sign discrepancy of a
  real patient (:data:`vitaltwin.physiology.ward_twin.VITAL_SIGN_DISCREPANCY`).
* **Exactly once**: a twin assimilates only observations after its own time; values at or
  before it (a re-delivered message, or a value that arrived after the twin moved on) are
  counted as late, not assimilated.
* **Checkpoints**: the whole shard, in the store (:meth:`vitaltwin.store.Store.save_state`,
  replaced in one transaction), every ``checkpoint_s`` and on :meth:`TwinSupervisor.stop`, so
  a service on another machine sharing the PostgreSQL store can resume it. A restarted
  supervisor loads it and reads from the store what its patients have after their twins'
  times, and the patients first seen since the checkpoint, so a restarted service continues
  exactly where the checkpoint left off and nothing stored is missed or assimilated twice.
* **Compiled at start-up**: :meth:`TwinSupervisor.warm_up` compiles the batched cycle for the
  expected ward size, a forecast, a two-plan what-if and the ranking of the model's candidates,
  so no patient waits for JAX (readiness waits for it).
* **Forecasts** of up to ``forecasts_per_round`` patients (those longest without one) run
  batched in a thread of their own (the shard lock held only to copy the ensembles, so a
  six-hour forecast never holds up the next round), which works at most ``forecast_duty`` of
  the time (half: the rounds come first); each patient gets one every
  ``forecast_every_s`` of twin time, once the twin has tracked the patient for ``settle_s``
  (one hour by default): a twin that has just started knows the population, not the
  patient, and its wide first forecasts raise alerts no one should act on (on the simulated
  ward of seed 7, 10 of 110 alerts came in the twins' first half hour; docs "The service",
  alerts).
* **Never silently stale**: :meth:`TwinSupervisor.status` says ``degraded — monitor manually``
  when the twin is behind the newest data handed over by more than ``max_lag_s``, when new
  data has waited longer than that for the twin, or when no data has arrived for
  ``stale_after_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from vitaltwin.physiology import PatientProfile
from vitaltwin.physiology.ward_twin import VITAL_SIGN_DISCREPANCY
from vitaltwin.service._patients import ServiceThread
from vitaltwin.service.alerts import DECISION_SUPPORT
from vitaltwin.store import Store
from vitaltwin.twin import QUANTILES, PatientTwin, TwinShard, compare, optimize, whatif_of

log = logging.getLogger("vitaltwin.service")
DEGRADED = "degraded — monitor manually"
RESUME_MARGIN = timedelta(minutes=10)
"""On resume, patients first seen up to this long before the checkpoint was written are looked
for in the store too (data handed over but not yet in the checkpoint's shard)."""

OnForecast = Callable[[str, datetime, dict[str, float], str, dict[str, Any]], None]


def profile_of(row: dict[str, Any] | None) -> PatientProfile:
    """A twin's demographics from a patient row (defaults where the record has none; age in
    whole years, which is all the population prior resolves)."""
    if not row:
        return PatientProfile()
    age, sex = row.get("age_years"), row.get("sex")
    return PatientProfile(
        age_years=float(np.clip(round(age), 18, 100)) if age is not None else 40.0,
        sex=sex if sex in ("male", "female") else "male",
    )


class TwinSupervisor(ServiceThread):
    """Keeps every patient's twin up to date with what is stored (module docstring)."""

    name = "twins"

    def __init__(
        self,
        store: Store,
        lock: threading.Lock,
        checkpoint_key: str = "twins",
        n_members: int = 32,
        checkpoint_s: float = 60.0,
        max_lag_s: float = 0.5,
        stale_after_s: float = 120.0,
        forecast_every_s: float = 300.0,
        forecasts_per_round: int = 32,
        forecast_hours: float = 6.0,
        forecast_duty: float = 0.5,
        settle_s: float = 3600.0,
        expected_beds: int = 64,
        on_forecast: OnForecast | None = None,
        observe: Callable[[str, float], None] | None = None,
        on_update: Callable[[list[tuple[str, datetime]]], None] | None = None,
    ) -> None:
        super().__init__()
        self.store, self.lock = store, lock
        self.checkpoint_key = checkpoint_key
        self.checkpoint_s, self.max_lag_s, self.stale_after_s = (
            checkpoint_s,
            max_lag_s,
            stale_after_s,
        )
        self.forecast_every_s, self.forecasts_per_round = forecast_every_s, forecasts_per_round
        self.forecast_hours, self.settle_s = forecast_hours, settle_s
        if not 0 < forecast_duty <= 1:
            raise ValueError(f"forecast_duty: a share of a core in (0, 1], not {forecast_duty}")
        self.forecast_duty = forecast_duty
        self.expected_beds = expected_beds
        self.on_forecast, self.on_update = on_forecast, on_update
        self.observe = observe or (lambda stage, seconds: None)
        self.shard = TwinShard(n_members=n_members, discrepancy=VITAL_SIGN_DISCREPANCY)
        self.newest: dict[str, datetime] = {}  # newest observation handed over, per patient
        self.last_data: dict[str, float] = {}  # monotonic time of the last new data
        self.forecast_at: dict[str, datetime] = {}  # twin time of the last forecast handed on
        self.saved_at = time.monotonic()
        self.ready = threading.Event()
        self.paused = threading.Event()  # set: no rounds (maintenance); the watchdog shows it
        self._pending: list[pa.Table] = []
        self._shard_lock = threading.RLock()  # the shard, between the threads and the API
        self._moved: dict[str, datetime] = {}  # patients to forecast (the forecaster's queue)
        self._fc_cond = threading.Condition()
        self._forecaster: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the rounds' thread and, when forecasts are handed on, the forecaster's."""
        super().start()
        if self.on_forecast is not None:
            self._forecaster = threading.Thread(target=self._forecast_loop,
                                                name="twin-forecasts", daemon=True)  # fmt: skip
            self._forecaster.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the current round and checkpoint the shard."""
        super().stop(timeout_s)
        with self._fc_cond:
            self._fc_cond.notify_all()
        if self._forecaster is not None:
            self._forecaster.join(timeout_s)
        self.checkpoint()

    def __contains__(self, patient_id: object) -> bool:
        return patient_id in self.shard

    def warm_up(self) -> float:
        """Compile the batched cycle (up to the expected ward size), the forecast, a two-plan
        what-if and the ranking of the model's candidates (seconds it took)."""
        t0 = time.perf_counter()
        self.shard.warm_up(
            self.expected_beds,
            min(self.forecasts_per_round, self.expected_beds),
            self.forecast_hours,
        )
        if self.forecast_hours != 1.0:  # the API's and CDS Hooks' one-hour forecast too
            self.shard.warm_up(1, 1, 1.0)
        start = datetime(2000, 1, 1, tzinfo=UTC)
        twin = PatientTwin("warm-up", PatientProfile(), start, n_members=self.shard.n_members,
                           discrepancy=VITAL_SIGN_DISCREPANCY)  # fmt: skip
        spec = twin.spec.whatif
        if spec is not None:  # a plan against no change (CDS order-select), and the ranking
            compare(twin, spec.candidates()[:2], 6.0)
            optimize(twin, hours=6.0)
        self.ready.set()
        return time.perf_counter() - t0

    def notify(self, observations: pa.Table) -> None:
        """Observations just stored (the canonical schema)."""
        if observations.num_rows == 0:
            return
        now = time.monotonic()
        pids = pc.unique(observations.column("patient_id")).to_pylist()
        with self._cond:
            self._pending.append(observations)
            for pid in pids:
                self.waiting.setdefault(pid, now)
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            if not self.ready.is_set():
                self.warm_up()
            self.resume()
        except Exception as exc:
            self.errors["*"] = f"start-up failed: {type(exc).__name__}: {exc}"
            log.exception("twins: start-up failed")
            return
        while not self._stop.is_set():
            if self.paused.is_set():  # data waits (and the twins show degraded) until resumed
                self._stop.wait(0.1)
                continue
            with self._cond:
                if not self._pending:
                    self._cond.wait(0.5)
                pending, self._pending = self._pending, []
                self.waiting = {}  # what was waiting is taken now; new data marks afresh
            if pending:
                try:
                    self.round(pa.concat_tables(pending, promote_options="permissive"))
                    self.errors.pop("*", None)
                except Exception as exc:  # a round's failure is said, never stops the thread
                    self.errors["*"] = f"{type(exc).__name__}: {exc}"
                    log.exception("twins: round failed")
            if time.monotonic() - self.saved_at > self.checkpoint_s:
                self.checkpoint()

    # -- rounds ---------------------------------------------------------------------------------

    def _add_new(self, table: pa.Table) -> None:
        """Start twins for the table's patients the shard does not have yet."""
        pids = pc.unique(table.column("patient_id")).to_pylist()
        new = [p for p in pids if p not in self.shard]
        if not new:
            return
        with self.lock:
            rows = {r["patient_id"]: r for r in self.store.patients(new).to_pylist()}
        first = table.group_by("patient_id").aggregate([("effective_time", "min")])
        starts = dict(zip(first.column("patient_id").to_pylist(),
                          first.column("effective_time_min").to_pylist(), strict=True))  # fmt: skip
        with self._shard_lock:
            for pid in new:
                # the first observation is assimilated: start just before it
                self.shard.add(pid, profile_of(rows.get(pid)),
                               starts[pid] - timedelta(microseconds=1))  # fmt: skip

    def round(self, table: pa.Table) -> int:
        """Assimilate observations handed over (all patients at once); returns how many values
        were assimilated. :class:`TwinError` for a table the shard cannot take."""
        self._add_new(table)
        newest = table.group_by("patient_id").aggregate([("effective_time", "max")])
        pids = newest.column("patient_id").to_pylist()
        for pid, t in zip(pids, newest.column("effective_time_max").to_pylist(), strict=True):
            if pid not in self.newest or t > self.newest[pid]:
                self.newest[pid] = t
        t0 = time.perf_counter()
        with self._shard_lock:
            upd = self.shard.assimilate(table)
        self.observe("assimilate", time.perf_counter() - t0)
        for pid, when, code, reason in upd.artefacts:  # each decision, in the log
            fields = {"patient_id": pid, "time": when.isoformat(), "loinc": code, "reason": reason}
            log.info("artefact not assimilated", extra={"fields": fields})
        for pid, when, name in upd.followed:
            fields = {"patient_id": pid, "time": when.isoformat(), "observable": name}
            log.info("sustained deviation followed as a real change", extra={"fields": fields})
        now = time.monotonic()
        for pid in upd.patients:
            self.last_data[pid] = now
        if self.on_update is not None and upd.patients:
            self.on_update(list(zip(upd.patients, upd.times, strict=True)))
        moved = dict(zip(upd.patients, upd.times, strict=True))
        if self._forecaster is not None and self._forecaster.is_alive():
            with self._fc_cond:  # the forecaster's thread takes them
                for pid, t in moved.items():
                    self._moved[pid] = t
                self._fc_cond.notify_all()
        else:  # no forecaster running (a study driving rounds itself): here and now
            self._forecasts(moved)
        return upd.values

    def _forecast_loop(self) -> None:
        """The forecaster's thread: forecasts the patients the rounds moved, with the shard
        lock held only to copy their ensembles (JAX runs outside it, beside the next round)."""
        while not self._stop.is_set():
            with self._fc_cond:
                if not self._moved:
                    self._fc_cond.wait(0.5)
                moved, self._moved = self._moved, {}
            if not moved:
                continue
            t0 = time.perf_counter()
            try:
                left = self._forecasts(moved)
                self.errors.pop("forecast", None)
            except Exception as exc:  # said (the twins show degraded), never stops the thread
                self.errors["forecast"] = f"forecast failed: {type(exc).__name__}: {exc}"
                log.exception("twins: forecast failed")
                left = {}
            with self._fc_cond:  # not forecast this time: next, unless moved again since
                for pid, t in left.items():
                    self._moved.setdefault(pid, t)
            # rounds first: forecasts take at most `forecast_duty` of a core
            busy = time.perf_counter() - t0
            self._stop.wait(busy * (1.0 / self.forecast_duty - 1.0))

    def _forecasts(self, moved: dict[str, datetime]) -> dict[str, datetime]:
        """Forecast (batched) up to ``forecasts_per_round`` of the patients due, those longest
        without a forecast first, and hand each on; returns the patients due but left for the
        next call."""
        if self.on_forecast is None or not moved:
            return {}
        due = [
            (self.forecast_at.get(pid), pid)
            for pid, t in moved.items()
            if self._settled(pid, t)
            and (
                pid not in self.forecast_at
                or (t - self.forecast_at[pid]).total_seconds() >= self.forecast_every_s
            )
        ]
        due.sort(key=lambda x: (x[0] is not None, x[0] or datetime.min.replace(tzinfo=UTC)))
        pids = [pid for _, pid in due[: self.forecasts_per_round]]
        left = {pid: moved[pid] for _, pid in due[self.forecasts_per_round :]}
        if not pids:
            return left
        with self._shard_lock:
            job = self.shard.forecast_job(pids, self.forecast_hours)
            times = [self.shard.time(pid) for pid in pids]
        traj = job.run()
        q = traj.quantiles(measurement=True)  # (5, B, T, m)
        k = int(np.argmin(np.abs(traj.minutes - 60.0)))
        probs = traj.events.mean(axis=1)  # (B, E)
        spec = self.shard.spec
        for row, (pid, when) in enumerate(zip(pids, times, strict=True)):
            self.forecast_at[pid] = when
            band = {
                name: {"minute": float(traj.minutes[k]), "observable": name,
                       "unit": spec.observables[j].unit,
                       **{f"q{int(qq * 100):02d}": float(q[i, row, k, j])
                          for i, qq in enumerate(QUANTILES)}}
                for j, name in enumerate(spec.names)
            }  # fmt: skip
            events = {e.name: float(probs[row, i]) for i, e in enumerate(spec.events)}
            self.on_forecast(pid, when, events, self.shard.model_version, {"forecast_1h": band})
        return left

    def _settled(self, pid: str, t: datetime) -> bool:
        """Whether the patient's twin has tracked them for ``settle_s`` (twin time)."""
        with self._shard_lock:
            started = self.shard.start(pid)
        return (t - started).total_seconds() >= self.settle_s

    def checkpoint(self) -> None:
        """Save the shard in the store (in one transaction)."""
        with self._shard_lock:
            data = self.shard.to_bytes() if len(self.shard) else None
        if data is not None:
            with self.lock:
                self.store.save_state(self.checkpoint_key, data)
        self.saved_at = time.monotonic()

    def resume(self) -> int:
        """Load the checkpoint, if any, and assimilate what the store holds after it (its
        patients' data after their twins' times; patients first seen since it was written);
        returns how many values that assimilated."""
        with self.lock:
            saved = self.store.load_state(self.checkpoint_key)
        if saved is None:
            return 0
        shard = TwinShard.from_bytes(saved[0])
        with self._shard_lock:
            self.shard = shard
        log.info("twins resumed", extra={"fields": {"patients": len(shard),
                                                     "saved_at": str(shard.saved_at)}})  # fmt: skip
        if not len(shard):
            return 0
        now = time.monotonic()  # "no data for ..." counts from the restart
        self.last_data.update(dict.fromkeys(shard.ids, now))
        times = {pid: shard.time(pid) for pid in shard.ids}
        since = shard.saved_at - RESUME_MARGIN if shard.saved_at else min(times.values())
        with self.lock:
            known = self.store.observations(shard.ids, start=min(times.values()))
            recent = self.store.observations(received_since=since)
        kp, kt = known.column("patient_id").to_pylist(), known.column("effective_time").to_pylist()
        after = np.array([t > times[pid] for pid, t in zip(kp, kt, strict=True)], bool)
        new = pc.invert(pc.is_in(recent.column("patient_id"), pa.array(shard.ids)))
        table = pa.concat_tables([known.filter(pa.array(after, pa.bool_())), recent.filter(new)])
        return self.round(table) if table.num_rows else 0

    # -- what the API shows ---------------------------------------------------------------------

    def patient_hours(self) -> float:
        """Hours tracked by the twins, all patients together (the alert burden's exposure)."""
        with self._shard_lock:
            return self.shard.hours_tracked()

    def status(self, patient_id: str) -> dict[str, Any]:
        """Twin status: ``tracking``, ``degraded — monitor manually`` (behind or no data), or
        ``not started``; with the reason and the twin's counts."""
        if patient_id not in self.shard:
            return {"status": "not started", "reason": "no vitals received yet"}
        with self._shard_lock:
            summary = self.shard.summary(patient_id)
            twin_time = self.shard.time(patient_id)
        now = time.monotonic()
        lag_s = (self.newest.get(patient_id, twin_time) - twin_time).total_seconds()
        quiet_s = now - self.last_data.get(patient_id, now)
        waiting_s = now - self.waiting.get(patient_id, now)
        reasons = []
        if lag_s > self.max_lag_s:
            reasons.append(f"{lag_s:.1f} s behind its newest data")
        elif waiting_s > self.max_lag_s:
            reasons.append(f"new data waiting {waiting_s:.1f} s")
        if quiet_s > self.stale_after_s:
            reasons.append(f"no data for {quiet_s:.0f} s")
        for key in (patient_id, "*", "forecast"):
            if key in self.errors:
                reasons.append(self.errors[key])
        return {
            "status": DEGRADED if reasons else "tracking",
            "learning": not self._settled(patient_id, twin_time),  # no forecasts or alerts yet
            "reason": "; ".join(reasons) or None,
            "model_version": self.shard.model_version,
            **summary,
        }

    def twin(self, patient_id: str) -> PatientTwin:
        """A copy of the patient's twin (KeyError when there is none)."""
        if patient_id not in self.shard:
            raise KeyError(patient_id)
        with self._shard_lock:
            return self.shard.twin(patient_id)

    def estimates(self, patient_id: str) -> dict[str, Any]:
        """The twin's hidden physiology (posterior mean, SD, 90 % interval, unit) and its
        observables now (mean, SD)."""
        twin = self.twin(patient_id)
        params = twin.parameters().reset_index(names="parameter")
        now = twin.predicted().reset_index(names="observable")
        return {
            **self.status(patient_id),
            "parameters": params.to_dict(orient="records"),
            "observables": now.to_dict(orient="records"),
        }

    def forecast(self, patient_id: str, hours: float) -> dict[str, Any]:
        """Forecast bands (5, 25, 50, 75, 95 % over members, with measurement error) and event
        probabilities under the current treatment."""
        if patient_id not in self.shard:
            raise KeyError(patient_id)
        with self._shard_lock:
            traj = self.shard.forecast([patient_id], hours)
            when = self.shard.time(patient_id)
        bands = traj.bands(measurement=True)
        events = {e.name: float(traj.probability(e.name)[0]) for e in self.shard.spec.events}
        return {
            "patient_id": patient_id,
            "from": when.isoformat(),
            "hours": hours,
            "model_version": self.shard.model_version,
            "bands": bands.to_dict(orient="records"),
            "event_probabilities": events,
        }

    def whatif(
        self, patient_id: str, plans: list[dict[str, Any]] | None, hours: float
    ) -> dict[str, Any]:
        """Plans compared from the twin's current posterior (``plans`` given, in the model's
        plan type, that of its candidates), or the model's candidates ranked by the optimizer
        with its explanation (``plans`` None). ValueError names an invalid plan."""
        twin = self.twin(patient_id)
        spec = whatif_of(twin)
        if plans is None:
            table = optimize(twin, hours=hours)
        else:
            kind = type(spec.candidates()[0])
            try:
                chosen = [kind.model_validate(p) for p in plans]
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
            table, _ = compare(twin, chosen, hours)
        rows: list[dict[str, Any]] = [
            {str(k): v for k, v in r.items()}
            for r in table.replace({np.nan: None}).to_dict(orient="records")
        ]
        for r in rows:
            r["summary"] = spec.summary(r)
        return {
            "patient_id": patient_id,
            "from": twin.time.isoformat(),
            "hours": hours,
            "model_version": twin.model_version,
            "plans": rows,
            "decision_support": DECISION_SUPPORT,
        }
