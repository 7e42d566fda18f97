"""Alerts without fatigue: one alert per episode (hysteresis, minimum duration), re-alert only on
the stated rise and not while snoozed, acknowledgement, snooze rules, escalation through the
roles, indeterminate when the model abstains, shadow mode; and the scorecard's figures on a
hand-checked log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vitaltwin.service.alerts import Alert, AlertEngine, AlertError, AlertRule, scorecard

T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)
RULE = AlertRule("sepsis", "risk", on=0.6, off=0.4, min_duration_s=600, realert_rise=0.2,
                 escalate_after_s=1800)  # fmt: skip


def feed(
    engine: AlertEngine, values: list[float], pid: str = "p1", step_min: int = 5
) -> list[Alert]:
    out = []
    for i, v in enumerate(values):
        out += engine.observe(pid, "risk", v, T0 + timedelta(minutes=step_min * i),
                              model_version="m1", details={"top": ["lactate"]})  # fmt: skip
    return out


def test_one_alert_per_episode_with_hysteresis_and_minimum_duration() -> None:
    e = AlertEngine([RULE])
    # 0.65 for 5 min, then below `off`: too short; then it hovers around the threshold
    raised = feed(e, [0.3, 0.65, 0.3, 0.62, 0.61, 0.59, 0.62, 0.58, 0.61, 0.6, 0.55, 0.62])
    assert [(a.kind, a.score, a.time - T0) for a in raised] == [
        ("first", 0.62, timedelta(minutes=30))
    ]
    a = raised[0]
    assert a.state == "new" and a.model_version == "m1" and a.details == {"top": ["lactate"]}
    assert "Decision support only" in a.decision_support
    # below `off`: the episode ends; a new crossing is a new episode
    more = e.observe("p1", "risk", 0.35, T0 + timedelta(hours=2))
    assert more == [] and e.log[-1].action == "resolved"
    later = [e.observe("p1", "risk", 0.7, T0 + timedelta(hours=3, minutes=m)) for m in (0, 10)]
    assert [len(x) for x in later] == [0, 1]


def test_realert_only_on_the_stated_rise_and_not_while_snoozed() -> None:
    e = AlertEngine([RULE])
    first = feed(e, [0.7, 0.7, 0.7])[0]
    assert e.observe("p1", "risk", 0.85, T0 + timedelta(minutes=20)) == []  # +0.15 < 0.2
    e.snooze(first.id, "rn1", 2, "already on antibiotics", T0 + timedelta(minutes=25))
    assert e.observe("p1", "risk", 0.95, T0 + timedelta(minutes=30)) == []  # snoozed
    rise = e.observe("p1", "risk", 0.95, T0 + timedelta(hours=3))
    assert [(a.kind, a.score) for a in rise] == [("rise", 0.95)]
    with pytest.raises(AlertError, match="1-12 h"):
        e.snooze(first.id, "rn1", 24, "x", T0)
    with pytest.raises(AlertError, match="reason"):
        e.snooze(first.id, "rn1", 2, "  ", T0)


def test_acknowledge_escalation_indeterminate_and_shadow() -> None:
    e = AlertEngine([RULE])
    a = feed(e, [0.7, 0.7, 0.7])[0]
    assert e.tick(a.time + timedelta(minutes=29)) == []
    up = e.tick(a.time + timedelta(minutes=31))
    assert [(x.state, x.role) for x in up] == [("escalated", "charge nurse")]
    assert [x.role for x in e.tick(a.time + timedelta(minutes=61))] == ["clinician"]
    assert e.tick(a.time + timedelta(minutes=200)) == []  # no one further up
    acked = e.acknowledge(a.id, "dr1", a.time + timedelta(minutes=70))
    assert acked.state == "acknowledged" and acked.acknowledged_by == "dr1"
    with pytest.raises(AlertError, match="acknowledged by dr1"):
        e.acknowledge(a.id, "dr2", a.time)
    doubt = e.observe("p2", "risk", 0.9, T0, confident=False)
    assert doubt == [] and e.observe("p2", "risk", 0.9, T0 + timedelta(minutes=10),
                                     confident=False)[0].state == "indeterminate"  # fmt: skip
    shadow = AlertEngine([RULE], shadow=True)
    assert feed(shadow, [0.7, 0.7, 0.7])[0].shadow and shadow.visible() == []
    with pytest.raises(ValueError, match="below on"):
        AlertRule("bad", "risk", on=0.5, off=0.6)


def test_scorecard_on_a_hand_checked_log() -> None:
    e = AlertEngine([RULE])
    # p1: alerted 3 h before its onset (right, early); p2: alerted, no event (wrong);
    # p3: event never alerted
    a1 = feed(e, [0.7, 0.7, 0.7], "p1")[0]
    a2 = feed(e, [0.7, 0.7, 0.7], "p2")[0]
    e.acknowledge(a1.id, "rn", a1.time + timedelta(minutes=4))
    e.acknowledge(a2.id, "rn", a2.time + timedelta(minutes=10))
    e.feedback(a2.id, "dr", True, a2.time + timedelta(minutes=11))
    onsets = {"p1": a1.time + timedelta(hours=3), "p3": T0 + timedelta(hours=5)}
    card = scorecard(e, patient_hours=100.0, onsets=onsets)
    assert card.alerts == 2 and card.alerts_per_patient_hour == pytest.approx(0.02)
    assert card.alerts_per_clinician_shift == pytest.approx(0.02 * 2 * 12)
    assert card.ppv == 0.5 and card.recall_2h == 0.5 and card.median_lead_h == pytest.approx(3)
    assert card.median_ack_min == pytest.approx(7) and card.overridden_share == 1.0


def test_off_delay_keeps_one_episode_through_a_short_dip() -> None:
    rule = AlertRule("sepsis", "risk", on=0.6, off=0.4, resolve_after_s=3600)
    e = AlertEngine([rule])
    assert len(e.observe("p1", "risk", 0.7, T0)) == 1
    # below `off` for 50 min, then up again: the same episode, no new alert
    for m in (10, 30, 60):
        assert e.observe("p1", "risk", 0.3, T0 + timedelta(minutes=m)) == []
    assert e.observe("p1", "risk", 0.7, T0 + timedelta(minutes=65)) == []
    assert [x.action for x in e.log] == ["raised"]
    # below `off` for a whole hour: resolved; the next crossing is a new episode
    for m in (70, 100, 131):
        e.observe("p1", "risk", 0.3, T0 + timedelta(minutes=m))
    assert e.log[-1].action == "resolved"
    assert [a.kind for a in e.observe("p1", "risk", 0.7, T0 + timedelta(minutes=140))] == ["first"]
    with pytest.raises(ValueError, match="positive"):
        AlertRule("bad", "risk", on=0.6, off=0.4, resolve_after_s=-1)


def test_one_alert_per_patient_across_rules() -> None:
    low_map = AlertRule("hypotension", "forecast:map", on=0.5, off=0.2)
    low_spo2 = AlertRule("desaturation", "forecast:spo2", on=0.5, off=0.2)
    e = AlertEngine([low_map, low_spo2])
    first = e.observe("p1", "forecast:map", 0.6, T0)
    assert len(first) == 1
    # the second rule joins the open alert: one page, two reasons
    assert e.observe("p1", "forecast:spo2", 0.7, T0 + timedelta(minutes=5)) == []
    joined = e.alerts[first[0].id]
    assert [x["rule"] for x in joined.details["also"]] == ["desaturation"]
    assert [x.action for x in e.log] == ["raised", "joined"]
    # another patient is another episode
    assert len(e.observe("p2", "forecast:spo2", 0.7, T0)) == 1
    # the patient's episode ends only when every rule's has
    e.observe("p1", "forecast:map", 0.1, T0 + timedelta(minutes=10))
    assert "resolved" not in [x.action for x in e.log]
    e.observe("p1", "forecast:spo2", 0.1, T0 + timedelta(minutes=15))
    assert (e.log[-1].action, e.log[-1].alert_id) == ("resolved", first[0].id)
    # each rule on its own when asked
    apart = AlertEngine([low_map, low_spo2], one_per_patient=False)
    apart.observe("p1", "forecast:map", 0.6, T0)
    assert len(apart.observe("p1", "forecast:spo2", 0.7, T0)) == 1


def test_escalate_by_hand_and_a_scorecard_without_outcomes() -> None:
    e = AlertEngine([RULE])
    a = feed(e, [0.7, 0.7, 0.7])[0]
    up = e.escalate(a.id, "rn1", a.time + timedelta(minutes=1))
    assert (up.state, up.role) == ("escalated", "charge nurse")
    assert (e.log[-1].action, e.log[-1].who, e.log[-1].detail) == ("escalated", "rn1",
                                                                   "to charge nurse")  # fmt: skip
    e.escalate(a.id, "rn1", a.time + timedelta(minutes=2))
    with pytest.raises(AlertError, match="last role"):
        e.escalate(a.id, "rn1", a.time + timedelta(minutes=3))
    card = scorecard(e, patient_hours=10.0, onsets=None)  # a live service knows no outcomes
    assert card.alerts == 1 and card.alerts_per_patient_hour == pytest.approx(0.1)
    assert card.ppv != card.ppv and card.recall_2h != card.recall_2h  # NaN: unknown


def test_the_alert_state_survives_a_restart() -> None:
    e = AlertEngine([RULE])
    a = feed(e, [0.7, 0.7, 0.7])[0]
    e.snooze(a.id, "rn1", 2, "on antibiotics", a.time + timedelta(minutes=5))
    again = AlertEngine([RULE])
    assert again.restore(e.to_json()) == 1
    assert again.alerts == e.alerts and again.log == e.log
    # the open episode goes on: no new alert at the same level, a new id after the old ones
    assert again.observe("p1", "risk", 0.7, T0 + timedelta(hours=1)) == []
    (b,) = feed(again, [0.9, 0.9, 0.9], "p2")
    assert (a.id, b.id) == ("A1", "A2")
    with pytest.raises(ValueError, match="alert state format"):
        again.restore(b"{}")
    with pytest.raises(ValueError, match="not a saved alert state"):
        again.restore(b'{"format": 1}')


def test_escalation_runs_on_the_wall_clock_when_data_lag() -> None:
    now = [T0 + timedelta(hours=5)]  # the data are five hours old (a replay, late values)
    e = AlertEngine([RULE], clock=lambda: now[0])
    a = feed(e, [0.7, 0.7, 0.7])[0]
    assert a.raised_at == now[0] and a.shown_at == now[0]
    assert e.tick(now[0] + timedelta(minutes=29)) == []  # not escalated at once
    assert [x.role for x in e.tick(now[0] + timedelta(minutes=31))] == ["charge nurse"]
    e.acknowledge(a.id, "rn1", now[0] + timedelta(minutes=40))
    assert scorecard(e, 10.0, None).median_ack_min == pytest.approx(40)
    again = AlertEngine([RULE])
    again.restore(e.to_json())
    assert again.alerts[a.id].raised_at == now[0]
