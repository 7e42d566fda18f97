"""The verification table: expected vs computed, with percentage error and a grade.

In the manner of the Pulse Physiology Engine's validation tables, every system is checked
against published values:

* **resting**: the reference adult's periodic steady state against textbook and meta-analysis
  values (:data:`vitaltwin.validation.reference.RESTING_ADULT`), graded by percentage error
  (<= 5 % green, <= 10 % yellow, otherwise red);
* **dynamic**: responses to the example scenarios (haemorrhage then fluid, a fluid challenge,
  reduced contractility) — a direction and a magnitude range from the cited literature; green
  when both hold, red otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from vitaltwin.physiology import cardiovascular_model
from vitaltwin.physiology.patient import REFERENCE_PATIENT, initial_state, patient_parameters
from vitaltwin.simulate import DEFAULT_DT_S, steady_state
from vitaltwin.simulate.scenario import (
    ScenarioResult,
    example_scenarios,
    load_scenario,
    run_scenario,
)
from vitaltwin.validation._checks import (
    DynamicCheck,
    RestingCheck,
    grade_error,
    range_check,
    source_text,
)
from vitaltwin.validation.reference import RESTING_ADULT
from vitaltwin.validation.ward_verification import ward_verification


def resting_checks(dt: float = DEFAULT_DT_S) -> tuple[list[RestingCheck], pd.Series]:
    """The reference adult's steady state against :data:`RESTING_ADULT`."""
    model = cardiovascular_model()
    p = patient_parameters(model, REFERENCE_PATIENT)
    ss = steady_state(model, p, initial_state(model, REFERENCE_PATIENT), dt=dt)
    if not ss.converged:
        raise RuntimeError(
            f"reference adult did not reach a periodic steady state "
            f"(relative change {ss.max_rel_change:.2e} after {ss.time_s:g} s)"
        )
    last = ss.beats.iloc[-5:].mean()
    out = []
    for r in RESTING_ADULT:
        computed = float(last[r.metric])
        err = 100.0 * (computed - r.expected) / r.expected
        out.append(
            RestingCheck(
                r.metric,
                r.label,
                r.unit,
                r.expected,
                computed,
                err,
                grade_error(err),
                source_text(r.source),
            )
        )
    return out, last


def _window(beats: pd.DataFrame, t0: float, t1: float) -> pd.Series:
    sel = beats[(beats["t_s"] >= t0) & (beats["t_s"] < t1)]
    if sel.empty:
        raise RuntimeError(f"no complete beat between {t0} s and {t1} s")
    return sel.mean(numeric_only=True)


def _pct(a: float, b: float) -> float:
    return 100.0 * (b - a) / a


def hemorrhage_checks(res: ScenarioResult) -> list[DynamicCheck]:
    """20 % blood loss over 10 min (from 120 s), then 1 L fluid over 10 min (from 1020 s)."""
    b = res.beats
    base = _window(b, 60, 120)
    bled = _window(b, 690, 720)
    after = _window(b, 1740, 1800)
    name = res.scenario.name
    cmp1 = "end of haemorrhage vs baseline"
    checks = [
        range_check(
            name,
            "MAP",
            cmp1,
            "decrease",
            -30.0,
            -2.0,
            "%",
            _pct(base.map_mmhg, bled.map_mmhg),
            "scully2016 (a 30 mmHg fall, ~30 % of baseline MAP, needed 27 % blood "
            "loss at a similar rate; a 20 % loss lowers MAP by less)",
        ),
        range_check(
            name,
            "pulse pressure",
            cmp1,
            "decrease",
            -60.0,
            -5.0,
            "%",
            _pct(base.sbp_mmhg - base.dbp_mmhg, bled.sbp_mmhg - bled.dbp_mmhg),
            "atls2018 (class II: pulse pressure decreased)",
        ),
        range_check(
            name,
            "HR",
            cmp1,
            "increase",
            5.0,
            60.0,
            "%",
            _pct(base.hr_bpm, bled.hr_bpm),
            "atls2018 (class II: heart rate normal to increased, 100-120/min)",
        ),
        range_check(
            name,
            "CO",
            cmp1,
            "decrease",
            -50.0,
            -10.0,
            "%",
            _pct(base.co_l_min, bled.co_l_min),
            "guyton ch. 24 (cardiac output falls with venous return after "
            "haemorrhage before arterial pressure does)",
        ),
    ]
    cmp2 = "after 1 L fluid vs end of haemorrhage"
    checks += [
        range_check(
            name,
            "MAP",
            cmp2,
            "increase",
            2.0,
            40.0,
            "%",
            _pct(bled.map_mmhg, after.map_mmhg),
            "guyton ch. 24 (volume replacement restores arterial pressure)",
        ),
        range_check(
            name,
            "CO",
            cmp2,
            "increase",
            10.0,
            80.0,
            "%",
            _pct(bled.co_l_min, after.co_l_min),
            "guyton ch. 24 (volume replacement restores cardiac output)",
        ),
    ]
    return checks


def fluid_checks(res: ScenarioResult) -> list[DynamicCheck]:
    """500 mL over 10 min (from 120 s) in a euvolemic adult."""
    b = res.beats
    base, end = _window(b, 60, 120), _window(b, 690, 720)
    return [
        range_check(
            res.scenario.name,
            "CO",
            "end of 500 mL bolus vs baseline",
            "increase",
            1.0,
            25.0,
            "%",
            _pct(base.co_l_min, end.co_l_min),
            "monnet2016 (CO rises with a 500 mL challenge; >= 10-15 % only in "
            "preload-dependent patients, about half)",
        ),
        range_check(
            res.scenario.name,
            "SV",
            "end of 500 mL bolus vs baseline",
            "increase",
            1.0,
            25.0,
            "%",
            _pct(base.sv_ml, end.sv_ml),
            "monnet2016 (stroke volume rises with preload)",
        ),
    ]


def contractility_checks(res: ScenarioResult, rest: pd.Series) -> list[DynamicCheck]:
    """Reduced LV contractility at its compensated steady state vs the healthy reference."""
    hf = _window(res.beats, 0, 120)
    name = res.scenario.name
    cmp = "compensated steady state vs healthy adult"
    return [
        range_check(
            name,
            "EF",
            cmp,
            "decrease",
            -0.45,
            -0.15,
            "absolute",
            float(hf.ef - rest.ef),
            "mcdonagh2021 (HFrEF: LVEF <= 40 %)",
        ),
        range_check(
            name,
            "LVEDV",
            cmp,
            "increase",
            5.0,
            80.0,
            "%",
            _pct(rest.edv_ml, hf.edv_ml),
            "mcdonagh2021 (LV dilatation in HFrEF)",
        ),
        range_check(
            name,
            "CO",
            cmp,
            "decrease",
            -45.0,
            -5.0,
            "%",
            _pct(rest.co_l_min, hf.co_l_min),
            "mcdonagh2021 (reduced cardiac output in HFrEF)",
        ),
        range_check(
            name,
            "HR",
            cmp,
            "increase",
            0.5,
            40.0,
            "%",
            _pct(rest.hr_bpm, hf.hr_bpm),
            "mcdonagh2021 (sympathetic activation: resting tachycardia in HFrEF)",
        ),
        range_check(
            name,
            "EF value",
            "compensated steady state",
            "within",
            0.15,
            0.40,
            "fraction",
            float(hf.ef),
            "mcdonagh2021 (HFrEF: LVEF <= 40 %)",
        ),
    ]


@dataclass
class VerificationReport:
    resting: list[RestingCheck]
    dynamic: list[DynamicCheck]

    @property
    def all_green(self) -> bool:
        grades = [c.grade for c in self.resting] + [c.grade for c in self.dynamic]
        return all(g == "green" for g in grades)

    def to_json(self) -> str:
        return json.dumps(
            {
                "resting": [asdict(c) for c in self.resting],
                "dynamic": [asdict(c) for c in self.dynamic],
                "all_green": self.all_green,
            },
            indent=2,
        )

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def verify(
    progress: Callable[[str], None] | None = None,
    results: Mapping[str, ScenarioResult] | None = None,
) -> VerificationReport:
    """Run every check of the beat-resolved and the ward-scale model.

    ``results`` may hold example scenarios already run (by name); the others are run here.
    """
    results = dict(results or {})
    ex = example_scenarios()

    def result(name: str) -> ScenarioResult:
        if name not in results:
            if progress is not None:
                progress(f"scenario {name}")
            results[name] = run_scenario(load_scenario(ex[name]))
        return results[name]

    if progress is not None:
        progress("resting adult: periodic steady state")
    resting, rest = resting_checks()
    dynamic = [
        *hemorrhage_checks(result("hemorrhage_then_fluid")),
        *fluid_checks(result("fluid_challenge")),
        *contractility_checks(result("heart_failure"), rest),
    ]

    sepsis = (
        "septic_shock_untreated",
        "septic_shock_early_antibiotics",
        "septic_shock_late_antibiotics",
    )
    ward_rest, ward_dyn = ward_verification({n: result(n) for n in sepsis}, progress)
    return VerificationReport(resting + ward_rest, dynamic + ward_dyn)
