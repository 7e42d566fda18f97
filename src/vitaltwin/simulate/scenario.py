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
from pathlib import Path
from typing import Annotated, Literal

import jax.numpy as jnp
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vitaltwin.model import Model
from vitaltwin.physiology import cardiovascular_model
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterChange(_Strict):
    """Set a parameter to ``value`` or multiply its current value by ``factor``."""

    parameter: str
    value: float | None = None
    factor: Annotated[float, Field(gt=0)] | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ParameterChange:
        if (self.value is None) == (self.factor is None):
            raise ValueError("give exactly one of 'value' or 'factor'")
        return self

    def apply(self, model: Model, p: np.ndarray) -> np.ndarray:
        if self.parameter not in model.param_names:
            raise ScenarioError(f"unknown parameter {self.parameter!r}")
        i = model.param_index(self.parameter)
        new = self.value if self.value is not None else p[i] * float(self.factor or 1.0)
        return model.params_from({self.parameter: float(new)}, base=p)


class Hemorrhage(_Strict):
    """Blood loss over ``duration_s`` given as a rate, a volume, or a fraction of blood volume."""

    type: Literal["hemorrhage"]
    at_s: Annotated[float, Field(ge=0)]
    duration_s: Annotated[float, Field(gt=0)]
    rate_ml_min: Annotated[float, Field(gt=0)] | None = None
    volume_ml: Annotated[float, Field(gt=0)] | None = None
    fraction_of_blood_volume: Annotated[float, Field(gt=0, le=0.6)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Hemorrhage:
        given = [self.rate_ml_min, self.volume_ml, self.fraction_of_blood_volume]
        if sum(v is not None for v in given) != 1:
            raise ValueError(
                "give exactly one of 'rate_ml_min', 'volume_ml', 'fraction_of_blood_volume'"
            )
        return self

    def rate_ml_s(self, blood_volume_ml: float) -> float:
        if self.rate_ml_min is not None:
            return self.rate_ml_min / 60.0
        vol = (
            self.volume_ml
            if self.volume_ml is not None
            else (float(self.fraction_of_blood_volume or 0.0) * blood_volume_ml)
        )
        return vol / self.duration_s


class FluidBolus(_Strict):
    """A crystalloid bolus of ``volume_ml`` given evenly over ``duration_s``."""

    type: Literal["fluid_bolus"]
    at_s: Annotated[float, Field(ge=0)]
    volume_ml: Annotated[float, Field(gt=0, le=5000)]
    duration_s: Annotated[float, Field(gt=0)] = 600.0


class FluidInfusion(_Strict):
    """A continuous infusion at ``rate_ml_h``, for ``duration_s`` or to the end."""

    type: Literal["fluid_infusion"]
    at_s: Annotated[float, Field(ge=0)]
    rate_ml_h: Annotated[float, Field(gt=0, le=10000)]
    duration_s: Annotated[float, Field(gt=0)] | None = None


class SetParameter(ParameterChange):
    """Change a parameter (contractility, resistance, ...) at ``at_s`` and keep it."""

    type: Literal["set_parameter"]
    at_s: Annotated[float, Field(ge=0)]


class Infection(_Strict):
    """Infection onset: ``severity`` units of pathogen (Reynolds et al. 2006 units) inoculated
    over ``duration_s`` (ward fidelity). 2 gives septic shock without treatment."""

    type: Literal["infection"]
    at_s: Annotated[float, Field(ge=0)]
    severity: Annotated[float, Field(gt=0, le=10)]
    duration_s: Annotated[float, Field(gt=0)] = 600.0


class NorepinephrineDose(_Strict):
    """Norepinephrine at a fixed rate from ``at_s`` (for ``duration_s`` or to the end)."""

    type: Literal["norepinephrine"]
    at_s: Annotated[float, Field(ge=0)]
    rate_ug_kg_min: Annotated[float, Field(ge=0, le=3)]
    duration_s: Annotated[float, Field(gt=0)] | None = None


class NorepinephrineTitration(_Strict):
    """Start a protocol that titrates norepinephrine to a MAP target (ward fidelity)."""

    type: Literal["norepinephrine_titration"]
    at_s: Annotated[float, Field(ge=0)]
    target_map_mmhg: Annotated[float, Field(ge=50, le=100)] = 65.0
    max_ug_kg_min: Annotated[float, Field(gt=0, le=3)] = 1.0
    duration_s: Annotated[float, Field(gt=0)] | None = None


class AntibioticDose(_Strict):
    """Meropenem ``dose_mg`` infused over ``infusion_min``, repeated ``every_h`` if given."""

    type: Literal["antibiotic"]
    at_s: Annotated[float, Field(ge=0)]
    dose_mg: Annotated[float, Field(gt=0, le=6000)] = 1000.0
    infusion_min: Annotated[float, Field(gt=0, le=240)] = 30.0
    every_h: Annotated[float, Field(gt=0, le=48)] | None = 8.0


class Oxygen(_Strict):
    """Set the inspired O2 fraction from ``at_s`` (ward fidelity)."""

    type: Literal["oxygen"]
    at_s: Annotated[float, Field(ge=0)]
    fio2: Annotated[float, Field(ge=0.21, le=1.0)]


WARD_ONLY_ACTIONS = (
    "infection",
    "norepinephrine",
    "norepinephrine_titration",
    "antibiotic",
    "oxygen",
)

Action = Annotated[
    Hemorrhage
    | FluidBolus
    | FluidInfusion
    | SetParameter
    | Infection
    | NorepinephrineDose
    | NorepinephrineTitration
    | AntibioticDose
    | Oxygen,
    Field(discriminator="type"),
]


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
        for i, a in enumerate(self.actions):
            if self.fidelity == "beat" and a.type in WARD_ONLY_ACTIONS:
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
        if isinstance(a, SetParameter) and a.parameter not in model.param_names:
            raise ScenarioError(
                f"invalid scenario {where}:\n  actions[{i}].parameter: "
                f"unknown parameter {a.parameter!r}"
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


def _segments(
    scenario: Scenario, model: Model, p0: np.ndarray, blood_volume_ml: float, rec_dt: float
) -> tuple[list[_Segment], pd.DataFrame]:
    n_total = round(scenario.duration_s / rec_dt)

    def idx(t: float) -> int:
        return min(max(round(t / rec_dt), 0), n_total)

    # Each action becomes input intervals (start, stop, input name, value, mode) — rates add
    # up, settings replace the default — or a parameter change at start.
    rates: list[tuple[int, int, str, float, str]] = []
    changes: list[tuple[int, int, ParameterChange]] = []
    log: list[tuple[float, str, str]] = []
    for k, a in enumerate(scenario.actions):
        start = idx(a.at_s)
        dur: float | None = getattr(a, "duration_s", None)
        until = n_total if dur is None else idx(a.at_s + dur)
        if isinstance(a, Hemorrhage):
            r = a.rate_ml_s(blood_volume_ml)
            rates.append((start, until, "hemorrhage_ml_s", r, "add"))
            log.append((a.at_s, a.type, f"blood loss {r * 60:.0f} mL/min for {a.duration_s:g} s"))
        elif isinstance(a, FluidBolus):
            rates.append((start, until, "infusion_ml_s", a.volume_ml / a.duration_s, "add"))
            log.append((a.at_s, a.type, f"{a.volume_ml:g} mL over {a.duration_s:g} s"))
        elif isinstance(a, FluidInfusion):
            rates.append((start, until, "infusion_ml_s", a.rate_ml_h / 3600.0, "add"))
            log.append((a.at_s, a.type, f"{a.rate_ml_h:g} mL/h"))
        elif isinstance(a, Infection):
            r = a.severity / (a.duration_s / 3600.0)
            rates.append((start, until, "pathogen_inoculum_per_h", r, "add"))
            log.append(
                (a.at_s, a.type, f"pathogen inoculum {a.severity:g} over {a.duration_s:g} s")
            )
        elif isinstance(a, NorepinephrineDose):
            rates.append((start, until, "ne_rate_ug_kg_min", a.rate_ug_kg_min, "add"))
            log.append((a.at_s, a.type, f"{a.rate_ug_kg_min:g} ug/kg/min"))
        elif isinstance(a, NorepinephrineTitration):
            rates.append((start, until, "ne_target_map_mmhg", a.target_map_mmhg, "set"))
            rates.append((start, until, "ne_max_ug_kg_min", a.max_ug_kg_min, "set"))
            log.append((a.at_s, a.type, f"to MAP {a.target_map_mmhg:g}, max {a.max_ug_kg_min:g}"))
        elif isinstance(a, AntibioticDose):
            rate = a.dose_mg / (a.infusion_min / 60.0)
            t_dose = a.at_s
            while t_dose < scenario.duration_s:
                rates.append(
                    (idx(t_dose), idx(t_dose + 60.0 * a.infusion_min), "abx_rate_mg_h", rate, "add")
                )
                if a.every_h is None:
                    break
                t_dose += 3600.0 * a.every_h
            every = "" if a.every_h is None else f", every {a.every_h:g} h"
            log.append(
                (a.at_s, a.type, f"meropenem {a.dose_mg:g} mg over {a.infusion_min:g} min{every}")
            )
        elif isinstance(a, Oxygen):
            rates.append((start, n_total, "fio2", a.fio2, "set"))
            log.append((a.at_s, a.type, f"FiO2 {a.fio2:g}"))
        else:
            changes.append((start, k, a))
            how = f"= {a.value:g}" if a.value is not None else f"x {a.factor:g}"
            log.append((a.at_s, a.type, f"{a.parameter} {how}"))
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
                p = ch.apply(model, p)
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
        p = c.apply(model, p)
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
        p = c.apply(model, p)
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
