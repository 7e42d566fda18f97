"""Acute inflammation after infection: Reynolds et al. 2006, and its effects on the body.

States (Reynolds et al. 2006 [reynolds2006], eqs. 1-4, dimensionless units of the paper,
time in hours there, seconds here):

    dP/dt  = k_pg P (1 - P/P_inf) - k_pm s_m P / (mu_m + k_mp P) - k_pn f(N) P - k_abx P
    dN/dt  = s_nr R / (mu_nr + R) - mu_n N,        R = f(k_nn N + k_np P + k_nd D)
    dD/dt  = k_dn f(N)^6 / (x_dn^6 + f(N)^6) - mu_d D
    dCA/dt = s_c + k_cn f(N + k_cnd D) / (1 + f(N + k_cnd D)) - mu_c CA
    f(V)   = V / (1 + (CA / c_inf)^2)

P: pathogen, N: activated phagocytes (pro-inflammatory), D: tissue damage, CA: slow
anti-inflammatory mediators. ``k_abx`` is the kill rate of an antibiotic (from
``vitaltwin.physiology.pharmacology``); infection is inoculated through the input
``pathogen_inoculum_per_h``. All rate constants are Reynolds et al.'s Table 1 values;
``k_pg`` = 0.6 /h is their virulent-pathogen case, in which an untreated inoculum of P = 2
persists (septic course) while early pathogen clearance resolves, and late clearance leaves a
self-sustaining damage-driven response (their "aseptic death").

Effects on the body (``signals``), through saturating activations a_N = N / (N + K_N) and
a_D = D / (D + K_D): arterial vasodilation, venodilation, capillary leak, fever, a raised
white-cell count and myocardial depression. Reynolds' variables carry no physical units, so
these gains are calibrated (see each parameter's source) to the published human septic-shock
picture: SVR about half of normal (Parker et al. 1984 [parker1984]: SVRI ~1,000-1,300 vs
~2,000 dyn s cm^-5 m^2), reversible LV depression with EF falling by 0.1-0.2 (Parker 1984),
fever 38.5-40 C, WBC 12-25 x 10^9/L, and a capillary leak that moves infused crystalloid
into the interstitium (Hahn 2010 [hahn2010]).
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import Array

from vitaltwin.model import Component, Input, Output, Parameter, State, Vars

_R06 = "Reynolds et al. 2006 [reynolds2006], Table 1"
_CAL = "calibrated to the septic-shock picture of the module docstring"
_H = 3600.0  # seconds per hour: Reynolds' rates are per hour


def _p(
    name: str,
    default: float,
    lo: float,
    hi: float,
    cv: float,
    desc: str,
    unit: str = "/h",
    source: str = _R06,
) -> Parameter:
    return Parameter(name, unit, default, lo, hi, cv, source, desc)


class Inflammation(Component):
    """Reynolds et al. 2006 four-variable acute inflammatory response, with body effects."""

    name = "inflammation"
    states: ClassVar[tuple[State, ...]] = (
        State("infl_p", "1", 0.0, "pathogen load (Reynolds units, 10^6 cells/cc)"),
        State("infl_n", "1", 0.0, "activated phagocytes N* (Reynolds units)"),
        State("infl_d", "1", 0.0, "tissue damage D (Reynolds units)"),
        State("infl_ca", "1", 0.125, "anti-inflammatory mediators C_A (rest: s_c / mu_c)"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        _p("k_pg_per_h", 0.6, 0.1, 1.5, 0.25, "pathogen growth rate (virulence)"),
        _p("p_inf", 20.0, 5.0, 50.0, 0.0, "pathogen carrying capacity", unit="1"),
        _p("k_pm_per_h", 0.6, 0.1, 2.0, 0.0, "non-specific local immune kill rate"),
        _p("s_m_per_h", 0.005, 0.001, 0.02, 0.0, "source of non-specific immune cells"),
        _p("mu_m_per_h", 0.002, 0.0005, 0.01, 0.0, "decay of non-specific immune cells"),
        _p("k_mp_per_h", 0.01, 0.001, 0.05, 0.0, "exhaustion of non-specific response by P"),
        _p("k_pn_per_h", 1.8, 0.5, 5.0, 0.2, "pathogen kill by activated phagocytes"),
        _p("k_nn", 0.01, 0.001, 0.05, 0.0, "phagocyte self-activation", unit="1"),
        _p("k_np", 0.1, 0.02, 0.5, 0.2, "phagocyte activation by pathogen", unit="1"),
        _p("k_nd", 0.02, 0.005, 0.1, 0.2, "phagocyte activation by damage", unit="1"),
        _p("s_nr_per_h", 0.08, 0.02, 0.3, 0.0, "source of resting phagocytes"),
        _p("mu_nr_per_h", 0.12, 0.03, 0.5, 0.0, "decay of resting phagocytes"),
        _p("mu_n_per_h", 0.05, 0.01, 0.2, 0.2, "decay of activated phagocytes"),
        _p("k_dn_per_h", 0.35, 0.1, 1.0, 0.2, "damage from activated phagocytes"),
        _p("x_dn", 0.06, 0.02, 0.2, 0.0, "damage half-saturation", unit="1"),
        _p("mu_d_per_h", 0.02, 0.005, 0.1, 0.2, "damage repair rate"),
        _p("c_inf", 0.28, 0.1, 1.0, 0.0, "anti-inflammatory potency scale", unit="1"),
        _p("s_c_per_h", 0.0125, 0.005, 0.05, 0.0, "anti-inflammatory source"),
        _p("k_cn_per_h", 0.04, 0.01, 0.2, 0.0, "anti-inflammatory production"),
        _p("k_cnd", 48.0, 10.0, 100.0, 0.0, "damage weight in anti-inflammation", unit="1"),
        _p("mu_c_per_h", 0.1, 0.02, 0.5, 0.0, "anti-inflammatory decay"),
        _p("infl_k_n", 0.2, 0.05, 2.0, 0.0, "N* giving half-maximal systemic effects", "1", _CAL),
        _p("infl_k_d", 2.0, 0.5, 20.0, 0.0, "damage giving half-maximal organ effects", "1", _CAL),
        _p(
            "infl_vasodilation_max",
            0.85,
            0.0,
            0.95,
            0.15,
            "largest fall of SVR (fraction)",
            "1",
            f"{_CAL} (SVR ~0.5 x normal [parker1984])",
        ),
        _p(
            "infl_venodilation_max",
            0.10,
            0.0,
            0.15,
            0.15,
            "largest rise of venous unstressed volume (fraction)",
            "1",
            _CAL,
        ),
        _p(
            "infl_leak_max",
            3.0,
            0.0,
            10.0,
            0.2,
            "largest relative rise of capillary filtration",
            "1",
            f"{_CAL} [hahn2010]",
        ),
        _p(
            "infl_myocardial_depression_max",
            0.5,
            0.0,
            0.8,
            0.2,
            "largest fall of ventricular elastance (fraction)",
            "1",
            f"{_CAL} (EF -0.1 to -0.2 [parker1984])",
        ),
        _p(
            "infl_fever_max_c",
            2.8,
            0.0,
            4.0,
            0.15,
            "largest rise of the temperature set point",
            "Cel",
            f"{_CAL} (fever 38.5-40 C)",
        ),
        _p(
            "wbc0_10e9_l",
            7.0,
            4.0,
            11.0,
            0.2,
            "white-cell count at rest",
            "10*9/L",
            "normal range 4-11 x 10^9/L",
        ),
        _p(
            "infl_wbc_gain_10e9_l",
            20.0,
            5.0,
            40.0,
            0.25,
            "WBC rise per unit of N*",
            "10*9/L",
            f"{_CAL} (WBC 12-25 x 10^9/L)",
        ),
    )
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("pathogen_inoculum_per_h", "/h", 0.0, "rate at which pathogen enters (infection)"),
    )
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("wbc_10e9_l", "10*9/L", "6690-2", "trend", "white-cell count"),
    )
    provides = (
        "infl_a_n",
        "infl_a_d",
        "infl_r_sys_factor",
        "infl_vu_sv_factor",
        "infl_e_es_factor",
        "infl_leak_factor",
        "infl_fever_c",
        "wbc_10e9_l",
    )
    requires: ClassVar[dict[str, float]] = {"abx_kill_per_h": 0.0}

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        n, d = jnp.maximum(x["infl_n"], 0.0), jnp.maximum(x["infl_d"], 0.0)
        a_n = n / (n + p["infl_k_n"])
        a_d = d / (d + p["infl_k_d"])
        return {
            "infl_a_n": a_n,
            "infl_a_d": a_d,
            "infl_r_sys_factor": 1.0 - p["infl_vasodilation_max"] * a_n,
            "infl_vu_sv_factor": 1.0 + p["infl_venodilation_max"] * a_n,
            "infl_e_es_factor": 1.0 - p["infl_myocardial_depression_max"] * a_d,
            "infl_leak_factor": 1.0 + p["infl_leak_max"] * a_n,
            "infl_fever_c": p["infl_fever_max_c"] * a_n,
            "wbc_10e9_l": p["wbc0_10e9_l"] + p["infl_wbc_gain_10e9_l"] * n,
        }

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        P, N, D, C = x["infl_p"], x["infl_n"], x["infl_d"], x["infl_ca"]
        inhib = 1.0 / (1.0 + (C / p["c_inf"]) ** 2)
        fN = N * inhib
        R = (p["k_nn"] * N + p["k_np"] * P + p["k_nd"] * D) * inhib
        g = (N + p["k_cnd"] * D) * inhib
        fN6 = fN**6
        dP = (
            p["k_pg_per_h"] * P * (1.0 - P / p["p_inf"])
            - p["k_pm_per_h"] * p["s_m_per_h"] * P / (p["mu_m_per_h"] + p["k_mp_per_h"] * P)
            - p["k_pn_per_h"] * fN * P
            - s["abx_kill_per_h"] * P
            + u["pathogen_inoculum_per_h"]
        )
        dN = p["s_nr_per_h"] * R / (p["mu_nr_per_h"] + R) - p["mu_n_per_h"] * N
        dD = p["k_dn_per_h"] * fN6 / (p["x_dn"] ** 6 + fN6) - p["mu_d_per_h"] * D
        dC = p["s_c_per_h"] + p["k_cn_per_h"] * g / (1.0 + g) - p["mu_c_per_h"] * C
        return {"infl_p": dP / _H, "infl_n": dN / _H, "infl_d": dD / _H, "infl_ca": dC / _H}
