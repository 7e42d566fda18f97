"""Beat-resolved closed-loop circulation with time-varying-elastance ventricles.

Structure (Smith et al. 2004, "minimal haemodynamic system model" [smith2004], without septal
interaction and valve inertance): six compliant chambers in series — left ventricle (LV),
systemic arteries (SA), systemic veins (SV, whose pressure is the central venous pressure),
right ventricle (RV), pulmonary arteries (PA) and pulmonary veins (PV) — joined by the systemic
and pulmonary resistances and four valves (mitral, aortic, tricuspid, pulmonary) modelled as
ideal diodes with a forward resistance.

Ventricles follow the time-varying elastance concept (Suga et al. 1973 [suga1973]) in the
form used by Smith et al. 2004 and Ursino 1998 [ursino1998]: pressure is a blend of an
end-systolic linear pressure–volume relation and an exponential end-diastolic relation,

    P(V, t) = e(t) * E_es * (V - V_d) + (1 - e(t)) * P_0 * (exp(lambda * (V - V_0)) - 1),

with activation e(t) in [0, 1]. Ursino 1998 uses e = sin^2(pi * tau / T_sys) over systole
(tau: time since the beat began) and T_sys = T_sys0 - k_sys / T (T: heart period); we use the
polynomial 16 x^2 (1 - x)^2 with x = tau / T_sys, which has the same support, peak and zero end
slopes (the largest difference from sin^2 is 0.06 at x = 0.25) and avoids a transcendental call
in the innermost loop.

Vessels are linear compliances, P = (V - V_u) / C. The cardiac phase phi (cycles) is a state
with d(phi)/dt = 1 / T, so heart rate changes from the baroreflex are continuous.

Parameter values are those of the reference adult (male, 40 y, 70 kg, 175 cm), taken from
Smith et al. 2004 and Ursino 1998 and then calibrated so the resting state matches the
textbook adult of [guyton] (see ``tools/calibrate_reference.py`` and ``vitaltwin verify``);
each parameter's ``source`` says which. Hemorrhage and infusion act on the systemic veins.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import Array

from vitaltwin.model import Component, Input, Output, Parameter, State, Vars

_S04 = "Smith et al. 2004 [smith2004], Table 1"
_U98 = "Ursino 1998 [ursino1998], Table 1"
_CAL = "calibrated to the reference adult of [guyton] (tools/calibrate_reference.py)"


def activation(x: Array) -> Array:
    """Ventricular activation e in [0, 1] at fraction ``x`` of systole (0 outside [0, 1)).

    Polynomial stand-in for Ursino 1998's sin^2(pi x) [ursino1998]: 16 x^2 (1 - x)^2.
    """
    xc = jnp.clip(x, 0.0, 1.0)
    w = xc * (1.0 - xc)
    return 16.0 * w * w


def softplus(x: Array, width: float) -> Array:
    """Smooth max(x, 0) with a transition of about ``width``."""
    return width * jnp.logaddexp(x / width, 0.0)


class Circulation(Component):
    """Closed-loop six-chamber circulation with elastance ventricles and four valves."""

    name = "circulation"
    states: ClassVar[tuple[State, ...]] = (
        State("v_lv_ml", "mL", 119.7, "left ventricular volume"),
        State("v_sa_ml", "mL", 730.2, "systemic arterial volume"),
        State("v_sv_ml", "mL", 3437.4, "systemic venous volume"),
        State("v_rv_ml", "mL", 105.1, "right ventricular volume"),
        State("v_pa_ml", "mL", 159.4, "pulmonary arterial volume"),
        State("v_pv_ml", "mL", 271.2, "pulmonary venous volume"),
        State("phase_cycles", "1", 0.0, "cardiac phase; the integer part counts beats"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "hr0_bpm",
            "/min",
            72.0,
            30.0,
            180.0,
            0.12,
            "[guyton] ch. 9",
            "heart rate at rest, before baroreflex deviations",
        ),
        Parameter(
            "hr_max_bpm",
            "/min",
            180.0,
            120.0,
            220.0,
            0.05,
            "Tanaka et al. 2001 [tanaka2001]: 208 - 0.7 * age (40 y)",
            "highest heart rate the reflexes can drive (age-predicted maximum)",
        ),
        Parameter(
            "t_sys0_s",
            "s",
            0.5,
            0.2,
            0.7,
            0.05,
            _U98,
            "systolic duration at zero heart rate (T_sys = T_sys0 - k_sys/T)",
        ),
        Parameter(
            "k_sys_s2", "s2", 0.075, 0.0, 0.2, 0.0, _U98, "shortening of systole with heart rate"
        ),
        Parameter(
            "e_es_lv_mmhg_ml",
            "mm[Hg]/mL",
            2.382,
            0.3,
            8.0,
            0.2,
            f"{_S04} (2.88); {_CAL}",
            "LV end-systolic elastance (contractility)",
        ),
        Parameter(
            "v_d_lv_ml", "mL", 0.0, -20.0, 100.0, 0.0, _S04, "LV end-systolic volume intercept"
        ),
        Parameter(
            "p0_lv_mmhg",
            "mm[Hg]",
            0.12,
            0.01,
            2.0,
            0.15,
            _S04,
            "LV end-diastolic pressure-volume scale",
        ),
        Parameter(
            "lambda_lv_per_ml",
            "/mL",
            0.03474,
            0.005,
            0.08,
            0.1,
            f"{_S04} (0.033); {_CAL}",
            "LV end-diastolic stiffness exponent",
        ),
        Parameter("v0_lv_ml", "mL", 0.0, -50.0, 100.0, 0.0, _S04, "LV end-diastolic volume offset"),
        Parameter(
            "e_es_rv_mmhg_ml", "mm[Hg]/mL", 0.585, 0.1, 3.0, 0.2, _S04, "RV end-systolic elastance"
        ),
        Parameter(
            "v_d_rv_ml", "mL", 0.0, -20.0, 100.0, 0.0, _S04, "RV end-systolic volume intercept"
        ),
        Parameter(
            "p0_rv_mmhg",
            "mm[Hg]",
            0.3889,
            0.01,
            2.0,
            0.15,
            f"{_S04} (0.2157); {_CAL}",
            "RV end-diastolic pressure-volume scale",
        ),
        Parameter(
            "lambda_rv_per_ml",
            "/mL",
            0.023,
            0.005,
            0.08,
            0.1,
            _S04,
            "RV end-diastolic stiffness exponent",
        ),
        Parameter("v0_rv_ml", "mL", 0.0, -50.0, 100.0, 0.0, _S04, "RV end-diastolic volume offset"),
        Parameter(
            "c_sa_ml_mmhg",
            "mL/mm[Hg]",
            1.465,
            0.3,
            4.0,
            0.2,
            f"total arterial compliance [stergiopulos1996]; {_CAL}",
            "systemic arterial compliance",
        ),
        Parameter(
            "vu_sa_ml",
            "mL",
            610.0,
            200.0,
            1200.0,
            0.1,
            f"{_U98}: V_u,sa + V_u,sp + V_u,ep",
            "systemic arterial unstressed volume",
        ),
        Parameter(
            "c_sv_ml_mmhg",
            "mL/mm[Hg]",
            100.0,
            30.0,
            300.0,
            0.2,
            f"{_U98}: C_sv + C_ev (111); {_CAL}",
            "systemic venous compliance",
        ),
        Parameter(
            "vu_sv_ml",
            "mL",
            3039.0,
            1500.0,
            4500.0,
            0.1,
            f"{_U98}: V_u,sv + V_u,ev; {_CAL}; the initial volumes sum to the "
            "reference adult's blood volume [nadler1962]",
            "systemic venous unstressed volume",
        ),
        Parameter(
            "c_pa_ml_mmhg",
            "mL/mm[Hg]",
            4.0,
            1.0,
            12.0,
            0.2,
            f"{_U98}: C_pa + C_pp (6.6); {_CAL}",
            "pulmonary arterial compliance",
        ),
        Parameter(
            "vu_pa_ml",
            "mL",
            123.0,
            0.0,
            300.0,
            0.1,
            f"{_U98}: V_u,pa + V_u,pp",
            "pulmonary arterial unstressed volume",
        ),
        Parameter(
            "c_pv_ml_mmhg",
            "mL/mm[Hg]",
            20.0,
            5.0,
            60.0,
            0.2,
            f"{_U98}: C_pv (25.4); {_CAL}",
            "pulmonary venous compliance",
        ),
        Parameter(
            "vu_pv_ml",
            "mL",
            120.0,
            0.0,
            300.0,
            0.1,
            f"{_U98}: V_u,pv",
            "pulmonary venous unstressed volume",
        ),
        Parameter(
            "r_sys_mmhg_s_ml",
            "mm[Hg].s/mL",
            1.128,
            0.3,
            4.0,
            0.2,
            f"{_S04} (1.089); {_CAL}",
            "systemic vascular resistance",
        ),
        Parameter(
            "r_pul_mmhg_s_ml",
            "mm[Hg].s/mL",
            0.07254,
            0.02,
            0.6,
            0.2,
            f"{_S04} (0.155); {_CAL}",
            "pulmonary vascular resistance",
        ),
        Parameter(
            "r_mv_mmhg_s_ml",
            "mm[Hg].s/mL",
            0.0025,
            0.001,
            0.5,
            0.1,
            "Ursino 1998 [ursino1998], Table 1: R_la (Smith 2004: 0.0158)",
            "mitral valve forward resistance",
        ),
        Parameter(
            "r_av_mmhg_s_ml",
            "mm[Hg].s/mL",
            0.018,
            0.002,
            0.5,
            0.1,
            _S04,
            "aortic valve forward resistance",
        ),
        Parameter(
            "r_tv_mmhg_s_ml",
            "mm[Hg].s/mL",
            0.0025,
            0.001,
            0.5,
            0.1,
            "Ursino 1998 [ursino1998], Table 1: R_ra (Smith 2004: 0.0237)",
            "tricuspid valve forward resistance",
        ),
        Parameter(
            "r_pv_mmhg_s_ml",
            "mm[Hg].s/mL",
            0.0055,
            0.001,
            0.5,
            0.1,
            _S04,
            "pulmonary valve forward resistance",
        ),
    )
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("hemorrhage_ml_s", "mL/s", 0.0, "blood loss rate, taken from the systemic veins"),
        Input("infusion_ml_s", "mL/s", 0.0, "IV fluid rate, given into the systemic veins"),
    )
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("p_sa_mmhg", "mm[Hg]", None, "waveform", "arterial pressure waveform"),
        Output("p_lv_mmhg", "mm[Hg]", None, "waveform", "left ventricular pressure"),
        Output("p_sv_mmhg", "mm[Hg]", "60985-9", "waveform", "central venous pressure"),
        Output("p_pa_mmhg", "mm[Hg]", None, "waveform", "pulmonary arterial pressure"),
        Output("hr_bpm", "/min", "8867-4", "beat", "heart rate"),
        Output("sbp_mmhg", "mm[Hg]", "8480-6", "beat", "systolic arterial pressure"),
        Output("dbp_mmhg", "mm[Hg]", "8462-4", "beat", "diastolic arterial pressure"),
        Output("map_mmhg", "mm[Hg]", "8478-0", "beat", "mean arterial pressure"),
        Output("sv_ml", "mL", None, "beat", "left ventricular stroke volume"),
        Output("co_l_min", "L/min", "8741-1", "beat", "left ventricular cardiac output"),
        Output("ef", "1", "10230-1", "beat", "left ventricular ejection fraction"),
        Output("edv_ml", "mL", "75988-6", "beat", "left ventricular end-diastolic volume"),
        Output("esv_ml", "mL", "75989-4", "beat", "left ventricular end-systolic volume"),
        Output("cvp_mmhg", "mm[Hg]", "60985-9", "beat", "central venous pressure, beat mean"),
        Output("mpap_mmhg", "mm[Hg]", "8414-5", "beat", "mean pulmonary arterial pressure"),
    )
    provides = (
        "heart_period_s",
        "activation",
        "p_lv_mmhg",
        "p_sa_mmhg",
        "p_sv_mmhg",
        "p_rv_mmhg",
        "p_pa_mmhg",
        "p_pv_mmhg",
        "q_mv_ml_s",
        "q_av_ml_s",
        "q_sys_ml_s",
        "q_tv_ml_s",
        "q_pv_ml_s",
        "q_pul_ml_s",
        "dp_sa_dt_mmhg_s",
        "e_es_lv_eff_mmhg_ml",
        "r_sys_eff_mmhg_s_ml",
        "vu_sv_eff_ml",
    )
    requires: ClassVar[dict[str, float]] = {
        "baro_d_heart_period_s": 0.0,
        "baro_rel_e_es_lv": 0.0,
        "baro_rel_e_es_rv": 0.0,
        "baro_rel_r_sys": 0.0,
        "baro_rel_vu_sv": 0.0,
        "cp_d_r_sys_mmhg_s_ml": 0.0,
        "cp_d_vu_sv_ml": 0.0,
    }

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        # The reflex-shortened period cannot fall below that of the age-predicted maximum
        # heart rate (smooth floor, width 5 ms): an additive reflex on a fast intrinsic rate
        # would otherwise shorten the period without bound.
        period_min = 60.0 / p["hr_max_bpm"]
        period = period_min + softplus(
            60.0 / p["hr0_bpm"] + s["baro_d_heart_period_s"] - period_min, 0.005
        )
        t_sys = p["t_sys0_s"] - p["k_sys_s2"] / period
        phi = x["phase_cycles"]
        tau = (phi - jnp.floor(phi)) * period
        e = activation(tau / t_sys)

        e_lv = p["e_es_lv_mmhg_ml"] * (1.0 + s["baro_rel_e_es_lv"])
        e_rv = p["e_es_rv_mmhg_ml"] * (1.0 + s["baro_rel_e_es_rv"])
        r_sys = p["r_sys_mmhg_s_ml"] * (1.0 + s["baro_rel_r_sys"]) + s["cp_d_r_sys_mmhg_s_ml"]
        vu_sv = p["vu_sv_ml"] * (1.0 + s["baro_rel_vu_sv"]) + s["cp_d_vu_sv_ml"]

        v_lv, v_rv = x["v_lv_ml"], x["v_rv_ml"]
        p_lv = e * e_lv * (v_lv - p["v_d_lv_ml"]) + (1.0 - e) * p["p0_lv_mmhg"] * (
            jnp.exp(p["lambda_lv_per_ml"] * (v_lv - p["v0_lv_ml"])) - 1.0
        )
        p_rv = e * e_rv * (v_rv - p["v_d_rv_ml"]) + (1.0 - e) * p["p0_rv_mmhg"] * (
            jnp.exp(p["lambda_rv_per_ml"] * (v_rv - p["v0_rv_ml"])) - 1.0
        )
        p_sa = (x["v_sa_ml"] - p["vu_sa_ml"]) / p["c_sa_ml_mmhg"]
        p_sv = (x["v_sv_ml"] - vu_sv) / p["c_sv_ml_mmhg"]
        p_pa = (x["v_pa_ml"] - p["vu_pa_ml"]) / p["c_pa_ml_mmhg"]
        p_pv = (x["v_pv_ml"] - p["vu_pv_ml"]) / p["c_pv_ml_mmhg"]

        q_mv = jnp.maximum(p_pv - p_lv, 0.0) / p["r_mv_mmhg_s_ml"]
        q_av = jnp.maximum(p_lv - p_sa, 0.0) / p["r_av_mmhg_s_ml"]
        q_sys = (p_sa - p_sv) / r_sys
        q_tv = jnp.maximum(p_sv - p_rv, 0.0) / p["r_tv_mmhg_s_ml"]
        q_pv = jnp.maximum(p_rv - p_pa, 0.0) / p["r_pv_mmhg_s_ml"]
        q_pul = (p_pa - p_pv) / p["r_pul_mmhg_s_ml"]
        return {
            "heart_period_s": period,
            "activation": e,
            "p_lv_mmhg": p_lv,
            "p_sa_mmhg": p_sa,
            "p_sv_mmhg": p_sv,
            "p_rv_mmhg": p_rv,
            "p_pa_mmhg": p_pa,
            "p_pv_mmhg": p_pv,
            "q_mv_ml_s": q_mv,
            "q_av_ml_s": q_av,
            "q_sys_ml_s": q_sys,
            "q_tv_ml_s": q_tv,
            "q_pv_ml_s": q_pv,
            "q_pul_ml_s": q_pul,
            "dp_sa_dt_mmhg_s": (q_av - q_sys) / p["c_sa_ml_mmhg"],
            "e_es_lv_eff_mmhg_ml": e_lv,
            "r_sys_eff_mmhg_s_ml": r_sys,
            "vu_sv_eff_ml": vu_sv,
        }

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        net_external = u["infusion_ml_s"] - u["hemorrhage_ml_s"]
        return {
            "v_lv_ml": s["q_mv_ml_s"] - s["q_av_ml_s"],
            "v_sa_ml": s["q_av_ml_s"] - s["q_sys_ml_s"],
            "v_sv_ml": s["q_sys_ml_s"] - s["q_tv_ml_s"] + net_external,
            "v_rv_ml": s["q_tv_ml_s"] - s["q_pv_ml_s"],
            "v_pa_ml": s["q_pv_ml_s"] - s["q_pul_ml_s"],
            "v_pv_ml": s["q_pul_ml_s"] - s["q_mv_ml_s"],
            "phase_cycles": 1.0 / s["heart_period_s"],
        }


VOLUME_STATES: tuple[str, ...] = ("v_lv_ml", "v_sa_ml", "v_sv_ml", "v_rv_ml", "v_pa_ml", "v_pv_ml")
"""States whose sum is the total blood volume (mL)."""
