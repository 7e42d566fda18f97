"""The alert burden on a simulated ward: the service's own twins and alert engine, in simulated
time, on virtual patients whose deteriorations are known.

* **Patients**: a :class:`vitaltwin.simulate.ward_course.VirtualWard` — from the population
  model, simulated minute by minute with the ward model; some develop sepsis, some bleed (an
  input the twins do not see), the rest stay stable, at hidden hours.
* **Measured** as an ICU monitors (:func:`vitaltwin.simulate.ward_course.measure`): HR, blood
  pressures, SpO2 and respiratory rate every minute with each observable's measurement error
  and monitor artefacts, temperature hourly, lactate, WBC and haemoglobin every six hours.
* **Streamed** minute by minute through :class:`vitaltwin.service.twins.TwinSupervisor` (the
  batched shard, forecasts every five minutes of twin time) into
  :class:`vitaltwin.service.alerts.AlertEngine` with the service's default
  :data:`~vitaltwin.service.alerts.FORECAST_RULES` — the code the service runs, not a copy.
* **Events** are the deteriorations the rules forecast, read off the *true* trajectories with
  the same definitions as the model's declared events (MAP < 65 mmHg held 30 min, SpO2 < 90 %,
  lactate > 4 mmol/L); a patient's event onset is the start of the first. The scorecard
  (:func:`vitaltwin.service.alerts.scorecard`) is computed from the engine's log: no clinician
  acts in the simulation, so times to acknowledgement and overrides are not measured here.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vitaltwin.data import Record
from vitaltwin.physiology import WARD_TWIN
from vitaltwin.progress import SILENT, Progress
from vitaltwin.risk import ForecastMonitor
from vitaltwin.service.alerts import FORECAST_RULES, AlertEngine, AlertRule, Scorecard, scorecard
from vitaltwin.service.twins import TwinSupervisor
from vitaltwin.simulate.ward_course import LABS, MONITOR, VirtualWard, WardCourse, measure
from vitaltwin.store import DuckDBStore, Store

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


def with_thresholds(
    on: float | None = None, off: float | None = None, realert_rise: float | None = None
) -> tuple[AlertRule, ...]:
    """The service's default rules with other thresholds (None: the rule's own), to study them;
    ValueError names an impossible combination."""
    return tuple(
        replace(
            r,
            on=r.on if on is None else on,
            off=r.off if off is None else off,
            realert_rise=r.realert_rise if realert_rise is None else realert_rise,
        )
        for r in FORECAST_RULES
    )


@dataclass(frozen=True)
class AlertStudyConfig:
    n_patients: int = 48
    hours: int = 24
    seed: int = 11
    course: WardCourse = field(default_factory=WardCourse)  # who deteriorates, how and when
    artefact_rate: float = 0.002  # per monitor value
    n_members: int = 32
    horizon_h: float = 12.0
    forecast_hours: float = 6.0  # the horizon of the forecasts the rules read (the service's)
    rules: tuple[AlertRule, ...] = FORECAST_RULES  # the service's defaults unless studying others


@dataclass
class AlertStudyResult:
    config: AlertStudyConfig
    scorecard: Scorecard
    patients: pd.DataFrame  # per patient: kind, insult, event onset, first alert, lead (h)
    alerts: pd.DataFrame  # every alert: patient, rule, time, score
    per_rule: dict[str, int] = field(default_factory=dict)
    other: dict[str, Scorecard] = field(default_factory=dict)  # against other events
    monitoring: dict[str, Any] | None = None  # the service's ForecastMonitor report, as JSON
    monitoring_pooled: dict[str, dict[str, float]] | None = None  # ... pooled over windows

    def figures(self) -> dict[str, Any]:
        p = self.patients
        config = self.config.__dict__
        return {
            "config": {
                k: [str(x) for x in v]
                if k == "rules"
                else asdict(v)
                if k == "course"
                else list(v)
                if isinstance(v, tuple)
                else v
                for k, v in config.items()
            },
            "scorecard": self.scorecard.as_dict(),
            **{f"scorecard_{k}": v.as_dict() for k, v in self.other.items()},
            "alerts_per_rule": self.per_rule,
            "patients_by_kind": p["kind"].value_counts().to_dict(),
            "events_by_kind": p[p["event_onset"].notna()]["kind"].value_counts().to_dict(),
            "alerted_patients_without_event": int(
                (p["first_alert"].notna() & p["event_onset"].isna()).sum()
            ),
            "recall_2h_by_kind": self.recall_by_kind(),
            "monitoring": self.monitoring,
            "monitoring_pooled": self.monitoring_pooled,
        }

    def recall_by_kind(self) -> dict[str, float]:
        """Events alerted 2 h to ``horizon_h`` ahead (the scorecard's rule), per patient kind."""
        out: dict[str, float] = {}
        events = self.patients[self.patients["event_onset"].notna()]
        for kind, rows in events.groupby("kind"):
            early = 0
            for r in rows.itertuples():
                lead_h = [
                    (r.event_onset - t).total_seconds() / 3600
                    for t in self.alerts.loc[self.alerts["patient_id"] == r.patient_id, "time"]
                ]
                early += any(2.0 <= h <= self.config.horizon_h for h in lead_h)
            out[str(kind)] = early / len(rows)
        return out


def _truth(cfg: AlertStudyConfig) -> tuple[np.ndarray, VirtualWard]:
    """Observables every minute ``(B, hours * 60, m)`` (minute k ends at k + 1 min) and the
    ward (who deteriorates, how and when)."""
    ward = VirtualWard(cfg.n_patients, cfg.seed, cfg.course)
    return np.concatenate([ward.next_hour() for _ in range(cfg.hours)], axis=1), ward


def event_onsets(truth: np.ndarray) -> np.ndarray:
    """Minute (float; NaN: none) at which each patient's first declared event starts on the
    true trajectory: the start of the first run of the event's condition lasting its
    ``sustained_min``."""
    b, n_min, _ = truth.shape
    first = np.full(b, np.inf)
    for e in WARD_TWIN.events:
        v = truth[:, :, WARD_TWIN.index(e.observable)]
        cond = v < e.threshold if e.below else v > e.threshold
        need = max(1, round(e.sustained_min))
        for i in range(b):
            run = 0
            for k in range(n_min):
                run = run + 1 if cond[i, k] else 0
                if run >= need:
                    first[i] = min(first[i], k - need + 1)
                    break
    return np.where(np.isfinite(first), first, np.nan)


def _measurements(
    cfg: AlertStudyConfig, truth: np.ndarray, rng: np.random.Generator
) -> list[pd.DataFrame]:
    """Per minute, the values measured (patient_id, effective_time, loinc, value)."""
    b, n_min, _ = truth.shape
    spec = WARD_TWIN
    y = measure(truth, rng, cfg.artefact_rate)
    idx = {n: spec.index(n) for n in spec.names}
    pids = np.array([f"sim-{i:03d}" for i in range(b)])
    frames = []
    for k in range(n_min):
        names = list(MONITOR)
        if (k + 1) % 60 == 0:
            names.append("Temp")
        if (k + 1 - 30) % 360 == 0:
            names.extend(LABS)
        cols = [idx[n] for n in names]
        t = T0 + timedelta(minutes=k + 1)
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": np.repeat(pids, len(cols)),
                    "effective_time": t,
                    "loinc": np.tile([spec.observables[j].loinc[0] for j in cols], b),
                    "value": y[:, k, cols].ravel(),
                }
            )
        )
    return frames


def run_alert_study(
    cfg: AlertStudyConfig = AlertStudyConfig(), progress: Progress = SILENT
) -> AlertStudyResult:
    """Simulate the ward, stream it through the service's twins and alerts, score the log."""
    rng = np.random.default_rng(cfg.seed)
    truth, ward = _truth(cfg)
    kind, onset_h, bleed_ml_min = ward.kind, ward.onset_h, ward.bleed_ml_min
    event_min = event_onsets(truth)
    frames = _measurements(cfg, truth, rng)
    engine = AlertEngine(cfg.rules, shadow=False)
    # the models' monitoring the service runs, over the same stream: the forecasts against
    # the events in the measured (noisy, artefacted) values
    monitor = ForecastMonitor(WARD_TWIN, horizon_h=cfg.forecast_hours)
    with tempfile.TemporaryDirectory() as d, DuckDBStore(Path(d) / "store") as store:
        tables = (pa.Table.from_pandas(f, preserve_index=False) for f in frames)
        _through_the_service(store, tables, len(frames), engine, cfg.n_patients, cfg.n_members,
                             cfg.forecast_hours, "simulated ward through the service",
                             progress, monitor)  # fmt: skip
    pids = [f"sim-{i:03d}" for i in range(cfg.n_patients)]
    onsets = {
        pid: T0 + timedelta(minutes=float(m)) for pid, m in zip(pids, event_min, strict=True)
        if np.isfinite(m)
    }  # fmt: skip
    card = scorecard(engine, cfg.n_patients * cfg.hours, onsets, horizon_h=cfg.horizon_h)
    alerts = _alert_table(engine)
    first = alerts.groupby("patient_id")["time"].min() if len(alerts) else pd.Series(dtype=object)
    rows = []
    for i, pid in enumerate(pids):
        ev = onsets.get(pid)
        fa = first.get(pid)
        rows.append(
            {
                "patient_id": pid,
                "kind": kind[i],
                "insult": T0 + timedelta(hours=int(onset_h[i])) if kind[i] != "stable" else None,
                "bleed_ml_min": float(bleed_ml_min[i]) if kind[i] == "bleeding" else None,
                "event_onset": ev,
                "first_alert": fa,
                "lead_h": (ev - fa).total_seconds() / 3600 if ev is not None and fa is not None
                else None,
            }
        )  # fmt: skip
    per_rule = {str(k): int(v) for k, v in alerts["rule"].value_counts().items()}
    return AlertStudyResult(cfg, card, pd.DataFrame(rows), alerts, per_rule,
                            monitoring=monitor.report().to_dict(),
                            monitoring_pooled=monitor.pooled())  # fmt: skip


def _through_the_service(
    store: Store,
    tables: Iterable[pa.Table],
    steps: int,
    engine: AlertEngine,
    patients: int,
    n_members: int,
    forecast_hours: float,
    label: str,
    progress: Progress,
    monitor: ForecastMonitor | None = None,
) -> None:
    """Stream ``tables`` (one per round) through the service's twins, every forecast's event
    probabilities into ``engine`` (and the forecasts and the tables into ``monitor``)."""

    def on_forecast(
        pid: str, when: datetime, probs: dict[str, float], version: str, details: dict[str, Any]
    ) -> None:
        if monitor is not None:  # as the service does: events and the one-hour bands
            monitor.forecast(pid, when, probs, band=details.get("forecast_1h"))
        for event, p in probs.items():
            engine.observe(pid, f"forecast:{event}", p, when, model_version=version,
                           details=details)  # fmt: skip

    sup = TwinSupervisor(store, threading.Lock(), n_members=n_members,
                         forecasts_per_round=patients, expected_beds=patients,
                         forecast_hours=forecast_hours, on_forecast=on_forecast)  # fmt: skip
    sup.warm_up()
    task = progress.start(label, steps)
    try:
        for table in tables:
            sup.round(table)
            if monitor is not None:
                monitor.observed(table)
            task.advance()
    finally:
        task.close()


def _alert_table(engine: AlertEngine) -> pd.DataFrame:
    """Every alert the engine raised: patient, rule, time, score."""
    return pd.DataFrame(
        [{"patient_id": a.patient_id, "rule": a.rule, "time": a.time, "score": a.score}
         for a in engine.alerts.values()],
        columns=["patient_id", "rule", "time", "score"],
    )  # fmt: skip


@dataclass(frozen=True)
class SetAAlertConfig:
    n_patients: int = 500  # a random sample of the stays of at least min_hours
    min_hours: int = 24
    max_hours: int = 72  # the first hours of each stay
    seed: int = 2019
    n_members: int = 32
    horizon_h: float = 12.0
    forecast_hours: float = 6.0
    rules: tuple[AlertRule, ...] = FORECAST_RULES


def observed_onsets(obs: pd.DataFrame) -> dict[str, datetime]:
    """Per patient, the first charted value meeting one of the model's declared events (MAP <
    65 mmHg, SpO2 < 90 %, lactate > 4 mmol/L): on hourly charts one value stands for its hour,
    so it counts as sustained."""
    first: dict[str, datetime] = {}
    for e in WARD_TWIN.events:
        codes = WARD_TWIN.observables[WARD_TWIN.index(e.observable)].loinc
        rows = obs[obs["loinc"].isin(codes)]
        hit = rows[rows["value"] < e.threshold] if e.below else rows[rows["value"] > e.threshold]
        for pid, t in hit.groupby("patient_id")["effective_time"].min().items():
            when = pd.Timestamp(t).to_pydatetime()
            first[str(pid)] = min(first.get(str(pid), when), when)
    return first


def run_set_a_alerts(
    path: Path, cfg: SetAAlertConfig = SetAAlertConfig(), progress: Progress = SILENT
) -> AlertStudyResult:
    """PhysioNet 2019 set A streamed through the service's twins and alert rules hour by hour
    (all sampled stays side by side, one round per ICU hour). The scorecard is against the
    events the rules forecast, as charted (:func:`observed_onsets`); ``other["sepsis"]``
    against the challenge's sepsis onsets (``t_sepsis``: six hours after the first positive
    ``SepsisLabel``), which the risk report measures."""
    from vitaltwin.interop import read_any

    rec = read_any(path)
    obs = rec.observations.to_pandas()
    t = pd.to_datetime(obs["effective_time"], utc=True)
    first, last = t.groupby(obs["patient_id"]).agg(["min", "max"]).T.to_numpy()
    stays = pd.DataFrame({"start": first, "end": last},
                         index=sorted(obs["patient_id"].unique()))  # fmt: skip
    long = stays[(stays["end"] - stays["start"]) >= pd.Timedelta(hours=cfg.min_hours - 1)]
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(rng.choice(long.index.to_numpy(), min(cfg.n_patients, len(long)), replace=False))
    obs = obs[obs["patient_id"].isin(pick)].assign(effective_time=t)
    hour = ((obs["effective_time"] - obs["patient_id"].map(stays["start"])).dt.total_seconds()
            // 3600).astype(int)  # fmt: skip
    obs = obs[hour < cfg.max_hours]
    hour = hour[hour < cfg.max_hours]
    labels = rec.labels.to_pandas()
    positive = labels[(labels["value"] == 1) & labels["patient_id"].isin(pick)]
    onsets = {
        str(pid): pd.Timestamp(tt).to_pydatetime() + timedelta(hours=6)
        for pid, tt in positive.groupby("patient_id")["time"].min().items()
    }
    observed = observed_onsets(obs)
    engine = AlertEngine(cfg.rules, shadow=False)
    columns = ["patient_id", "effective_time", "loinc", "value", "method", "status", "comparator"]
    obs = obs[[c for c in columns if c in obs.columns]]
    hours = sorted(hour.unique())
    with tempfile.TemporaryDirectory() as d, DuckDBStore(Path(d) / "store") as store:
        chosen = pc.is_in(rec.patients["patient_id"], pa.array(pick))
        store.ingest_record(  # demographics, for the twins' priors
            Record(rec.observations.schema.empty_table(), rec.quarantine.schema.empty_table(),
                   rec.patients.filter(chosen), rec.labels.schema.empty_table(), 0)
        )  # fmt: skip
        tables = (pa.Table.from_pandas(obs[hour == h], preserve_index=False) for h in hours)
        _through_the_service(store, tables, len(hours), engine, len(pick), cfg.n_members,
                             cfg.forecast_hours, "set A through the service, hour by hour",
                             progress)  # fmt: skip
    hours_total = float(
        np.minimum((long.loc[pick, "end"] - long.loc[pick, "start"]).dt.total_seconds() / 3600
                   + 1, cfg.max_hours).sum()
    )  # fmt: skip
    ends = {pid: start + pd.Timedelta(hours=cfg.max_hours) for pid, start in stays["start"].items()}
    onsets = {pid: o for pid, o in onsets.items() if o < ends[pid]}
    card = scorecard(engine, hours_total, observed, horizon_h=cfg.horizon_h)
    sepsis = scorecard(engine, hours_total, onsets, horizon_h=cfg.horizon_h)
    alerts = _alert_table(engine)
    first_alert = {str(k): v for k, v in alerts.groupby("patient_id")["time"].min().items()}
    rows = [
        {"patient_id": pid, "kind": "sepsis" if pid in onsets else "no sepsis",
         "insult": onsets.get(pid), "bleed_ml_min": None, "event_onset": observed.get(pid),
         "first_alert": first_alert.get(pid), "lead_h": None}
        for pid in pick
    ]  # fmt: skip
    per_rule = {str(k): int(v) for k, v in alerts["rule"].value_counts().items()}
    return AlertStudyResult(AlertStudyConfig(n_patients=len(pick), hours=cfg.max_hours,
                                             seed=cfg.seed, n_members=cfg.n_members,
                                             horizon_h=cfg.horizon_h,
                                             forecast_hours=cfg.forecast_hours,
                                             rules=cfg.rules),
                            card, pd.DataFrame(rows), alerts, per_rule,
                            {"sepsis": sepsis})  # fmt: skip
