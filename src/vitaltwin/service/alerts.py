"""Alerts that do not cause alert fatigue: one alert per episode, with hysteresis, a minimum
duration, re-alerts only on a stated rise, acknowledgement, snooze with a reason, escalation,
an indeterminate state when the model abstains, and a shadow mode; and the scorecard that
measures the burden from the alert log.

What deployed systems teach (the service issue): an alert that fires on every threshold crossing
is ignored; clinicians trust alerts that come once per deterioration, say how sure the model is
and abstain rather than guess. An :class:`AlertEngine` keeps, per patient and rule, one state:

* ``idle``: the signal is below ``on``;
* ``pending``: crossed ``on`` at a time and not fallen below ``off`` since, not yet
  ``min_duration_s`` long (it raises at a value at or above ``on`` once long enough);
* ``active``: an alert was raised for this episode; the episode ends (``resolved``) only when
  the signal has stayed below ``off`` (< ``on``: hysteresis) for ``resolve_after_s`` (an
  off-delay), so a signal hovering at the threshold, or dipping under ``off`` for a while,
  raises one alert, not many. While active, a new alert (``rise``) is raised only when the
  signal exceeds the episode's last alerted value by ``realert_rise``, and not while snoozed.

Thresholds with a deadband, an on-delay (``min_duration_s``) and an off-delay
(``resolve_after_s``) are the alarm-management techniques of ANSI/ISA-18.2 and IEC 62682 for
chattering alarms. **One alert per patient**: an episode is the patient's deterioration, not a
rule's. While a patient has an episode open under one rule, another rule that would raise its
first alert joins that alert instead (its name, time and score are added to the alert's
``details["also"]`` and logged as ``joined``): a falling pressure and a rising lactate of the
same patient are one page to the nurse, with two reasons. The patient's episode ends when every
rule's has ended.

An alert is ``new``, then ``acknowledged``, ``snoozed`` (1-12 h, with a reason) or
``escalated`` (unacknowledged after ``escalate_after_s``: to the next role of the rule's chain);
``indeterminate`` when the model said it is not confident (the value is outside what it was
validated on). In shadow mode alerts are logged with ``shadow=True`` and shown to no one (local
validation before go-live). Every alert keeps the score, the model version and the details the
caller gives (top contributing factors, forecast band, ranked what-if options), and says
"decision support only".
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

DECISION_SUPPORT = (
    "Decision support only: the clinician decides. Model output for a patient it may not fit."
)
State = Literal["new", "acknowledged", "snoozed", "escalated", "indeterminate", "resolved"]


@dataclass(frozen=True)
class AlertRule:
    """When a signal (a risk score, a forecast event probability) raises an alert."""

    name: str
    signal: str  # e.g. "sepsis_risk", "forecast:hypotension"
    on: float  # raise at or above (after min_duration_s)
    off: float  # the episode ends below (hysteresis: off < on)
    min_duration_s: float = 0.0
    realert_rise: float = 0.15  # a new alert within the episode only this much higher
    escalate_after_s: float = 30 * 60.0
    roles: tuple[str, ...] = ("nurse", "charge nurse", "clinician")
    resolve_after_s: float = 0.0  # the episode ends after this long below `off` (off-delay)

    def __post_init__(self) -> None:
        if not self.off < self.on:
            raise ValueError(f"rule {self.name}: off ({self.off}) must be below on ({self.on})")
        if (
            self.min_duration_s < 0
            or self.resolve_after_s < 0
            or self.realert_rise <= 0
            or self.escalate_after_s <= 0
        ):
            raise ValueError(f"rule {self.name}: durations and the rise must be positive")
        if not self.roles:
            raise ValueError(f"rule {self.name}: at least one role")


FORECAST_RULES = (
    AlertRule("hypotension ahead", "forecast:map_below_65_30min", on=0.2, off=0.1,
              min_duration_s=600, realert_rise=0.5, resolve_after_s=7200),
    AlertRule("desaturation ahead", "forecast:spo2_below_90", on=0.2, off=0.1,
              min_duration_s=600, realert_rise=0.5, resolve_after_s=7200),
    AlertRule("lactate rising", "forecast:lactate_above_4", on=0.2, off=0.1,
              min_duration_s=600, realert_rise=0.5, resolve_after_s=7200),
)  # fmt: skip
"""Default alert rules on the twins' six-hour forecast event probabilities (twin time): raise
at a 20 % chance held 10 min, end after 2 h below 10 %, re-alert on a rise of 0.5. Chosen on
the simulated ward of seed 7 and reported on seed 11 (:mod:`vitaltwin.validation.alert_study`,
docs "The live service"); the service runs them in shadow mode by default until validated
locally."""


@dataclass(frozen=True)
class Alert:
    id: str
    patient_id: str
    rule: str
    time: datetime
    score: float
    model_version: str
    state: State
    role: str
    kind: Literal["first", "rise"]
    shadow: bool
    details: dict[str, Any] = field(default_factory=dict)
    decision_support: str = DECISION_SUPPORT
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None
    snooze_reason: str | None = None
    overridden: bool | None = None  # the clinician's feedback: acted on it or not
    raised_at: datetime | None = None  # wall clock when raised (None: at `time`, data time)

    @property
    def shown_at(self) -> datetime:
        """When people were told (escalation and acknowledgement times count from here)."""
        return self.raised_at or self.time


@dataclass
class _Episode:
    phase: Literal["idle", "pending", "active"] = "idle"
    since: datetime | None = None
    last_score: float = 0.0  # the score of the episode's last alert
    alert_id: str | None = None
    below_since: datetime | None = None  # active, and below `off` since (the off-delay runs)


@dataclass(frozen=True)
class LogEntry:
    time: datetime
    action: str  # raised, joined, acknowledged, snoozed, escalated, resolved, feedback
    alert_id: str
    patient_id: str
    rule: str
    who: str | None = None
    detail: str | None = None


class AlertError(ValueError):
    """An action the alert does not allow (names the alert and why)."""


class AlertEngine:
    """The alert state of a ward (see the module docstring)."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        shadow: bool = False,
        one_per_patient: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        self.rules = {r.name: r for r in rules}
        self.shadow = shadow
        self.one_per_patient = one_per_patient  # False: each rule's episodes on their own
        # the wall clock (a live service): escalation and acknowledgement times run on it, not
        # on data times, which lag in a replay or for late data; None (a study): data time
        self.clock = clock
        self.alerts: dict[str, Alert] = {}
        self.log: list[LogEntry] = []
        self._episodes: dict[tuple[str, str], _Episode] = {}
        self._ids = itertools.count(1)

    def observe(
        self,
        patient_id: str,
        signal: str,
        value: float,
        time: datetime,
        *,
        model_version: str = "",
        confident: bool = True,
        details: dict[str, Any] | None = None,
    ) -> list[Alert]:
        """A new value of ``signal`` for a patient; returns the alerts it raised."""
        if time.tzinfo is None:
            raise ValueError("alert times must be timezone-aware (UTC)")
        raised: list[Alert] = []
        for rule in self.rules.values():
            if rule.signal != signal:
                continue
            ep = self._episodes.setdefault((patient_id, rule.name), _Episode())
            if ep.phase == "active":
                if value < rule.off:
                    ep.below_since = ep.below_since or time
                    if (time - ep.below_since).total_seconds() >= rule.resolve_after_s:
                        self._resolve(ep, rule, patient_id, time)
                    continue
                ep.below_since = None
                current = self.alerts[ep.alert_id] if ep.alert_id else None
                snoozed = (
                    current is not None
                    and current.snoozed_until is not None
                    and time < current.snoozed_until
                )
                if value >= ep.last_score + rule.realert_rise and not snoozed:
                    raised.append(
                        self._raise(ep, rule, patient_id, time, value, model_version,
                                    confident, details, "rise")
                    )  # fmt: skip
                continue
            if value < rule.off or (ep.phase == "idle" and value < rule.on):
                ep.phase, ep.since = "idle", None
                continue
            if ep.phase == "idle":
                ep.phase, ep.since = "pending", time
            if value < rule.on:  # pending holds down to `off` (hysteresis) but raises at `on`
                continue
            assert ep.since is not None
            if (time - ep.since).total_seconds() < rule.min_duration_s:
                continue
            open_id = self._open_alert(patient_id) if self.one_per_patient else None
            if open_id is None:
                raised.append(
                    self._raise(ep, rule, patient_id, time, value, model_version, confident,
                                details, "first")
                )  # fmt: skip
            else:  # the patient's episode is open: this rule is one more reason for it
                ep.phase, ep.last_score, ep.alert_id = "active", float(value), open_id
                a = self.alerts[open_id]
                also = [
                    *a.details.get("also", []),
                    {"rule": rule.name, "time": time.isoformat(), "score": float(value)},
                ]
                self.alerts[open_id] = replace(a, details={**a.details, "also": also})
                self.log.append(LogEntry(time, "joined", open_id, patient_id, rule.name,
                                         detail=f"{value:.3f}"))  # fmt: skip
        return raised

    def _open_alert(self, patient_id: str) -> str | None:
        """The latest alert of the patient's open episode (any rule active), or None."""
        eps = [self._episodes.get((patient_id, name)) for name in self.rules]
        ids = [e.alert_id for e in eps if e and e.phase == "active" and e.alert_id is not None]
        return max(ids, key=lambda i: self.alerts[i].time) if ids else None

    def _raise(
        self,
        ep: _Episode,
        rule: AlertRule,
        patient_id: str,
        time: datetime,
        value: float,
        model_version: str,
        confident: bool,
        details: dict[str, Any] | None,
        kind: Literal["first", "rise"],
    ) -> Alert:
        alert = Alert(
            id=f"A{next(self._ids)}",
            patient_id=patient_id,
            rule=rule.name,
            time=time,
            score=float(value),
            model_version=model_version,
            state="new" if confident else "indeterminate",
            role=rule.roles[0],
            kind=kind,
            shadow=self.shadow,
            details=dict(details or {}),
            raised_at=self.clock() if self.clock is not None else None,
        )
        self.alerts[alert.id] = alert
        ep.phase, ep.last_score, ep.alert_id = "active", float(value), alert.id
        self.log.append(LogEntry(time, "raised", alert.id, patient_id, rule.name,
                                 detail=f"{kind} {value:.3f}"))  # fmt: skip
        return alert

    def _resolve(self, ep: _Episode, rule: AlertRule, patient_id: str, time: datetime) -> None:
        self._episodes[(patient_id, rule.name)] = _Episode()
        if ep.alert_id is not None and (
            not self.one_per_patient or self._open_alert(patient_id) is None
        ):
            self.log.append(LogEntry(time, "resolved", ep.alert_id, patient_id, rule.name))

    def _get(self, alert_id: str) -> Alert:
        try:
            return self.alerts[alert_id]
        except KeyError:
            raise AlertError(f"no alert {alert_id!r}") from None

    def acknowledge(self, alert_id: str, who: str, time: datetime) -> Alert:
        """Acknowledge an alert (recorded with who and when)."""
        a = self._get(alert_id)
        if a.acknowledged_at is not None:
            raise AlertError(f"alert {alert_id} was acknowledged by {a.acknowledged_by}")
        state: State = "indeterminate" if a.state == "indeterminate" else "acknowledged"
        self.alerts[alert_id] = replace(a, state=state, acknowledged_by=who, acknowledged_at=time)
        self.log.append(LogEntry(time, "acknowledged", alert_id, a.patient_id, a.rule, who))
        return self.alerts[alert_id]

    def snooze(self, alert_id: str, who: str, hours: float, reason: str, time: datetime) -> Alert:
        """Snooze 1-12 h with a reason: no re-alert for this episode until then (it counts as
        acknowledged)."""
        if not 1 <= hours <= 12:
            raise AlertError(f"snooze for 1-12 h, not {hours}")
        if not reason.strip():
            raise AlertError("a snooze needs a reason")
        a = self._get(alert_id)
        until = time + timedelta(hours=hours)
        self.alerts[alert_id] = replace(
            a,
            state="snoozed",
            snoozed_until=until,
            snooze_reason=reason.strip(),
            acknowledged_by=a.acknowledged_by or who,
            acknowledged_at=a.acknowledged_at or time,
        )
        self.log.append(
            LogEntry(time, "snoozed", alert_id, a.patient_id, a.rule, who, f"{hours:g} h: {reason}")
        )
        return self.alerts[alert_id]

    def escalate(self, alert_id: str, who: str, time: datetime) -> Alert:
        """Escalate now to the next role of the rule's chain (recorded with who and when);
        AlertError when the alert is already with the last role."""
        a = self._get(alert_id)
        roles = self.rules[a.rule].roles
        i = roles.index(a.role) if a.role in roles else len(roles) - 1
        if i + 1 >= len(roles):
            raise AlertError(f"alert {alert_id} is already with the last role ({a.role})")
        state: State = "indeterminate" if a.state == "indeterminate" else "escalated"
        self.alerts[alert_id] = replace(a, role=roles[i + 1], state=state)
        self.log.append(LogEntry(time, "escalated", alert_id, a.patient_id, a.rule, who,
                                 f"to {roles[i + 1]}"))  # fmt: skip
        return self.alerts[alert_id]

    def feedback(self, alert_id: str, who: str, overridden: bool, time: datetime) -> Alert:
        """The clinician's verdict: acted on (False) or overridden (True)."""
        a = self._get(alert_id)
        self.alerts[alert_id] = replace(a, overridden=overridden)
        verdict = "overridden" if overridden else "accepted"
        self.log.append(LogEntry(time, "feedback", alert_id, a.patient_id, a.rule, who, verdict))
        return self.alerts[alert_id]

    def annotate(self, alert_id: str, **details: Any) -> Alert:
        """Add details to an alert (e.g. the ranked what-if options computed after it)."""
        a = self._get(alert_id)
        self.alerts[alert_id] = replace(a, details={**a.details, **details})
        return self.alerts[alert_id]

    def tick(self, time: datetime) -> list[Alert]:
        """Escalate alerts unacknowledged for longer than their rule allows, one role further
        each period; returns the alerts escalated now."""
        out = []
        for a in list(self.alerts.values()):
            if a.acknowledged_at is not None or a.state == "resolved":
                continue
            rule = self.rules[a.rule]
            level = int((time - a.shown_at).total_seconds() // rule.escalate_after_s)
            role = rule.roles[min(level, len(rule.roles) - 1)]
            if level >= 1 and role != a.role:
                state: State = "indeterminate" if a.state == "indeterminate" else "escalated"
                self.alerts[a.id] = replace(a, role=role, state=state)
                self.log.append(LogEntry(time, "escalated", a.id, a.patient_id, a.rule,
                                         detail=f"to {role}"))  # fmt: skip
                out.append(self.alerts[a.id])
        return out

    def to_json(self) -> bytes:
        """The engine's state — alerts, log, open episodes — as JSON (times ISO 8601), so that
        acknowledgements, snoozes and open episodes survive a restart (:meth:`restore`)."""

        def plain(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in d.items()}

        next_id = next(self._ids)
        self._ids = itertools.count(next_id)  # looking did not use it up
        doc = {
            "format": 1,
            "next_id": next_id,
            "alerts": [plain(a.__dict__) for a in self.alerts.values()],
            "log": [plain(e.__dict__) for e in self.log],
            "episodes": [{"patient_id": pid, "rule": rule, **plain(ep.__dict__)}
                         for (pid, rule), ep in self._episodes.items() if ep.phase != "idle"],
        }  # fmt: skip
        return json.dumps(doc).encode()

    def restore(self, data: bytes) -> int:
        """Take over the state :meth:`to_json` saved (alerts of rules this engine no longer has
        are kept, but their episodes are not resumed); returns how many alerts. ValueError for
        something else."""
        try:
            doc = json.loads(data)
            if doc.get("format") != 1:
                raise ValueError(f"alert state format {doc.get('format')!r}, not 1")

            def times(d: dict[str, Any], *keys: str) -> dict[str, Any]:
                return {k: datetime.fromisoformat(v) if k in keys and v else v
                        for k, v in d.items()}  # fmt: skip

            stamps = ("time", "acknowledged_at", "snoozed_until", "raised_at")
            alerts = {a["id"]: Alert(**times(a, *stamps)) for a in doc["alerts"]}
            log = [LogEntry(**times(e, "time")) for e in doc["log"]]
            episodes = {
                (e.pop("patient_id"), e.pop("rule")): _Episode(**times(e, "since", "below_since"))
                for e in doc["episodes"]
            }
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a saved alert state ({exc})") from None
        self.alerts, self.log = alerts, log
        self._episodes = {k: v for k, v in episodes.items() if k[1] in self.rules}
        self._ids = itertools.count(int(doc["next_id"]))
        return len(alerts)

    def visible(self) -> list[Alert]:
        """Alerts clinicians see (none in shadow mode)."""
        return [a for a in self.alerts.values() if not a.shadow]


@dataclass(frozen=True)
class Scorecard:
    """The alert burden, from the log (see :func:`scorecard`)."""

    alerts: int
    patient_hours: float
    alerts_per_patient_hour: float
    alerts_per_clinician_shift: float
    ppv: float  # alerts followed by the rule's event within the horizon / alerts
    events: int
    recall_2h: float  # events alerted at least 2 h before their onset / events
    median_lead_h: float
    median_ack_min: float
    overridden_share: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def scorecard(
    engine: AlertEngine,
    patient_hours: float,
    onsets: dict[str, datetime] | None,
    horizon_h: float = 12.0,
    patients_per_clinician: float = 2.0,
    shift_h: float = 12.0,
) -> Scorecard:
    """The burden of ``engine``'s alerts (first alerts of each episode and re-alerts on a rise)
    against event onsets (patient -> onset; patients without an event are absent; None: no
    outcomes known, as in a live service, so PPV, recall and lead are NaN): alerts per
    patient-hour and per clinician per shift (``patients_per_clinician`` at the bedside), PPV
    (an alert is right when its patient's event follows within ``horizon_h``, or was under way
    at most 2 h), recall of events alerted at least 2 h ahead, median lead, median time to
    acknowledgement, share overridden."""
    alerts = list(engine.alerts.values())
    n = len(alerts)
    known = onsets is not None
    onsets = onsets or {}
    per_ph = n / patient_hours if patient_hours > 0 else float("nan")
    right = 0
    for a in alerts:
        onset = onsets.get(a.patient_id)
        if onset is not None and -2.0 <= (onset - a.time).total_seconds() / 3600 <= horizon_h:
            right += 1
    leads = []
    early = 0
    for pid, onset in onsets.items():
        before = [(onset - a.time).total_seconds() / 3600 for a in alerts if a.patient_id == pid]
        ahead = [h for h in before if 0 <= h <= horizon_h]
        if ahead:
            leads.append(max(ahead))
            early += max(ahead) >= 2.0
    acks = [
        (a.acknowledged_at - a.shown_at).total_seconds() / 60
        for a in alerts
        if a.acknowledged_at is not None
    ]
    judged = [a.overridden for a in alerts if a.overridden is not None]
    return Scorecard(
        alerts=n,
        patient_hours=patient_hours,
        alerts_per_patient_hour=per_ph,
        alerts_per_clinician_shift=per_ph * patients_per_clinician * shift_h,
        ppv=right / n if n and known else float("nan"),
        events=len(onsets),
        recall_2h=early / len(onsets) if onsets else float("nan"),
        median_lead_h=float(np.median(leads)) if leads else float("nan"),
        median_ack_min=float(np.median(acks)) if acks else float("nan"),
        overridden_share=sum(judged) / len(judged) if judged else float("nan"),
    )
