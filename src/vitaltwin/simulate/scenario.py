"""Scenarios as data: a patient, conditions, and timed actions (in the spirit of Pulse).

A scenario file is JSON::

    {
      "name": "hemorrhage_then_fluid",
      "description": "...",
      "patient": {"age_years": 40, "sex": "male", "weight_kg": 70, "height_cm": 175},
      "conditions": [{"parameter": "e_es_lv_mmhg_ml", "factor": 0.4}],
      "duration_s": 1800,
      "record_hz": 125,
      "actions": [
        {"type": "hemorrhage", "at_s": 60, "duration_s": 600, "fraction_of_blood_volume": 0.2},
        {"type": "fluid_bolus", "at_s": 900, "duration_s": 600, "volume_ml": 1000},
        {"type": "fluid_infusion", "at_s": 1500, "rate_ml_h": 100},
        {"type": "set_parameter", "at_s": 1600, "parameter": "r_sys_mmhg_s_ml", "factor": 0.8}
      ]
    }

Conditions are chronic: they apply before the simulation starts, and the patient is brought to
its periodic steady state with them (a heart-failure patient starts compensated). Actions
happen at ``at_s`` seconds after the start. Rates of overlapping actions add up. Action times
are rounded to the recording grid (1 / record_hz).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import jax.numpy as jnp
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vitaltwin.model import InterventionContext, InterventionError, Model, ParameterSetting
from vitaltwin.physiology import cardiovascular_model
from vitaltwin.physiology.interventions import Action, ParameterChange
from vitaltwin.physiology.patient import (
    REFERENCE_PATIENT,
    PatientProfile,
    initial_state,
    patient_parameters,
)
from vitaltwin.simulate._beats import beat_table, trajectory_signals
from vitaltwin.simulate._run import steady_state
from vitaltwin.simulate._solver import DEFAULT_DT_S, make_integrator


class ScenarioError(ValueError):
    """A scenario that cannot be read or run; the message names the file and the field."""


@lru_cache(maxsize=1)
def _beat_input_names() -> tuple[str, ...]:
    return cardiovascular_model().input_names


__all__ = [
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "example_scenarios",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scenario(_Strict):
    """A patient, chronic conditions and timed actions."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    fidelity: Literal["beat", "ward"] = "beat"
    patient: PatientProfile = REFERENCE_PATIENT
    conditions: list[ParameterChange] = []
    actions: list[Action] = []
    duration_s: Annotated[float, Field(gt=0, le=86400)]
    record_hz: Annotated[float, Field(gt=0, le=250)] = 125.0

    @model_validator(mode="after")
    def _actions_in_time(self) -> Scenario:
        if self.fidelity == "ward" and "record_hz" in self.model_fields_set:
            raise ValueError(
                "record_hz applies to the beat fidelity; the ward fidelity records every "
                "solver step (60 s)"
            )
        beat_inputs = set(_beat_input_names())
        for i, a in enumerate(self.actions):
            if self.fidelity == "beat" and not set(a.needs_inputs) <= beat_inputs:
                raise ValueError(
                    f'actions[{i}]: {a.type!r} needs "fidelity": "ward" (the beat model '
                    "has no inflammation, drugs or gas exchange)"
                )
            if a.at_s >= self.duration_s:
                raise ValueError(
                    f"actions[{i}].at_s = {a.at_s} is not before duration_s = {self.duration_s}"
                )
        return self


def _format_validation(err: ValidationError, where: str) -> str:
    lines = [f"invalid scenario {where}:"]
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        lines.append(f"  {loc or '(top level)'}: {e['msg']}")
    return "\n".join(lines)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors name the file and the offending field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            f"invalid scenario {path}: not JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})"
        ) from None
    return parse_scenario(data, where=str(path))


def parse_scenario(data: object, where: str = "<data>") -> Scenario:
    """Validate a scenario from already-parsed JSON."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_validation(exc, where)) from None
    model = _model_for(scenario)
    for i, c in enumerate(scenario.conditions):
        if c.parameter not in model.param_names:
            raise ScenarioError(
                f"invalid scenario {where}:\n  conditions[{i}].parameter: "
                f"unknown parameter {c.parameter!r}"
            )
    for i, a in enumerate(scenario.actions):
        change = a.parameter_change()
        if change is not None and change.parameter not in model.param_names:
            raise ScenarioError(
                f"invalid scenario {where}:\n  actions[{i}].parameter: "
                f"unknown parameter {change.parameter!r}"
            )
    return scenario


def _model_for(scenario: Scenario) -> Model:
    if scenario.fidelity == "ward":
        from vitaltwin.physiology.ward import ward_model

        return ward_model()
    return cardiovascular_model()


EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "scenarios" / "examples"


def example_scenarios() -> dict[str, Path]:
    """The example scenarios shipped with the package, by name."""
    return {p.stem: p for p in sorted(EXAMPLES_DIR.glob("*.json"))}


# ----------------------------------------------------------------------------- running
@dataclass
class ScenarioResult:
    """Recorded states and signals (``timeseries``), the action log, and ``beats``: beat
    indices (beat fidelity) or the clinical outputs at each record (ward fidelity)."""

    scenario: Scenario
    timeseries: pd.DataFrame
    beats: pd.DataFrame
    events: pd.DataFrame
    steady_state_converged: bool


@dataclass(frozen=True)
class _Segment:
    start: int  # record index
    stop: int
    u: np.ndarray
    p: np.ndarray


_CHUNKS = (1000, 100, 10, 1)
WAVEFORM_SIGNALS = (
    "p_sa_mmhg",
    "p_lv_mmhg",
    "p_sv_mmhg",
    "p_pa_mmhg",
    "p_rv_mmhg",
    "q_av_ml_s",
    "heart_period_s",
    "r_sys_eff_mmhg_s_ml",
    "e_es_lv_eff_mmhg_ml",
)


def _apply(change: ParameterSetting, model: Model, p: np.ndarray) -> np.ndarray:
    try:
        return change.apply(model, p)
    except InterventionError as exc:
        raise ScenarioError(str(exc)) from None


def _segments(
    scenario: Scenario, model: Model, p0: np.ndarray, blood_volume_ml: float, rec_dt: float
) -> tuple[list[_Segment], pd.DataFrame]:
    n_total = round(scenario.duration_s / rec_dt)

    def idx(t: float) -> int:
        return min(max(round(t / rec_dt), 0), n_total)

    # Each action gives input intervals (start, stop, input name, value, mode) — rates add up,
    # settings replace the default — or a parameter change at its start.
    ctx = InterventionContext(end_s=scenario.duration_s, blood_volume_ml=blood_volume_ml)
    rates: list[tuple[int, int, str, float, str]] = []
    changes: list[tuple[int, int, ParameterSetting]] = []
    log: list[tuple[float, str, str]] = []
    for k, a in enumerate(scenario.actions):
        for change in a.input_changes(ctx):
            stop = n_total if change.stop_s is None else idx(change.stop_s)
            rates.append((idx(change.start_s), stop, change.input, change.value, change.mode))
        pc = a.parameter_change()
        if pc is not None:
            changes.append((idx(a.at_s), k, pc))
        log.append((a.at_s, a.type, a.describe(ctx)))
    cuts = sorted(
        {
            0,
            n_total,
            *(r[0] for r in rates),
            *(r[1] for r in rates),
            *(s for s, _, _ in changes),
        }
    )
    segs: list[_Segment] = []
    p = p0.copy()
    for lo, hi in itertools.pairwise(cuts):
        for s, _, ch in sorted(changes, key=lambda c: (c[0], c[1])):
            if s == lo:
                p = _apply(ch, model, p)
        u = model.default_inputs()
        for s, e, name, r, mode in sorted(rates, key=lambda q: q[0]):
            if s <= lo < e:
                j = model.input_index(name)
                u[j] = u[j] + r if mode == "add" else r
        if hi > lo:
            segs.append(_Segment(lo, hi, u.copy(), p.copy()))
    events = pd.DataFrame(log, columns=["t_s", "action", "detail"])
    return segs, events


def _chunks(n: int) -> Iterator[int]:
    for c in _CHUNKS:
        while n >= c:
            yield c
            n -= c


def run_scenario(
    scenario: Scenario,
    dt: float = DEFAULT_DT_S,
    progress: Callable[[float], None] | None = None,
) -> ScenarioResult:
    """Run a scenario on the beat-resolved model.

    ``progress`` is called with the simulated seconds advanced after each chunk.
    """
    if scenario.fidelity == "ward":
        return _run_ward(scenario, progress)
    model = cardiovascular_model()
    p = patient_parameters(model, scenario.patient)
    for c in scenario.conditions:
        p = _apply(c, model, p)
    ss = steady_state(model, p, initial_state(model, scenario.patient), dt=dt)
    steps = round(1.0 / (scenario.record_hz * dt))
    if steps < 1 or abs(steps * dt * scenario.record_hz - 1.0) > 1e-9:
        raise ScenarioError(
            f"scenario {scenario.name}: record_hz = {scenario.record_hz} must divide "
            f"{1 / dt:g} Hz (the solver rate)"
        )
    rec_dt = steps * dt
    segs, events = _segments(scenario, model, p, scenario.patient.blood_volume_ml, rec_dt)

    times, X, sig, ts = _run_segments(
        scenario, model, segs, ss.x, dt, steps, progress, WAVEFORM_SIGNALS
    )
    states = {n: X[:, i] for i, n in enumerate(model.state_names)}
    beats = beat_table(times, states, sig)
    return ScenarioResult(scenario, ts, beats, events, ss.converged)


def _run_segments(
    scenario: Scenario,
    model: Model,
    segs: list[_Segment],
    x0: np.ndarray,
    dt: float,
    steps: int,
    progress: Callable[[float], None] | None,
    signal_names: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], pd.DataFrame]:
    """Integrate segment after segment (one record per ``steps`` solver steps).

    Returns the record times, states, signals, and a time series of the states, the chosen
    signals (all when ``signal_names`` is None) and the inputs. An unstable run raises.
    """
    rec_dt = steps * dt
    x = jnp.asarray(x0)
    t = 0.0
    xs = [np.asarray(x0)[None, :]]
    for seg in segs:
        pj, uj = jnp.asarray(seg.p), jnp.asarray(seg.u)
        for n in _chunks(seg.stop - seg.start):
            x, rec = make_integrator(model, dt, steps, n)(x, pj, uj, jnp.asarray(t))
            rec_np = np.asarray(rec)
            if not np.all(np.isfinite(rec_np)):
                raise ScenarioError(
                    f"scenario {scenario.name}: the integration became unstable between "
                    f"t = {t:g} s and {t + n * rec_dt:g} s (non-finite state); the physiology "
                    f"left the model's range or dt = {dt:g} s is too large for it"
                )
            xs.append(rec_np)
            t += n * rec_dt
            if progress is not None:
                progress(n * rec_dt)
    X = np.vstack(xs)
    times = rec_dt * np.arange(X.shape[0])
    sig = _segment_signals(model, segs, times, X)
    # Record r > 0 ends a block of segment s when s.start < r <= s.stop; record 0 is the start.
    U = np.vstack([segs[0].u[None, :]] + [np.tile(s.u, (s.stop - s.start, 1)) for s in segs])
    cols: dict[str, np.ndarray] = {"t_s": times}
    cols.update({name: X[:, i] for i, name in enumerate(model.state_names)})
    for name in sig if signal_names is None else signal_names:
        cols.setdefault(name, sig[name])  # a state's own value wins over a same-named signal
    cols.update({name: U[:, i] for i, name in enumerate(model.input_names)})
    return times, X, sig, pd.DataFrame(cols)


def _segment_signals(
    model: Model, segs: list[_Segment], t: np.ndarray, X: np.ndarray
) -> dict[str, np.ndarray]:
    """Signals along the trajectory, each segment with its own parameters and inputs."""
    out: dict[str, list[np.ndarray]] = {}
    for seg in segs:
        lo = 0 if seg.start == 0 else seg.start + 1
        sig = trajectory_signals(model, t[lo : seg.stop + 1], X[lo : seg.stop + 1], seg.p, seg.u)
        for k, v in sig.items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


WARD_SETTLE_S = 12 * 3600.0
"""With chronic conditions, the ward model runs this long untouched first (fluid and lactate
kinetics settle within hours)."""


def _run_ward(scenario: Scenario, progress: Callable[[float], None] | None) -> ScenarioResult:
    """Run a scenario on the ward-scale model: one record per 60 s solver step."""
    from vitaltwin.physiology.ward import WARD_DT_S, ward_baseline, ward_model

    model = ward_model()
    p, x0 = ward_baseline(model, scenario.patient)
    for c in scenario.conditions:
        p = _apply(c, model, p)
    dt = WARD_DT_S
    u0 = jnp.asarray(model.default_inputs())
    converged = True
    if scenario.conditions:
        n_settle = round(WARD_SETTLE_S / dt)
        x_end, rec = make_integrator(model, dt, 1, n_settle)(
            jnp.asarray(x0), jnp.asarray(p), u0, jnp.asarray(0.0)
        )
        rec_np = np.asarray(rec)
        last_hour = rec_np[-round(3600.0 / dt) :]
        span = np.ptp(last_hour, axis=0) / np.maximum(np.abs(last_hour).max(axis=0), 1e-9)
        converged = bool(np.all(np.isfinite(rec_np)) and span.max() < 1e-3)
        x0 = np.asarray(x_end)
    segs, events = _segments(scenario, model, p, scenario.patient.blood_volume_ml, dt)
    _, _, _, ts = _run_segments(scenario, model, segs, x0, dt, 1, progress)
    trend = ts[["t_s", *[o.name for o in model.outputs]]].copy()
    return ScenarioResult(scenario, ts, trend, events, converged)
