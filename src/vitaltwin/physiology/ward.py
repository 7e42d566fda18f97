"""The ward-scale (minutes) ICU model: fluids, surrogate haemodynamics, oxygen, lactate, fever.

Components (composed by :func:`ward_model`):

* :class:`NorepinephrineTitration` — a bedside protocol that titrates norepinephrine to a
  MAP target (integral control with limits), so scenarios can say "titrated to MAP 65".
* :class:`~vitaltwin.physiology.pharmacology.Antibiotic`,
  :class:`~vitaltwin.physiology.inflammation.Inflammation`,
  :class:`~vitaltwin.physiology.pharmacology.Norepinephrine`.
* :class:`WardCirculation` — plasma, red-cell and interstitial volumes (two-volume fluid
  kinetics of Hahn 2010 [hahn2010]) with an inflammatory capillary leak; blood volume, SVR,
  contractility, intrinsic heart rate and venous tone become the *drivers* of the haemodynamic
  surrogate, which returns the beat model's reflex-compensated periodic steady state (MAP, SBP,
  DBP, HR, SV, CO, CVP). The baroreflex therefore acts inside the surrogate: at the ward
  model's time scale (minutes) the reflexes (time constants of seconds) are at equilibrium.
  Urine output follows Hahn's elimination of plasma dilution and renal perfusion pressure.
* :class:`OxygenMetabolism` — alveolar gas equation, shunt, the Severinghaus 1979
  [severinghaus1979] oxygen-haemoglobin dissociation curve, O2 delivery and consumption with a
  critical extraction ratio (Ronco et al. 1993 [ronco1993]), lactate production (basal,
  inflammatory and anaerobic) and clearance, and respiratory rate responding to fever,
  inflammation and lactate. :class:`Thermoregulation` moves temperature toward a febrile set
  point.

Time is in seconds (the model layer's unit); slow rates are declared per hour or minute and
converted in the code.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from jax import Array

from vitaltwin.model import Component, Input, Model, Output, Parameter, State, Vars
from vitaltwin.physiology.circulation import softplus
from vitaltwin.physiology.hemodynamic_network import DRIVERS, HemodynamicSurrogate, domain_excess
from vitaltwin.physiology.inflammation import Inflammation
from vitaltwin.physiology.patient import REFERENCE_PATIENT, PatientProfile, pulse_wave_velocity_m_s
from vitaltwin.physiology.pharmacology import Antibiotic, Norepinephrine

_CAL = "calibrated (see the module docstring of the component)"

WARD_DT_S = 60.0
"""Default step of the ward model (s), RK4. Its fastest process is norepinephrine kinetics
(half-life 3 min); see ``tests/physiology/test_ward.py`` for the check against a 5 s step."""
_H98 = "Hahn 2010 [hahn2010]"


def _renal_perfusion(map_mmhg: Array) -> Array:
    """Fraction of normal renal filtration at a MAP: logistic, half at 55 mmHg, ~1 above 80.

    Autoregulation holds GFR down to a MAP of about 70-80 mmHg and fails below
    (Bellomo et al. 2012 [bellomo2012], septic AKI and perfusion pressure)."""
    return 1.0 / (1.0 + jnp.exp(-(map_mmhg - 55.0) / 6.0))


class NorepinephrineTitration(Component):
    """Protocol titration of norepinephrine toward a MAP target (0 = protocol off).

    d(rate)/dt = gain * (target - MAP), held within [0, max]; with the protocol off the
    titrated rate is weaned with a 2-minute time constant. The default gain raises the dose by
    0.02 ug/kg/min every 5 min per 5 mmHg below target — the pace of nurse-driven protocols.
    """

    name = "ne_titration"
    states: ClassVar[tuple[State, ...]] = (
        State("ne_titrated_ug_kg_min", "ug/kg/min", 0.0, "norepinephrine rate set by protocol"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "ne_titration_gain",
            "ug/kg/min/mm[Hg]/s",
            0.02 / 5.0 / 300.0,
            0.0,
            1e-3,
            0.0,
            "protocol design (module docstring)",
            "titration gain",
        ),
    )
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("ne_target_map_mmhg", "mm[Hg]", 0.0, "MAP target of the protocol (0 = off)"),
        Input("ne_max_ug_kg_min", "ug/kg/min", 1.0, "highest dose the protocol may give"),
    )
    provides = ("ne_titrated_ug_kg_min",)
    requires: ClassVar[dict[str, float]] = {"map_mmhg": 90.0}

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        return {"ne_titrated_ug_kg_min": jnp.maximum(x["ne_titrated_ug_kg_min"], 0.0)}

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        r = x["ne_titrated_ug_kg_min"]
        on = u["ne_target_map_mmhg"] > 0.0
        d_on = p["ne_titration_gain"] * (u["ne_target_map_mmhg"] - s["map_mmhg"])
        d_on = jnp.where((r <= 0.0) & (d_on < 0.0), -r / 60.0, d_on)
        d_on = jnp.where((r >= u["ne_max_ug_kg_min"]) & (d_on > 0.0), 0.0, d_on)
        return {"ne_titrated_ug_kg_min": jnp.where(on, d_on, -r / 120.0)}


class WardCirculation(Component):
    """Fluid compartments and beat-averaged haemodynamics from the surrogate."""

    name = "ward_circulation"
    states: ClassVar[tuple[State, ...]] = (
        State("v_plasma_ml", "mL", 2930.0, "plasma volume"),
        State("v_rbc_ml", "mL", 2120.0, "red-cell volume"),
        State("v_isf_ml", "mL", 11000.0, "interstitial fluid volume"),
    )
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("weight_kg", "kg", 70.0, 30.0, 250.0, 0.0, "patient profile", "body weight"),
        Parameter(
            "bv0_ml",
            "mL",
            5050.0,
            2000.0,
            9000.0,
            0.0,
            "[nadler1962] (patient profile)",
            "normal blood volume",
        ),
        Parameter(
            "hct0",
            "1",
            0.42,
            0.25,
            0.55,
            0.08,
            "normal adult haematocrit (male 0.42)",
            "baseline haematocrit",
        ),
        Parameter(
            "v_isf0_ml",
            "mL",
            11000.0,
            4000.0,
            40000.0,
            0.1,
            "extracellular water 0.2 L/kg minus plasma [hahn2010]",
            "normal interstitial volume",
        ),
        Parameter(
            "size_factor",
            "1",
            1.0,
            0.4,
            2.5,
            0.0,
            "patient profile (BV / BV_ref)",
            "flows scale with it",
        ),
        Parameter(
            "c_sa_ratio",
            "1",
            1.0,
            0.3,
            1.6,
            0.2,
            "patient profile (age, [rvasc2010])",
            "arterial compliance relative to the reference adult",
        ),
        Parameter(
            "hr0_bpm",
            "/min",
            72.0,
            40.0,
            120.0,
            0.12,
            "[guyton] ch. 9",
            "intrinsic heart rate at 37 C",
        ),
        Parameter(
            "r_sys_ratio0",
            "1",
            1.0,
            0.5,
            2.0,
            0.2,
            "population spread",
            "baseline systemic resistance relative to the reference",
        ),
        Parameter(
            "e_es_ratio0",
            "1",
            1.0,
            0.3,
            1.5,
            0.15,
            "population spread",
            "baseline ventricular elastance relative to the reference",
        ),
        Parameter(
            "hr_per_c_bpm",
            "/min/Cel",
            8.5,
            4.0,
            15.0,
            0.2,
            "Karjalainen & Viitasalo 1986 [karjalainen1986]: 8.5 /min per C",
            "rise of heart rate per degree of fever",
        ),
        Parameter(
            "kt_ml_min",
            "mL/min",
            60.0,
            10.0,
            300.0,
            0.3,
            f"{_H98}: k_t 50-100 mL/min",
            "distribution clearance plasma <-> interstitium",
        ),
        Parameter(
            "kr_ml_min",
            "mL/min",
            25.0,
            5.0,
            100.0,
            0.3,
            f"{_H98}: k_r 10-60 mL/min",
            "elimination clearance of plasma dilution (urine)",
        ),
        Parameter(
            "urine0_ml_kg_h",
            "mL/kg/h",
            1.0,
            0.3,
            2.0,
            0.2,
            "normal urine output ~1 mL/kg/h",
            "baseline urine output",
        ),
        Parameter(
            "map0_mmhg",
            "mm[Hg]",
            99.0,
            50.0,
            150.0,
            0.0,
            "the patient's resting MAP from the surrogate (ward_baseline)",
            "resting MAP (urine output is baseline there)",
        ),
        Parameter(
            "leak_shift_max",
            "1",
            0.5,
            0.0,
            0.8,
            0.2,
            _CAL,
            "largest shift of the plasma/interstitial equilibrium by capillary leak",
        ),
    )
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("hemorrhage_ml_s", "mL/s", 0.0, "blood loss rate"),
        Input("infusion_ml_s", "mL/s", 0.0, "IV crystalloid rate"),
    )
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("hr_bpm", "/min", "8867-4", "trend", "heart rate"),
        Output("sbp_mmhg", "mm[Hg]", "8480-6", "trend", "systolic arterial pressure"),
        Output("dbp_mmhg", "mm[Hg]", "8462-4", "trend", "diastolic arterial pressure"),
        Output("map_mmhg", "mm[Hg]", "8478-0", "trend", "mean arterial pressure"),
        Output("cvp_mmhg", "mm[Hg]", "60985-9", "trend", "central venous pressure"),
        Output("co_l_min", "L/min", "8741-1", "trend", "cardiac output"),
        Output("sv_ml", "mL", "20562-5", "trend", "stroke volume"),
        Output("urine_ml_h", "mL/h", "9187-6", "trend", "urine output"),
        Output("hb_g_dl", "g/dL", "718-7", "trend", "haemoglobin"),
    )
    provides = (
        "blood_volume_ml",
        "hct",
        "hb_g_dl",
        "surrogate_domain_excess",
        "hr_bpm",
        "sbp_mmhg",
        "dbp_mmhg",
        "map_mmhg",
        "cvp_mmhg",
        "co_l_min",
        "sv_ml",
        "urine_ml_h",
        "leak_flux_ml_min",
    )
    requires: ClassVar[dict[str, float]] = {
        "infl_r_sys_factor": 1.0,
        "infl_vu_sv_factor": 1.0,
        "infl_e_es_factor": 1.0,
        "infl_leak_factor": 1.0,
        "infl_a_n": 0.0,
        "ne_r_sys_factor": 1.0,
        "ne_e_es_factor": 1.0,
        "ne_d_hr0_bpm": 0.0,
        "ne_vu_sv_factor": 1.0,
        "temp_c": 37.0,
    }

    def drivers(self, x: Vars, p: Vars, s: Vars) -> Array:
        """The surrogate's six drivers (order of ``DRIVER_NAMES``) from states and signals."""
        bv = x["v_plasma_ml"] + x["v_rbc_ml"]
        return jnp.stack(
            [
                bv / p["bv0_ml"],
                p["r_sys_ratio0"] * s["infl_r_sys_factor"] * s["ne_r_sys_factor"],
                p["e_es_ratio0"] * s["infl_e_es_factor"] * s["ne_e_es_factor"],
                p["hr0_bpm"] + p["hr_per_c_bpm"] * (s["temp_c"] - 37.0) + s["ne_d_hr0_bpm"],
                s["infl_vu_sv_factor"] * s["ne_vu_sv_factor"],
                p["c_sa_ratio"] * jnp.ones_like(bv),
            ],
            axis=-1,
        )

    def __init__(self, surrogate: HemodynamicSurrogate) -> None:
        self.surrogate = surrogate

    def fingerprint(self) -> bytes:
        """The surrogate's weights (a retrained surrogate is another model version)."""
        return self.surrogate.fingerprint()

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        bv = x["v_plasma_ml"] + x["v_rbc_ml"]
        hct = x["v_rbc_ml"] / bv
        drivers = self.drivers(x, p, s)
        h = self.surrogate(drivers)
        dil_p = (x["v_plasma_ml"] - p["v_plasma0_ml"]) / p["v_plasma0_ml"]
        dil_i = (x["v_isf_ml"] - p["v_isf0_ml"]) / p["v_isf0_ml"]
        leak = (
            p["kt_ml_min"]
            * s["infl_leak_factor"]
            * (dil_p - dil_i + p["leak_shift_max"] * s["infl_a_n"])
        )
        renal = _renal_perfusion(h["map_mmhg"]) / p["renal0"]
        urine_ml_min = renal * (
            p["urine0_ml_kg_h"] * p["weight_kg"] / 60.0
            + p["kr_ml_min"] * (softplus(dil_p, 0.01) - 0.01 * np.log(2.0))
        )
        return {
            "blood_volume_ml": bv,
            "hct": hct,
            "hb_g_dl": hct / 0.03,  # MCHC 33 g/dL: Hb (g/dL) ~ Hct (%) / 3
            "surrogate_domain_excess": domain_excess(drivers),
            "hr_bpm": h["hr_bpm"],
            "sbp_mmhg": h["sbp_mmhg"],
            "dbp_mmhg": h["dbp_mmhg"],
            "map_mmhg": h["map_mmhg"],
            "cvp_mmhg": h["cvp_mmhg"],
            "co_l_min": h["co_l_min"] * p["size_factor"],
            "sv_ml": h["sv_ml"] * p["size_factor"],
            "urine_ml_h": urine_ml_min * 60.0,
            "leak_flux_ml_min": leak,
        }

    def derived(self, p: Vars) -> dict[str, Array]:
        return {
            "v_plasma0_ml": p["bv0_ml"] * (1.0 - p["hct0"]),
            "renal0": _renal_perfusion(p["map0_mmhg"]),
        }

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        bleed = u["hemorrhage_ml_s"]
        # Maintenance intake (oral or IV) balances the baseline urine output of the patient.
        intake = p["urine0_ml_kg_h"] * p["weight_kg"] / 3600.0
        leak = s["leak_flux_ml_min"] / 60.0
        return {
            "v_plasma_ml": u["infusion_ml_s"]
            + intake
            - bleed * (1.0 - s["hct"])
            - leak
            - s["urine_ml_h"] / 3600.0,
            "v_rbc_ml": -bleed * s["hct"],
            "v_isf_ml": leak,
        }


def severinghaus_saturation(po2_mmhg: Array) -> Array:
    """Haemoglobin O2 saturation (0-1) at a PO2 (Severinghaus 1979 [severinghaus1979])."""
    po2 = jnp.maximum(po2_mmhg, 0.0)
    return 1.0 / (1.0 + 23400.0 / (po2**3 + 150.0 * po2))


class OxygenMetabolism(Component):
    """Gas exchange, O2 delivery and uptake, lactate, temperature and respiratory rate.

    * Alveolar gas: PAO2 = FiO2 (P_atm - P_H2O) - PaCO2 / RQ; PaCO2 = 0.863 VCO2 / V_A
      (West's alveolar equations [west2012]); V_A = RR (V_T - V_D).
    * End-capillary saturation from PAO2 (Severinghaus 1979); PaO2 back from SaO2 by Ellis
      1989 [ellis1989]. Venous admixture through a
      shunt fraction s (3 % normal [west2012], plus a calibrated inflammatory part for septic
      lung injury): C_aO2 = C_c'O2 - s / (1 - s) * VO2 / (10 CO), saturations from contents
      (dissolved O2 0.003 mL/dL/mmHg taken at PAO2).
    * VO2 demand 3.5 mL/kg/min, +10 % per degree C of fever (Manthous et al. 1995
      [manthous1995]); uptake is capped by a critical extraction ratio of 0.65 of DO2 (Ronco
      et al. 1993 [ronco1993]: critical DO2 3.8-8.2 mL/kg/min in dying patients), smoothly.
    * Lactate (distributed in total body water, 0.6 L/kg): basal production = normal
      clearance x 1 mmol/L (Levraut et al. 1998 [levraut1998]: clearance ~1 L/min);
      clearance falls with hepatic flow (taken proportional to CO) and with inflammation (about
      halved in septic hyperlactataemia, Levraut 1998); extra production by
      inflammation (aerobic, adrenergic glycolysis) and by the O2 deficit — anaerobic ATP
      replaces oxidative ATP at 1 lactate per ATP and 6 ATP per O2 (0.27 mmol lactate per mL
      O2); half of the deficit is covered this way (calibrated).
    * RR = RR0 + fever, inflammation and lactate drives (calibrated to SIRS/qSOFA-level tachypnoea,
      RR > 22 /min in septic shock).
    """

    name = "oxygen_metabolism"
    states: ClassVar[tuple[State, ...]] = (State("lactate_mmol_l", "mmol/L", 1.0, "blood lactate"),)
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("shunt0", "1", 0.03, 0.0, 0.3, 0.3, "[west2012]", "normal shunt fraction"),
        Parameter(
            "infl_shunt_max",
            "1",
            0.15,
            0.0,
            0.4,
            0.3,
            _CAL,
            "largest inflammatory rise of the shunt fraction",
        ),
        Parameter(
            "vo2_ml_kg_min", "mL/kg/min", 3.5, 2.0, 6.0, 0.1, "[west2012]", "resting O2 consumption"
        ),
        Parameter(
            "vo2_per_c",
            "1",
            0.10,
            0.0,
            0.2,
            0.2,
            "[manthous1995]",
            "relative rise of VO2 per degree of fever",
        ),
        Parameter(
            "er_max", "1", 0.65, 0.4, 0.9, 0.1, "[ronco1993]", "critical O2 extraction ratio"
        ),
        Parameter("rq", "1", 0.8, 0.7, 1.0, 0.0, "[west2012]", "respiratory quotient"),
        Parameter(
            "rr0_per_min",
            "/min",
            12.0,
            8.0,
            22.0,
            0.15,
            "[west2012] (12-15 /min)",
            "resting respiratory rate",
        ),
        Parameter("vt_ml_kg", "mL/kg", 7.0, 4.0, 10.0, 0.1, "[west2012]", "tidal volume"),
        Parameter("vd_ml_kg", "mL/kg", 2.0, 1.0, 4.0, 0.1, "[west2012]", "dead space"),
        Parameter("rr_per_c", "/min/Cel", 2.0, 0.0, 5.0, 0.3, _CAL, "RR rise per degree of fever"),
        Parameter("rr_infl_max", "/min", 6.0, 0.0, 15.0, 0.3, _CAL, "RR rise at full inflammation"),
        Parameter(
            "rr_per_lactate",
            "/min/(mmol/L)",
            1.5,
            0.0,
            5.0,
            0.3,
            _CAL,
            "RR rise per mmol/L of lactate above 2",
        ),
        Parameter(
            "lac_cl_l_min",
            "L/min",
            1.0,
            0.3,
            2.0,
            0.3,
            "[levraut1998]",
            "lactate clearance at normal hepatic flow",
        ),
        Parameter(
            "lac_cl_infl_reduction",
            "1",
            0.5,
            0.0,
            0.9,
            0.2,
            "[levraut1998] (clearance about halved in septic hyperlactataemia)",
            "largest inflammatory fall of lactate clearance",
        ),
        Parameter(
            "lac_infl_gain",
            "1",
            2.5,
            0.0,
            4.0,
            0.3,
            _CAL,
            "inflammatory lactate production, relative to basal",
        ),
        Parameter(
            "lac_anaerobic_fraction",
            "1",
            0.5,
            0.1,
            1.0,
            0.2,
            _CAL,
            "share of the O2 deficit covered by anaerobic glycolysis",
        ),
        Parameter(
            "co0_l_min",
            "L/min",
            5.0,
            2.0,
            10.0,
            0.0,
            "the patient's resting CO from the surrogate (ward_baseline)",
            "resting cardiac output (normalises hepatic flow)",
        ),
    )
    inputs: ClassVar[tuple[Input, ...]] = (Input("fio2", "1", 0.21, "fraction of inspired oxygen"),)
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("spo2_pct", "%", "59408-5", "trend", "oxygen saturation by pulse oximetry"),
        Output("rr_per_min", "/min", "9279-1", "trend", "respiratory rate"),
        Output("lactate_mmol_l", "mmol/L", "32693-4", "trend", "blood lactate"),
        Output("pao2_mmhg", "mm[Hg]", "2703-7", "trend", "arterial PO2 (estimated)"),
        Output("do2_ml_min", "mL/min", None, "trend", "oxygen delivery"),
        Output("vo2_ml_min", "mL/min", None, "trend", "oxygen consumption"),
    )
    provides = (
        "spo2_pct",
        "sao2",
        "rr_per_min",
        "pao2_mmhg",
        "paco2_mmhg",
        "do2_ml_min",
        "vo2_ml_min",
        "o2_deficit_ml_min",
    )
    requires: ClassVar[dict[str, float]] = {"infl_a_n": 0.0, "temp_c": 37.0}

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        w = p["weight_kg"]
        fever = s["temp_c"] - 37.0
        a_n = s["infl_a_n"]
        rr = (
            p["rr0_per_min"]
            + p["rr_per_c"] * jnp.maximum(fever, 0.0)
            + p["rr_infl_max"] * a_n
            + p["rr_per_lactate"] * softplus(x["lactate_mmol_l"] - 2.0, 0.2)
        )
        demand = p["vo2_ml_kg_min"] * w * (1.0 + p["vo2_per_c"] * fever)
        va_l_min = rr * (p["vt_ml_kg"] - p["vd_ml_kg"]) * w / 1000.0
        paco2 = 0.863 * p["rq"] * demand / va_l_min
        pao2_alv = u["fio2"] * (760.0 - 47.0) - paco2 / p["rq"]
        hb = s["hb_g_dl"]
        co = s["co_l_min"]
        shunt = jnp.clip(p["shunt0"] + p["infl_shunt_max"] * a_n, 0.0, 0.9)
        sc = severinghaus_saturation(pao2_alv)
        cc = 1.34 * hb * sc + 0.003 * pao2_alv
        ca = cc - shunt / (1.0 - shunt) * demand / (10.0 * co)
        sao2 = jnp.clip((ca - 0.003 * pao2_alv) / (1.34 * hb), 0.0, 1.0)
        do2 = 10.0 * co * ca
        # Smooth min(demand, er_max * DO2): uptake is limited when delivery falls short.
        cap = p["er_max"] * do2
        vo2 = demand - softplus(demand - cap, 5.0)
        # PaO2 at the arterial saturation: invert Severinghaus by Ellis 1989's closed form.
        sat = jnp.clip(sao2, 1e-3, 0.999)
        a = 11700.0 / (1.0 / sat - 1.0)
        b = jnp.sqrt(50.0**3 + a**2)
        pao2 = jnp.cbrt(b + a) - jnp.cbrt(b - a)
        return {
            "spo2_pct": 100.0 * sao2,
            "sao2": sao2,
            "rr_per_min": rr,
            "pao2_mmhg": pao2,
            "paco2_mmhg": paco2,
            "do2_ml_min": do2,
            "vo2_ml_min": vo2,
            "o2_deficit_ml_min": demand - vo2,
        }

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        w = p["weight_kg"]
        v_l = 0.6 * w
        hepatic = jnp.clip(s["co_l_min"] / p["co0_l_min"], 0.05, 1.2)
        cl = p["lac_cl_l_min"] * hepatic * (1.0 - p["lac_cl_infl_reduction"] * s["infl_a_n"])
        basal = p["lac_cl_l_min"] * 1.0  # mmol/min: normal clearance x 1 mmol/L
        produced = (
            basal * (1.0 + p["lac_infl_gain"] * s["infl_a_n"])
            + p["lac_anaerobic_fraction"] * 0.27 * s["o2_deficit_ml_min"]
        )
        d_lac = (produced - cl * x["lactate_mmol_l"]) / v_l / 60.0
        return {"lactate_mmol_l": d_lac}


class Thermoregulation(Component):
    """Core temperature relaxing toward 37 C plus the inflammatory fever (1-hour time constant,
    calibrated to the hours-long rise of fever after an infectious challenge)."""

    name = "thermoregulation"
    states: ClassVar[tuple[State, ...]] = (State("temp_c", "Cel", 37.0, "core temperature"),)
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("tau_temp_h", "h", 1.0, 0.2, 4.0, 0.2, _CAL, "time constant of temperature"),
    )
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("temp_c", "Cel", "8310-5", "trend", "body temperature"),
    )
    provides = ("temp_c",)
    requires: ClassVar[dict[str, float]] = {"infl_fever_c": 0.0}

    def signals(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        return {"temp_c": x["temp_c"]}

    def derivatives(self, t: Array, x: Vars, p: Vars, u: Vars, s: Vars) -> dict[str, Array]:
        t_set = 37.0 + s["infl_fever_c"]
        return {"temp_c": (t_set - x["temp_c"]) / (p["tau_temp_h"] * 3600.0)}


def ward_model(surrogate: HemodynamicSurrogate | None = None) -> Model:
    """The ward-scale ICU model (shipped surrogate unless one is given)."""
    sur = HemodynamicSurrogate.load() if surrogate is None else surrogate
    return Model(
        [
            NorepinephrineTitration(),
            Antibiotic(),
            Inflammation(),
            Norepinephrine(),
            Thermoregulation(),
            WardCirculation(sur),
            OxygenMetabolism(),
        ],
        name="ward-icu",
    )


def ward_baseline(model: Model, profile: PatientProfile) -> tuple[np.ndarray, np.ndarray]:
    """Baseline parameters and resting initial state of the ward model for a patient.

    Size enters through blood volume (Nadler), weight and the size factor; age through the
    arterial compliance ratio (as in :func:`vitaltwin.physiology.patient_parameters`). The
    resting CO used to normalise hepatic flow is the surrogate's, so lactate starts at rest.
    """
    bv = profile.blood_volume_ml
    hct0 = 0.42 if profile.sex == "male" else 0.38
    k = bv / REFERENCE_PATIENT.blood_volume_ml
    c_ratio = (
        pulse_wave_velocity_m_s(REFERENCE_PATIENT.age_years)
        / pulse_wave_velocity_m_s(profile.age_years)
    ) ** 2
    c_lo, c_hi = next((lo, hi) for n, lo, hi, _ in DRIVERS if n == "c_sa_ratio")
    values = {
        "weight_kg": profile.weight_kg,
        "bv0_ml": bv,
        "hct0": hct0,
        "v_isf0_ml": 0.2 * profile.weight_kg * 1000.0 - bv * (1.0 - hct0),
        "size_factor": k,
        "c_sa_ratio": float(np.clip(c_ratio, c_lo, c_hi)),
    }
    p = model.params_from(values)
    comp = next(c for c in model.components if isinstance(c, WardCirculation))
    drivers = np.array([1.0, 1.0, 1.0, p[model.param_index("hr0_bpm")], 1.0, values["c_sa_ratio"]])
    rest = comp.surrogate(jnp.asarray(drivers))
    p[model.param_index("co0_l_min")] = float(rest["co_l_min"]) * k
    p[model.param_index("map0_mmhg")] = float(rest["map_mmhg"])
    x = model.default_state()
    x[model.state_index("v_plasma_ml")] = bv * (1.0 - hct0)
    x[model.state_index("v_rbc_ml")] = bv * hct0
    x[model.state_index("v_isf_ml")] = values["v_isf0_ml"]
    return p, x
