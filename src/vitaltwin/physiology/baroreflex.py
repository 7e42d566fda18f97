"""Arterial baroreflex after Ursino 1998 [ursino1998].

Afferent pathway: the sensed pressure p~ follows arterial pressure through a first-order filter
with a derivative (rate-sensitive) term, tau_p dp~/dt = P + tau_z dP/dt - p~ (the fast
:class:`Baroreceptors` component), and the carotid sinus nerve fires at

    f_as = (f_min + f_max exp((p~ - P_n)/k_a)) / (1 + exp((p~ - P_n)/k_a)).

Efferent pathways: sympathetic f_es = f_es,inf + (f_es,0 - f_es,inf) exp(-k_es f_as); vagal
f_ev = (f_ev,0 + f_ev,inf exp((f_as - f_as,0)/k_ev)) / (1 + exp((f_as - f_as,0)/k_ev)).

Effectors: each controlled quantity theta follows its static response
sigma_theta = G_theta ln(f_es - f_es,min + 1) (sympathetic; 0 below f_es,min) or
G_Tv f_ev (vagal heart period) through first-order dynamics with time constant tau_theta.

Two adaptations, stated plainly:

* effectors are expressed as deviations from their value at p~ = P_n (the set point), so the
  circulation's parameters are the resting values and the reflex acts around them;
* Ursino's gains act on his individual vascular beds; here they are expressed relative to the
  lumped parameter (G_Rsp / R_sp0 = 0.279 and G_Rep / R_ep0 = 0.320 per unit of
  ln(f_es - f_es,min + 1), taken as 0.30 for the lumped R_sys; G_Emax,lv / E_max,lv0 = 0.199;
  G_Emax,rv / E_max,rv0 = 0.200; (G_Vu,sv + G_Vu,ev) / (V_u,sv0 + V_u,ev0) = -0.134), and the pure
  transport delays D_theta are folded into the time constants (tau + D), which keeps the mean
  delay of the step response.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import Array

from vitaltwin.model import Component, Parameter, State, Vars

_U98 = "Ursino 1998 [ursino1998], Table 2"


def _afferent(p_tilde: Array, p: Vars) -> Array:
    z = jnp.exp((p_tilde - p["baro_p_n_mmhg"]) / p["baro_k_a_mmhg"])
    return (p["baro_f_min_hz"] + p["baro_f_max_hz"] * z) / (1.0 + z)


def _sympathetic(f_as: Array, p: Vars) -> Array:
    f_inf, f_0 = p["baro_f_es_inf_hz"], p["baro_f_es_0_hz"]
    return f_inf + (f_0 - f_inf) * jnp.exp(-p["baro_k_es_s"] * f_as)


def _vagal(f_as: Array, p: Vars) -> Array:
    z = jnp.exp((f_as - p["baro_f_as_0_hz"]) / p["baro_k_ev_hz"])
    return (p["baro_f_ev_0_hz"] + p["baro_f_ev_inf_hz"] * z) / (1.0 + z)


def _drive(f_es: Array, p: Vars) -> Array:
    return jnp.log(jnp.maximum(f_es - p["baro_f_es_min_hz"], 0.0) + 1.0)


class Baroreflex(Component):
    """Ursino 1998 carotid baroreflex acting on heart period, contractility, SVR, venous tone."""

    name = "baroreflex"
    states: ClassVar[tuple[State, ...]] = (
        State("baro_rel_e_es_lv", "1", 0.0, "relative change of LV contractility"),
        State("baro_rel_e_es_rv", "1", 0.0, "relative change of RV contractility"),
        State("baro_rel_r_sys", "1", 0.0, "relative change of systemic resistance"),
        State("baro_rel_vu_sv", "1", 0.0, "relative change of venous unstressed volume"),
        State("baro_d_t_s_s", "s", 0.0, "sympathetic change of heart period"),
        State("baro_d_t_v_s", "s", 0.0, "vagal change of heart period"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "baro_gain",
            "1",
            1.0,
            0.0,
            3.0,
            0.25,
            "dimensionless scale of all effector gains (1 = Ursino 1998)",
            "baroreflex sensitivity scale; 0 opens the loop",
        ),
        Parameter(
            "baro_p_n_mmhg",
            "mm[Hg]",
            92.9,
            60.0,
            130.0,
            0.06,
            f"{_U98} (P_n = 92); 92.9 makes the closed loop rest where the calibrated "
            "open loop does (tools/calibrate_reference.py --set-point)",
            "set point of the afferent sigmoid",
        ),
        Parameter("baro_k_a_mmhg", "mm[Hg]", 11.758, 5.0, 25.0, 0.0, _U98, "afferent slope"),
        Parameter("baro_f_min_hz", "Hz", 2.52, 0.0, 10.0, 0.0, _U98, "afferent minimum rate"),
        Parameter("baro_f_max_hz", "Hz", 47.78, 20.0, 80.0, 0.0, _U98, "afferent maximum rate"),
        Parameter("baro_f_es_inf_hz", "Hz", 2.10, 0.0, 10.0, 0.0, _U98, "f_es,inf"),
        Parameter("baro_f_es_0_hz", "Hz", 16.11, 5.0, 40.0, 0.0, _U98, "f_es,0"),
        Parameter("baro_k_es_s", "s", 0.0675, 0.01, 0.2, 0.0, _U98, "k_es"),
        Parameter("baro_f_es_min_hz", "Hz", 2.66, 0.0, 10.0, 0.0, _U98, "f_es,min"),
        Parameter("baro_f_ev_0_hz", "Hz", 3.2, 0.0, 10.0, 0.0, _U98, "f_ev,0"),
        Parameter("baro_f_ev_inf_hz", "Hz", 6.3, 0.0, 20.0, 0.0, _U98, "f_ev,inf"),
        Parameter("baro_f_as_0_hz", "Hz", 25.0, 5.0, 50.0, 0.0, _U98, "f_as,0"),
        Parameter("baro_k_ev_hz", "Hz", 7.06, 1.0, 20.0, 0.0, _U98, "k_ev"),
        Parameter(
            "baro_g_e_lv",
            "1",
            0.199,
            0.0,
            1.0,
            0.0,
            f"{_U98}: G_Emax,lv / E_max,lv0 = 0.475 / 2.392",
            "relative LV gain",
        ),
        Parameter(
            "baro_g_e_rv",
            "1",
            0.200,
            0.0,
            1.0,
            0.0,
            f"{_U98}: G_Emax,rv / E_max,rv0 = 0.282 / 1.412",
            "relative RV gain",
        ),
        Parameter(
            "baro_g_r_sys",
            "1",
            0.30,
            0.0,
            2.0,
            0.0,
            f"{_U98}: G_Rsp/R_sp0 = 0.279, G_Rep/R_ep0 = 0.320",
            "relative SVR gain",
        ),
        Parameter(
            "baro_g_vu_sv",
            "1",
            -0.134,
            -1.0,
            0.0,
            0.0,
            f"{_U98}: (G_Vu,sv + G_Vu,ev)/(V_u,sv0 + V_u,ev0) = -397.9/2972.4",
            "relative venous unstressed-volume gain",
        ),
        Parameter(
            "baro_g_t_s_s",
            "s",
            -0.13,
            -1.0,
            0.0,
            0.0,
            f"{_U98}: G_Ts",
            "sympathetic heart-period gain",
        ),
        Parameter(
            "baro_g_t_v_s_hz",
            "s/Hz",
            0.09,
            0.0,
            1.0,
            0.0,
            f"{_U98}: G_Tv",
            "vagal heart-period gain, per Hz of vagal firing",
        ),
        Parameter(
            "baro_tau_e_s",
            "s",
            10.0,
            1.0,
            60.0,
            0.0,
            f"{_U98}: tau 8 s + D 2 s",
            "contractility effector time constant",
        ),
        Parameter(
            "baro_tau_r_s",
            "s",
            8.0,
            1.0,
            60.0,
            0.0,
            f"{_U98}: tau 6 s + D 2 s",
            "resistance effector time constant",
        ),
        Parameter(
            "baro_tau_v_s",
            "s",
            25.0,
            1.0,
            120.0,
            0.0,
            f"{_U98}: tau 20 s + D 5 s",
            "venous tone effector time constant",
        ),
        Parameter(
            "baro_tau_t_s_s",
            "s",
            4.0,
            0.5,
            30.0,
            0.0,
            f"{_U98}: tau 2 s + D 2 s",
            "sympathetic heart-period time constant",
        ),
        Parameter(
            "baro_tau_t_v_s",
            "s",
            1.7,
            0.2,
            10.0,
            0.0,
            f"{_U98}: tau 1.5 s + D 0.2 s",
            "vagal heart-period time constant",
        ),
    )
    provides = (
        "baro_d_heart_period_s",
        "baro_rel_e_es_lv",
        "baro_rel_e_es_rv",
        "baro_rel_r_sys",
        "baro_rel_vu_sv",
    )
    requires: ClassVar[dict[str, float]] = {}
    slow = True

    def derived(self, p: Vars) -> dict[str, Array]:
        f_as_ref = _afferent(p["baro_p_n_mmhg"], p)
        return {
            "baro_drive_ref": _drive(_sympathetic(f_as_ref, p), p),
            "baro_f_ev_ref_hz": _vagal(f_as_ref, p),
        }

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        return {
            "baro_d_heart_period_s": x["baro_d_t_s_s"] + x["baro_d_t_v_s"],
            "baro_rel_e_es_lv": x["baro_rel_e_es_lv"],
            "baro_rel_e_es_rv": x["baro_rel_e_es_rv"],
            "baro_rel_r_sys": x["baro_rel_r_sys"],
            "baro_rel_vu_sv": x["baro_rel_vu_sv"],
        }

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        f_as = _afferent(x["baro_p_tilde_mmhg"], p)
        d_sym = p["baro_gain"] * (_drive(_sympathetic(f_as, p), p) - p["baro_drive_ref"])
        d_vag = p["baro_gain"] * (_vagal(f_as, p) - p["baro_f_ev_ref_hz"])

        def lag(target: Array, state: str, tau: str) -> Array:
            return (target - x[state]) / p[tau]

        return {
            "baro_rel_e_es_lv": lag(p["baro_g_e_lv"] * d_sym, "baro_rel_e_es_lv", "baro_tau_e_s"),
            "baro_rel_e_es_rv": lag(p["baro_g_e_rv"] * d_sym, "baro_rel_e_es_rv", "baro_tau_e_s"),
            "baro_rel_r_sys": lag(p["baro_g_r_sys"] * d_sym, "baro_rel_r_sys", "baro_tau_r_s"),
            "baro_rel_vu_sv": lag(p["baro_g_vu_sv"] * d_sym, "baro_rel_vu_sv", "baro_tau_v_s"),
            "baro_d_t_s_s": lag(p["baro_g_t_s_s"] * d_sym, "baro_d_t_s_s", "baro_tau_t_s_s"),
            "baro_d_t_v_s": lag(p["baro_g_t_v_s_hz"] * d_vag, "baro_d_t_v_s", "baro_tau_t_v_s"),
        }


class Baroreceptors(Component):
    """Ursino 1998's afferent filter: the pressure the carotid baroreceptors sense.

    tau_p dp~/dt = P + tau_z dP/dt - p~. It is linear and follows the pulsatile pressure (gain
    tau_z / tau_p ~ 3 at heart rate), so it is integrated with the fast states; the effectors
    of :class:`Baroreflex`, slow, read it.
    """

    name = "baroreceptors"
    states: ClassVar[tuple[State, ...]] = (
        State("baro_p_tilde_mmhg", "mm[Hg]", 98.9, "pressure sensed by the baroreceptors"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("baro_tau_p_s", "s", 2.076, 0.5, 10.0, 0.0, _U98, "afferent filter time"),
        Parameter("baro_tau_z_s", "s", 6.37, 0.0, 20.0, 0.0, _U98, "afferent rate sensitivity"),
    )
    provides = ()
    requires: ClassVar[dict[str, float]] = {}

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        return {}

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        drive = s["p_sa_mmhg"] + p["baro_tau_z_s"] * s["dp_sa_dt_mmhg_s"]
        return {"baro_p_tilde_mmhg": (drive - x["baro_p_tilde_mmhg"]) / p["baro_tau_p_s"]}
