"""Live twins in the service: every patient with new vitals gets a :class:`PatientTwin` that
assimilates what the store holds, in time order, exactly once; twins are checkpointed and a
restarted service resumes each from its checkpoint.

* **Start**: a patient's twin starts at their first stored observation, from their demographics
  (age and sex where the record has them) with the vital-sign discrepancy of a real patient
  (:data:`vitaltwin.physiology.ward_twin.VITAL_SIGN_DISCREPANCY`).
* **Exactly once**: a twin assimilates only observations after its own time; after a restart it
  resumes from its checkpoint (members, random state, time) and reads the store from there, so
  what it had assimilated after the checkpoint is assimilated again from the same state and
  nothing twice. Observations that arrive later than the twin has moved on are counted as late
  (not assimilated).
* **Checkpoints** (``PatientTwin.save``, owner-only files under ``checkpoint_dir``) every
  ``checkpoint_s`` and on :meth:`TwinSupervisor.stop`.
* **Compiled at start-up**: :meth:`TwinSupervisor.warm_up` runs one assimilation and one
  forecast of a throwaway twin, so no patient waits for JAX to compile (readiness waits for it).
* **Never silently stale**: :meth:`TwinSupervisor.status` says ``degraded — monitor manually``
  when the twin is behind the newest stored observation by more than ``max_lag_s``, when new
  data has waited longer than that for the twin, or when no data has arrived for
  ``stale_after_s``.

The twin here is the per-patient one; the batched 1 Hz cycle over a shard
(:func:`vitaltwin.twin.cycle`) is the next step for large wards.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from vitaltwin.physiology import PatientProfile
from vitaltwin.physiology.ward_twin import VITAL_SIGN_DISCREPANCY
from vitaltwin.service._patients import PatientWorker
from vitaltwin.service.alerts import DECISION_SUPPORT
from vitaltwin.store import Store
from vitaltwin.twin import PatientTwin, TwinError, compare, optimize, whatif_of

log = logging.getLogger("vitaltwin.service")
DEGRADED = "degraded — monitor manually"


@dataclass
class _Live:
    twin: PatientTwin
    last_data: float  # time.monotonic() of the last new data
    newest: datetime  # newest stored observation seen
    saved_at: float
    polled_at: datetime  # when the store was last read for this patient (UTC)
    assimilated: int = 0
    late: int = 0  # received after the twin had moved past their time: not assimilated
    forecast_at: datetime | None = None  # twin time of the last forecast handed on


def _safe(patient_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else f"~{ord(c):x}" for c in patient_id)


class TwinSupervisor(PatientWorker):
    """Keeps a twin per patient up to date with the store (see the module docstring)."""

    name = "twins"

    def __init__(
        self,
        store: Store,
        lock: threading.Lock,
        checkpoint_dir: Path,
        n_members: int = 32,
        checkpoint_s: float = 60.0,
        max_lag_s: float = 0.5,
        stale_after_s: float = 120.0,
        forecast_every_s: float = 300.0,
        on_forecast: Callable[[str, datetime, dict[str, float], str, dict[str, Any]], None]
        | None = None,
        observe: Callable[[str, float], None] | None = None,
        on_update: Callable[[str, datetime], None] | None = None,
    ) -> None:
        super().__init__()
        self.store, self.lock = store, lock
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.n_members = n_members
        self.checkpoint_s, self.max_lag_s, self.stale_after_s = (
            checkpoint_s,
            max_lag_s,
            stale_after_s,
        )
        self.forecast_every_s, self.on_forecast = forecast_every_s, on_forecast
        self.observe = observe or (lambda stage, seconds: None)
        self.on_update = on_update
        self.twins: dict[str, _Live] = {}
        self.ready = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def warm_up(self) -> float:
        """Compile the twin's assimilation, forecast, a two-plan what-if and the ranking of the
        model's candidates (seconds it took)."""
        t0 = time.perf_counter()
        start = datetime(2000, 1, 1, tzinfo=UTC)
        twin = PatientTwin("warm-up", PatientProfile(), start, n_members=self.n_members,
                           discrepancy=VITAL_SIGN_DISCREPANCY)  # fmt: skip
        rows = pd.DataFrame(
            {
                "effective_time": [start + timedelta(seconds=s) for s in (0.5, 1.5)],
                "loinc": ["8867-4", "8867-4"],
                "value": [80.0, 81.0],
            }
        )
        twin.assimilate(rows)
        twin.forecast(1.0)
        spec = twin.spec.whatif
        if spec is not None:  # a plan against no change (CDS order-select), and the ranking
            compare(twin, spec.candidates()[:2], 6.0)
            optimize(twin, hours=6.0)
        self.ready.set()
        return time.perf_counter() - t0

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop and checkpoint every twin."""
        super().stop(timeout_s)
        for pid in list(self.twins):
            self.checkpoint(pid)

    def before(self) -> None:
        if not self.ready.is_set():
            self.warm_up()

    def after_round(self) -> None:
        now = time.monotonic()
        for pid, live in list(self.twins.items()):
            if now - live.saved_at > self.checkpoint_s:
                self.checkpoint(pid)

    # -- one patient ----------------------------------------------------------------------------

    def _path(self, patient_id: str) -> Path:
        return self.checkpoint_dir / _safe(patient_id)

    def checkpoint(self, patient_id: str) -> None:
        """Save a twin atomically (a whole checkpoint or the previous one)."""
        live = self.twins[patient_id]
        final = self._path(patient_id)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        live.twin.save(tmp)
        for f in tmp.iterdir():
            f.chmod(0o600)
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        live.saved_at = time.monotonic()

    def _open(self, patient_id: str, first: datetime | None) -> _Live:
        """The patient's twin from its checkpoint (``first`` None), else a new one starting at
        ``first``."""
        path = self._path(patient_id)
        if first is None:
            twin = PatientTwin.load(path)
            log.info("twin resumed", extra={"fields": {"patient_id": patient_id,
                                                       "time": twin.time.isoformat()}})  # fmt: skip
        else:
            with self.lock:
                pat = self.store.patients(patient_id).to_pylist()
            profile = PatientProfile()
            if pat:
                age = pat[0].get("age_years")
                sex = pat[0].get("sex")
                profile = PatientProfile(
                    age_years=float(np.clip(age, 18, 100)) if age is not None else 40.0,
                    sex=sex if sex in ("male", "female") else "male",
                )
            twin = PatientTwin(patient_id, profile, first, n_members=self.n_members,
                               discrepancy=VITAL_SIGN_DISCREPANCY)  # fmt: skip
        return _Live(twin, time.monotonic(), twin.time, time.monotonic(), datetime.now(UTC))

    def update(self, patient_id: str) -> int:
        """Assimilate what the store holds for the patient after the twin's time; returns how
        many observations were assimilated."""
        live = self.twins.get(patient_id)
        if live is None and (self._path(patient_id) / "twin.json").exists():
            live = self.twins[patient_id] = self._open(patient_id, None)  # resumed
        since = live.twin.time if live else None
        polled = datetime.now(UTC)
        with self.lock:
            obs = self.store.observations(patient_id, start=since).to_pandas()
            if live is not None and since is not None:  # arrived since, timed before: late
                late = self.store.observations(patient_id, end=since, received_since=live.polled_at)
                live.late += late.num_rows
        if live is not None:
            live.polled_at = polled
        if obs.empty:
            return 0
        t = pd.to_datetime(obs["effective_time"], utc=True)
        if live is None:  # a new twin starts at the first observation and takes it
            live = self.twins[patient_id] = self._open(patient_id, t.min().to_pydatetime())
            newer = pd.Series(True, index=t.index)
        else:  # only what is after the twin's time (the store's bound is inclusive)
            newer = t > pd.Timestamp(live.twin.time)
        obs = obs[newer.to_numpy()]
        live.newest = max(live.newest, t.max().to_pydatetime())
        if obs.empty:
            return 0
        t0 = time.perf_counter()
        try:
            live.twin.assimilate(obs)
            self.observe("assimilate", time.perf_counter() - t0)
        except TwinError as exc:
            self.errors[patient_id] = str(exc)
            return 0
        live.assimilated += len(obs)
        live.last_data = time.monotonic()
        if self.on_update is not None:
            self.on_update(patient_id, live.twin.time)
        due = live.forecast_at is None or (
            (live.twin.time - live.forecast_at).total_seconds() >= self.forecast_every_s
        )
        if self.on_forecast is not None and due:
            fc = self.forecast(patient_id, 1.0)
            live.forecast_at = live.twin.time
            band = {b["observable"]: b for b in fc["bands"] if b["minute"] == 60}
            self.on_forecast(patient_id, live.twin.time, fc["event_probabilities"],
                             live.twin.model_version, {"forecast_1h": band})  # fmt: skip
        return len(obs)

    # -- what the API shows ---------------------------------------------------------------------

    def status(self, patient_id: str) -> dict[str, Any]:
        """Twin status: ``tracking``, ``degraded — monitor manually`` (behind or no data), or
        ``not started``; with the reason."""
        live = self.twins.get(patient_id)
        if live is None:
            return {"status": "not started", "reason": "no vitals received yet"}
        lag_s = (live.newest - live.twin.time).total_seconds()
        quiet_s = time.monotonic() - live.last_data
        reasons = []
        waiting_s = time.monotonic() - self.waiting.get(patient_id, time.monotonic())
        if lag_s > self.max_lag_s:
            reasons.append(f"{lag_s:.1f} s behind its newest data")
        elif waiting_s > self.max_lag_s:
            reasons.append(f"new data waiting {waiting_s:.1f} s")
        if quiet_s > self.stale_after_s:
            reasons.append(f"no data for {quiet_s:.0f} s")
        if patient_id in self.errors:
            reasons.append(self.errors[patient_id])
        return {
            "status": DEGRADED if reasons else "tracking",
            "reason": "; ".join(reasons) or None,
            "time": live.twin.time.isoformat(),
            "model_version": live.twin.model_version,
            "assimilated": live.assimilated,
            "late": live.late,
        }

    def estimates(self, patient_id: str) -> dict[str, Any]:
        """The twin's hidden physiology (posterior mean, SD, 90 % interval, unit) and its
        observables now (mean, SD)."""
        twin = self.twins[patient_id].twin
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
        twin = self.twins[patient_id].twin
        traj = twin.forecast(hours)
        bands = traj.bands(measurement=True)
        events = {e.name: float(traj.probability(e.name)[0]) for e in twin.spec.events}
        return {
            "patient_id": patient_id,
            "from": twin.time.isoformat(),
            "hours": hours,
            "model_version": twin.model_version,
            "bands": bands.to_dict(orient="records"),
            "event_probabilities": events,
        }

    def whatif(
        self, patient_id: str, plans: list[dict[str, Any]] | None, hours: float
    ) -> dict[str, Any]:
        """Plans compared from the twin's current posterior (``plans`` given, in the model's
        plan type, that of its candidates), or the model's candidates ranked by the optimizer
        with its explanation (``plans`` None). ValueError names an invalid plan."""
        twin = self.twins[patient_id].twin
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
