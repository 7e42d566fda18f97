"""Verification of the ward-scale ICU model (rows of ``vitaltwin verify``).

* **resting**: the reference adult at rest against the same textbook values as the beat model,
  plus gas exchange, temperature, lactate and white cells;
* **septic shock** (the three ``septic_shock_*`` examples): untreated, SVR falls, the heart
  races, fever and leucocytosis appear, lactate exceeds 4 mmol/L and MAP falls below 65 mmHg;
  with antibiotics at 1 h plus fluids and norepinephrine the MAP recovers; antibiotics at 6 h
  leave a worse course than at 1 h;
* **norepinephrine**: the MAP rise at 0.1-0.3 ug/kg/min in the untreated patient at 12 h;
* **fluid responsiveness**: 500 mL raises CO more after a 1 L haemorrhage than at euvolaemia;
* **oxygenation**: SpO2 falls with a hypoxic FiO2 along the dissociation curve, and a large
  shunt makes SpO2 refractory to oxygen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
import pandas as pd

from vitaltwin.model import Model
from vitaltwin.physiology.patient import REFERENCE_PATIENT
from vitaltwin.physiology.ward import WARD_DT_S, ward_baseline, ward_model
from vitaltwin.simulate import make_integrator, trajectory_signals
from vitaltwin.simulate.scenario import ScenarioResult
from vitaltwin.validation._checks import (
    DynamicCheck,
    RestingCheck,
    grade_error,
    range_check,
    source_text,
)
from vitaltwin.validation.reference import RESTING_ADULT, Reference

WARD_RESTING: tuple[Reference, ...] = (
    *(
        r
        for r in RESTING_ADULT
        if r.metric
        in {"hr_bpm", "sbp_mmhg", "dbp_mmhg", "map_mmhg", "co_l_min", "sv_ml", "cvp_mmhg"}
    ),
    Reference("spo2_pct", "SpO2", "%", 97.0, "west2012 (arterial saturation ~97 % on air)"),
    Reference(
        "pao2_mmhg",
        "Arterial PO2",
        "mm[Hg]",
        91.8,
        "sorbini1968 (PaO2 = 109 - 0.43 x age: 91.8 mmHg at 40 y)",
    ),
    Reference("paco2_mmhg", "Arterial PCO2", "mm[Hg]", 40.0, "west2012"),
    Reference("rr_per_min", "Respiratory rate", "/min", 12.0, "west2012 (12-15 /min)"),
    Reference("temp_c", "Core temperature", "Cel", 37.0, "guyton"),
    Reference(
        "lactate_mmol_l", "Blood lactate", "mmol/L", 1.0, "levraut1998 (normal about 1 mmol/L)"
    ),
    Reference(
        "wbc_10e9_l",
        "White-cell count",
        "10*9/L",
        7.0,
        "guyton (about 7,000 white cells per microlitre)",
    ),
)
"""Resting reference adult on the ward model."""

_DYNAMIC_HOURS = 24


def _run(
    model: Model, p: np.ndarray, x0: np.ndarray, u: np.ndarray, hours: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Integrate with constant inputs; states and signals at each minute."""
    n = round(hours * 3600.0 / WARD_DT_S)
    _, rec = make_integrator(model, WARD_DT_S, 1, n)(
        jnp.asarray(x0), jnp.asarray(p), jnp.asarray(u), jnp.asarray(0.0)
    )
    X = np.asarray(rec)
    t = WARD_DT_S * np.arange(1, n + 1)
    return X, trajectory_signals(model, t, X, p, u)


def _resting(model: Model) -> tuple[list[RestingCheck], dict[str, float]]:
    p, x = ward_baseline(model, REFERENCE_PATIENT)
    u = model.default_inputs()
    X, sig = _run(model, p, x, u, 2.0)  # two quiet hours: the rest state must hold
    now = {k: float(v[-1]) for k, v in sig.items() if np.ndim(v) == 1}
    now.update({n: float(X[-1, i]) for i, n in enumerate(model.state_names)})
    out = []
    for r in WARD_RESTING:
        err = 100.0 * (now[r.metric] - r.expected) / r.expected
        out.append(
            RestingCheck(
                r.metric,
                f"{r.label} [ward]",
                r.unit,
                r.expected,
                now[r.metric],
                err,
                grade_error(err),
                source_text(r.source),
            )
        )
    return out, now


def _at(res: ScenarioResult, hours: float) -> pd.Series:
    ts = res.timeseries
    row = ts.iloc[int(np.argmin(np.abs(ts["t_s"].to_numpy() - hours * 3600.0)))]
    return row


def _svr(row: pd.Series) -> float:
    """SVR in dyn s cm^-5: 80 (MAP - CVP) / CO."""
    return float(80.0 * (row["map_mmhg"] - row["cvp_mmhg"]) / row["co_l_min"])


def sepsis_checks(
    untreated: ScenarioResult, early: ScenarioResult, late: ScenarioResult
) -> list[DynamicCheck]:
    """The septic-shock course untreated, treated early, and treated with late antibiotics."""
    u0, u24 = _at(untreated, 0.0), _at(untreated, _DYNAMIC_HOURS)
    e24, l24 = _at(early, _DYNAMIC_HOURS), _at(late, _DYNAMIC_HOURS)
    n = untreated.scenario.name
    return [
        range_check(
            n,
            "SVR",
            "24 h vs before infection",
            "decrease",
            -75.0,
            -30.0,
            "%",
            100.0 * (_svr(u24) / _svr(u0) - 1.0),
            "parker1984 (septic shock: SVR about half of normal)",
        ),
        range_check(
            n,
            "HR",
            "24 h vs before infection",
            "increase",
            20.0,
            100.0,
            "%",
            100.0 * (u24["hr_bpm"] / u0["hr_bpm"] - 1.0),
            "bone1992 (SIRS: HR > 90 /min)",
        ),
        range_check(
            n,
            "MAP",
            "at 24 h",
            "within",
            30.0,
            64.9,
            "mmHg",
            u24["map_mmhg"],
            "singer2016 (septic shock: MAP < 65 mmHg without vasopressors)",
        ),
        range_check(
            n,
            "lactate",
            "at 24 h",
            "within",
            4.0,
            15.0,
            "mmol/L",
            u24["lactate_mmol_l"],
            "rivers2001 (untreated septic shock: lactate >= 4)",
        ),
        range_check(
            n,
            "temperature",
            "at 24 h",
            "within",
            38.3,
            41.0,
            "Cel",
            u24["temp_c"],
            "bone1992 (SIRS: > 38 C)",
        ),
        range_check(
            n,
            "WBC",
            "at 24 h",
            "within",
            12.0,
            30.0,
            "10*9/L",
            u24["wbc_10e9_l"],
            "bone1992 (SIRS: > 12 x 10^9/L)",
        ),
        range_check(
            early.scenario.name,
            "MAP",
            "at 24 h (antibiotics at 1 h, fluids, norepinephrine to MAP 65)",
            "within",
            65.0,
            110.0,
            "mmHg",
            e24["map_mmhg"],
            "evans2021 (resuscitation target MAP >= 65 mmHg)",
        ),
        range_check(
            early.scenario.name,
            "lactate",
            "at 24 h",
            "within",
            0.5,
            2.0,
            "mmol/L",
            e24["lactate_mmol_l"],
            "evans2021 (lactate normalises with resuscitation)",
        ),
        range_check(
            late.scenario.name,
            "lactate",
            "24 h, late (6 h) vs early (1 h) antibiotics",
            "increase",
            0.1,
            10.0,
            "mmol/L",
            l24["lactate_mmol_l"] - e24["lactate_mmol_l"],
            "kumar2006 (each hour of antimicrobial delay worsens outcome)",
        ),
        range_check(
            late.scenario.name,
            "tissue damage D",
            "24 h, late vs early antibiotics",
            "increase",
            0.1,
            50.0,
            "Reynolds units",
            l24["infl_d"] - e24["infl_d"],
            "kumar2006",
        ),
    ]


def norepinephrine_checks(untreated: ScenarioResult) -> list[DynamicCheck]:
    """MAP after 30 min of 0.1, 0.2 and 0.3 ug/kg/min, from the untreated patient at 12 h."""
    model = ward_model()
    p, _ = ward_baseline(model, untreated.scenario.patient)
    row = _at(untreated, 12.0)
    x12 = np.array([row[n] for n in model.state_names])
    base_u = model.default_inputs()
    _, sig0 = _run(model, p, x12, base_u, 0.5)
    rises = []
    for dose in (0.1, 0.2, 0.3):
        u = base_u.copy()
        u[model.input_index("ne_rate_ug_kg_min")] = dose
        _, sig = _run(model, p, x12, u, 0.5)
        rises.append(float(sig["map_mmhg"][-1] - sig0["map_mmhg"][-1]))
    name = "septic shock at 12 h"
    first_step_pct = 100.0 * rises[0] / float(sig0["map_mmhg"][-1])
    return [
        range_check(
            name,
            "MAP",
            "norepinephrine 0.1 ug/kg/min, 30 min",
            "increase",
            3.0,
            20.0,
            "%",
            first_step_pct,
            "beloeil2005 (steps of 0.1 ug/kg/min, MAP rise capped at 20 %)",
        ),
        range_check(
            name,
            "MAP",
            "norepinephrine 0.3 ug/kg/min, 30 min",
            "increase",
            10.0,
            32.0,
            "mmHg",
            rises[2],
            "oualha2014 (Emax of MAP 12-32 mmHg)",
        ),
        range_check(
            name,
            "MAP",
            "rise at 0.3 minus rise at 0.1 ug/kg/min",
            "increase",
            0.5,
            30.0,
            "mmHg",
            rises[2] - rises[0],
            "holford1981 (graded Emax response)",
        ),
    ]


def fluid_responsiveness_checks() -> list[DynamicCheck]:
    """500 mL over 15 min in a euvolaemic and a hypovolaemic (1 L bled) reference adult."""
    model = ward_model()
    p, x = ward_baseline(model, REFERENCE_PATIENT)
    u = model.default_inputs()
    bleed = u.copy()
    bleed[model.input_index("hemorrhage_ml_s")] = 1000.0 / 1800.0
    X, _ = _run(model, p, x, bleed, 0.5)
    x_hypo = X[-1]
    X, _ = _run(model, p, x_hypo, u, 0.5)
    x_hypo = X[-1]

    def co_rise(x0: np.ndarray) -> float:
        _, s0 = _run(model, p, x0, u, 0.25)
        bolus = u.copy()
        bolus[model.input_index("infusion_ml_s")] = 500.0 / 900.0
        _, s1 = _run(model, p, x0, bolus, 0.25)
        return 100.0 * float(s1["co_l_min"][-1] / s0["co_l_min"][-1] - 1.0)

    eu, hypo = co_rise(x), co_rise(x_hypo)
    return [
        range_check(
            "500 mL bolus", "CO", "euvolaemic adult", "increase", 1.0, 25.0, "%", eu, "monnet2016"
        ),
        range_check(
            "500 mL bolus",
            "CO rise",
            "after 1 L haemorrhage minus euvolaemic",
            "increase",
            1.0,
            40.0,
            "% points",
            hypo - eu,
            "monnet2016 (preload responsiveness is greater on the steep part of the "
            "Frank-Starling curve)",
        ),
    ]


def oxygenation_checks() -> list[DynamicCheck]:
    """SpO2 at FiO2 0.15 (like 2,500 m altitude), and O2-refractoriness of a 30 % shunt."""
    model = ward_model()
    p, x = ward_baseline(model, REFERENCE_PATIENT)
    u = model.default_inputs()

    def spo2(fio2: float, shunt: float) -> float:
        pp = model.params_from({"shunt0": shunt}, base=p)
        uu = u.copy()
        uu[model.input_index("fio2")] = fio2
        _, s = _run(model, pp, x, uu, 0.25)
        return float(s["spo2_pct"][-1])

    air, hypoxic = spo2(0.21, 0.03), spo2(0.15, 0.03)
    shunt_air, shunt_o2 = spo2(0.21, 0.30), spo2(1.0, 0.30)
    return [
        range_check(
            "hypoxic gas",
            "SpO2",
            "FiO2 0.15 vs 0.21",
            "decrease",
            -12.0,
            -2.0,
            "% points",
            hypoxic - air,
            "severinghaus1979 (PaO2 ~55-60 mmHg on FiO2 0.15 -> SaO2 ~88-92 %)",
        ),
        range_check(
            "30 % shunt",
            "SpO2",
            "on FiO2 0.21",
            "within",
            75.0,
            93.0,
            "%",
            shunt_air,
            "west2012 (venous admixture lowers SaO2)",
        ),
        range_check(
            "30 % shunt",
            "SpO2",
            "FiO2 1.0 vs 0.21",
            "increase",
            0.1,
            10.0,
            "% points",
            shunt_o2 - shunt_air,
            "west2012 (a large shunt responds little to 100 % oxygen)",
        ),
    ]


def ward_verification(
    results: Mapping[str, ScenarioResult], progress: Callable[[str], None] | None = None
) -> tuple[list[RestingCheck], list[DynamicCheck]]:
    """Every ward-model check; ``results`` must hold the three septic-shock examples."""
    if progress is not None:
        progress("ward model: resting adult")
    resting, _ = _resting(ward_model())
    untreated = results["septic_shock_untreated"]
    dynamic = [
        *sepsis_checks(
            untreated,
            results["septic_shock_early_antibiotics"],
            results["septic_shock_late_antibiotics"],
        ),
        *norepinephrine_checks(untreated),
        *fluid_responsiveness_checks(),
        *oxygenation_checks(),
    ]
    return resting, dynamic
