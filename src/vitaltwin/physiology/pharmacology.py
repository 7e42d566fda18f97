"""Drugs of the septic-shock bundle: norepinephrine and an antibiotic (meropenem).

Norepinephrine. One-compartment pharmacokinetics with linear clearance, as found in septic
shock by Beloeil et al. 2005 [beloeil2005] (NONMEM, 12 septic and 11 trauma patients): CL
from 3 L/min (SAPS II 20) to 0.9 L/min (SAPS II 60), half-life 2 to 6.8 min. We take CL =
2.0 L/min and V = 8.7 L (half-life 3 min), for a 70 kg adult, scaled linearly with weight
(Beloeil found no weight effect within their range; the scaling keeps dose per kg meaningful).
Concentrations are of exogenous drug above the endogenous level, in ng/mL:

    V dC/dt = R_inf - CL C        (R_inf in ug/min; C in ug/L = ng/mL)

Effects are sigmoid Emax functions of C (Holford & Sheiner 1981 [holford1981]) on the
drivers of the circulation: systemic resistance (alpha-1), ventricular elastance (beta-1),
intrinsic heart rate (beta-1) and venous unstressed volume (alpha-1 venoconstriction).
EC50 and Emax are calibrated so the MAP response to 0.1-0.3 ug/kg/min in septic shock falls in
the published range (Beloeil 2005 steps of 0.1 ug/kg/min raise MAP by up to 20 %; Oualha et al.
2014 [oualha2014] Emax of MAP 12-32 mmHg).

Meropenem. One-compartment pharmacokinetics in critically ill adults: V = 0.3 L/kg and CL =
0.15 L/kg/h (half-life about 1.4 h), the typical values of population studies in sepsis
(e.g. Roberts et al. 2009 [roberts2009]: V ~22 L, CL ~10 L/h). Killing of the pathogen of
:mod:`vitaltwin.physiology.inflammation` by a Hill function of the free concentration:

    k_abx = k_max C^h / (EC50^h + C^h)

with EC50 equal to the MIC (2 mg/L, the EUCAST susceptible breakpoint for
Enterobacterales), h = 2 and k_max = 2.0 /h, of the order of the maximal kill rates of
beta-lactams in the pharmacodynamic function of Regoes et al. 2004 [regoes2004].
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import Array

from vitaltwin.model import Component, Input, Output, Parameter, State, Vars

_B05 = "Beloeil et al. 2005 [beloeil2005]"
_NE_CAL = "calibrated to the norepinephrine dose-MAP range of the module docstring"


def emax(c: Array, e_max: float | Array, ec50: float | Array, hill: float | Array = 1.0) -> Array:
    """Sigmoid Emax model [holford1981]: e_max * c^h / (ec50^h + c^h), c >= 0."""
    ch = jnp.maximum(c, 0.0) ** hill
    return e_max * ch / (ec50**hill + ch)


class Norepinephrine(Component):
    """Norepinephrine infusion: PK (Beloeil 2005) and Emax effects on the circulation."""

    name = "norepinephrine"
    states: ClassVar[tuple[State, ...]] = (
        State("ne_c_ng_ml", "ng/mL", 0.0, "plasma norepinephrine above endogenous"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "ne_cl_l_min",
            "L/min",
            2.0,
            0.5,
            5.0,
            0.4,
            f"{_B05}: 0.9-3 L/min",
            "norepinephrine clearance (70 kg)",
        ),
        Parameter(
            "ne_v_l",
            "L",
            8.7,
            3.0,
            20.0,
            0.3,
            f"{_B05}: V = CL x t1/2 / ln 2, t1/2 3 min",
            "norepinephrine volume of distribution (70 kg)",
        ),
        Parameter(
            "ne_ec50_ng_ml",
            "ng/mL",
            20.0,
            1.0,
            40.0,
            0.4,
            _NE_CAL,
            "concentration of half-maximal vascular effect",
        ),
        Parameter(
            "ne_emax_r_sys",
            "1",
            2.0,
            0.2,
            4.0,
            0.3,
            _NE_CAL,
            "largest relative rise of systemic resistance",
        ),
        Parameter(
            "ne_emax_e_es",
            "1",
            0.35,
            0.0,
            1.0,
            0.3,
            _NE_CAL,
            "largest relative rise of ventricular elastance",
        ),
        Parameter(
            "ne_emax_hr_bpm",
            "/min",
            12.0,
            0.0,
            40.0,
            0.3,
            _NE_CAL,
            "largest rise of intrinsic heart rate",
        ),
        Parameter(
            "ne_emax_vu_sv",
            "1",
            0.05,
            0.0,
            0.15,
            0.3,
            _NE_CAL,
            "largest relative fall of venous unstressed volume",
        ),
    )
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("ne_rate_ug_kg_min", "ug/kg/min", 0.0, "norepinephrine infusion rate"),
    )
    outputs: ClassVar[tuple[Output, ...]] = ()
    provides = (
        "ne_r_sys_factor",
        "ne_e_es_factor",
        "ne_d_hr0_bpm",
        "ne_vu_sv_factor",
        "ne_dose_ug_kg_min",
    )
    requires: ClassVar[dict[str, float]] = {"ne_titrated_ug_kg_min": 0.0}

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        c = x["ne_c_ng_ml"]
        ec50 = p["ne_ec50_ng_ml"]
        return {
            "ne_r_sys_factor": 1.0 + emax(c, p["ne_emax_r_sys"], ec50),
            "ne_e_es_factor": 1.0 + emax(c, p["ne_emax_e_es"], ec50),
            "ne_d_hr0_bpm": emax(c, p["ne_emax_hr_bpm"], ec50),
            "ne_vu_sv_factor": 1.0 - emax(c, p["ne_emax_vu_sv"], ec50),
            "ne_dose_ug_kg_min": u["ne_rate_ug_kg_min"] + s["ne_titrated_ug_kg_min"],
        }

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        w = p["weight_kg"] / 70.0
        rate_ug_min = s["ne_dose_ug_kg_min"] * p["weight_kg"]
        dc = (rate_ug_min - p["ne_cl_l_min"] * w * x["ne_c_ng_ml"]) / (p["ne_v_l"] * w)
        return {"ne_c_ng_ml": dc / 60.0}


class Antibiotic(Component):
    """Meropenem: one-compartment PK and a Hill kill rate on the pathogen."""

    name = "antibiotic"
    states: ClassVar[tuple[State, ...]] = (
        State("abx_c_mg_l", "mg/L", 0.0, "plasma meropenem concentration"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "abx_v_l_kg",
            "L/kg",
            0.3,
            0.15,
            0.8,
            0.3,
            "[roberts2009]",
            "meropenem volume of distribution",
        ),
        Parameter(
            "abx_cl_l_kg_h", "L/kg/h", 0.15, 0.03, 0.4, 0.35, "[roberts2009]", "meropenem clearance"
        ),
        Parameter(
            "abx_mic_mg_l",
            "mg/L",
            2.0,
            0.06,
            16.0,
            0.0,
            "EUCAST breakpoint (S <= 2 mg/L, Enterobacterales)",
            "minimal inhibitory concentration of the pathogen; EC50 of killing",
        ),
        Parameter(
            "abx_kmax_per_h",
            "/h",
            2.0,
            0.2,
            6.0,
            0.3,
            "[regoes2004] (order of psi_max)",
            "maximal kill rate",
        ),
        Parameter("abx_hill", "1", 2.0, 0.5, 5.0, 0.0, "[regoes2004]", "Hill coefficient"),
    )
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("abx_rate_mg_h", "mg/h", 0.0, "meropenem infusion rate"),
    )
    outputs: ClassVar[tuple[Output, ...]] = ()
    provides = ("abx_kill_per_h",)
    requires: ClassVar[dict[str, float]] = {}

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        c = x["abx_c_mg_l"]
        return {"abx_kill_per_h": emax(c, p["abx_kmax_per_h"], p["abx_mic_mg_l"], p["abx_hill"])}

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        v = p["abx_v_l_kg"] * p["weight_kg"]
        dc = (u["abx_rate_mg_h"] - p["abx_cl_l_kg_h"] * p["weight_kg"] * x["abx_c_mg_l"]) / v
        return {"abx_c_mg_l": dc / 3600.0}
