"""Cardiopulmonary (low-pressure) reflex after Heldt et al. 2002 [heldt2002].

Stretch receptors in the atria and great veins sense central venous pressure; a fall in CVP
(haemorrhage, orthostasis) raises sympathetic outflow to the veins and arterioles before arterial
pressure falls, which is why a conscious human loses 1 L of blood with little change in MAP
(Johnson et al. 2014 [johnson2014]). Heldt et al. 2002 (Table 4) model it as linear effects of
the right-atrial pressure deviation on the unstressed volumes of the venous beds (summing to
about 110 mL/mmHg) and on the arteriolar resistances (-0.05 PRU/mmHg per bed); the CVSim
teaching model by the same group lumps these into 100 mL/mmHg and 0.05 PRU/mmHg [cvsim2010].

Here: the sensed CVP p~_cp follows the beat-to-beat CVP through a first-order filter
(tau_sense), and the effectors follow their static responses

    dVu_sv = G_V * clip(p~_cp - P_set, -d_max, d_max)
    dR_sys = G_R * clip(p~_cp - P_set, -d_max, d_max)

through first-order lags (the venous and resistance time constants of the arterial baroreflex,
Ursino 1998 [ursino1998]). The deviation is limited to +/- d_max (an assumption of this model:
the receptors' linear range) so large volume loads do not produce unbounded venodilation.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import Array

from vitaltwin.model import Component, Parameter, State, Vars

_H02 = "Heldt et al. 2002 [heldt2002], Table 4; CVSim [cvsim2010]"


class CardiopulmonaryReflex(Component):
    """Low-pressure reflex: CVP deviations act on venous unstressed volume and SVR."""

    name = "cardiopulmonary"
    states: ClassVar[tuple[State, ...]] = (
        State("cp_p_tilde_mmhg", "mm[Hg]", 4.0, "central venous pressure sensed by the reflex"),
        State("cp_d_vu_sv_ml", "mL", 0.0, "reflex change of venous unstressed volume"),
        State("cp_d_r_sys_mmhg_s_ml", "mm[Hg].s/mL", 0.0, "reflex change of systemic resistance"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "cp_gain",
            "1",
            1.0,
            0.0,
            3.0,
            0.25,
            "dimensionless scale (1 = Heldt 2002)",
            "cardiopulmonary reflex sensitivity scale; 0 opens the loop",
        ),
        Parameter(
            "cp_p_set_mmhg",
            "mm[Hg]",
            4.0,
            0.0,
            15.0,
            0.1,
            "the reference adult's resting CVP in this model [magder2006]",
            "set point of the sensed central venous pressure",
        ),
        Parameter(
            "cp_g_vu_ml_mmhg",
            "mL/mm[Hg]",
            100.0,
            0.0,
            300.0,
            0.0,
            _H02,
            "venous unstressed-volume gain per mmHg of CVP deviation",
        ),
        Parameter(
            "cp_g_r_s_ml",
            "s/mL",
            -0.05,
            -0.5,
            0.0,
            0.0,
            _H02,
            "systemic resistance gain (mmHg.s/mL per mmHg of CVP deviation)",
        ),
        Parameter(
            "cp_d_max_mmhg",
            "mm[Hg]",
            5.0,
            1.0,
            20.0,
            0.0,
            "assumption of this model (receptor linear range)",
            "largest CVP deviation the reflex responds to",
        ),
        Parameter(
            "cp_tau_sense_s",
            "s",
            2.0,
            0.2,
            20.0,
            0.0,
            "beat averaging of CVP; Ursino 1998 [ursino1998] afferent tau_p = 2.076 s",
            "sensing time constant",
        ),
        Parameter(
            "cp_tau_v_s",
            "s",
            25.0,
            1.0,
            120.0,
            0.0,
            "Ursino 1998 [ursino1998]: venous effector tau 20 s + D 5 s",
            "venous effector time constant",
        ),
        Parameter(
            "cp_tau_r_s",
            "s",
            8.0,
            1.0,
            60.0,
            0.0,
            "Ursino 1998 [ursino1998]: resistance effector tau 6 s + D 2 s",
            "resistance effector time constant",
        ),
    )
    provides = ("cp_d_vu_sv_ml", "cp_d_r_sys_mmhg_s_ml")
    requires: ClassVar[dict[str, float]] = {}
    slow = True

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        return {
            "cp_d_vu_sv_ml": x["cp_d_vu_sv_ml"],
            "cp_d_r_sys_mmhg_s_ml": x["cp_d_r_sys_mmhg_s_ml"],
        }

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        dev = jnp.clip(
            x["cp_p_tilde_mmhg"] - p["cp_p_set_mmhg"], -p["cp_d_max_mmhg"], p["cp_d_max_mmhg"]
        )
        g = p["cp_gain"]
        return {
            "cp_p_tilde_mmhg": (s["p_sv_mmhg"] - x["cp_p_tilde_mmhg"]) / p["cp_tau_sense_s"],
            "cp_d_vu_sv_ml": (g * p["cp_g_vu_ml_mmhg"] * dev - x["cp_d_vu_sv_ml"])
            / p["cp_tau_v_s"],
            "cp_d_r_sys_mmhg_s_ml": (g * p["cp_g_r_s_ml"] * dev - x["cp_d_r_sys_mmhg_s_ml"])
            / p["cp_tau_r_s"],
        }
