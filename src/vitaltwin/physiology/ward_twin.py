"""The ward model's twin declaration (:data:`WARD_TWIN`): what a twin of this model observes,
estimates, and how wrong the model is allowed to be.

Observation errors are two parts combined in quadrature:

* the instrument: HR SD 2 /min (ECG monitors; well inside the ±10 % or ±5 /min an ECG monitor
  may err by, IEC 60601-2-27 [iec60601_2_27]); arterial pressure SD 5 mmHg for MAP, 8 systolic,
  6 diastolic (the largest SD a validated device may have is 8 mmHg, ISO 81060-2 [iso81060_2]);
  SpO2 2.5 % (A_rms of 2-3 % against co-oximetry, ISO 80601-2-61 [iso80601_2_61]); RR 2 /min;
  temperature 0.2 °C; lactate 0.2 mmol/L; WBC 0.5 x10^9/L; haemoglobin 0.3 g/dL. These are
  the errors of a value whose method is not stated (for pressures, the cuff's: the
  conservative choice). By method where the source says: an arterial line's pressures SD 2
  mmHg for MAP and diastolic, 2.5 systolic (the transducer and monitor may err by ±4 mmHg or
  ±4 % of the reading, whichever is greater, IEC 60601-2-34 [iec60601_2_34]: half of that at a
  MAP of 90 and a systolic of 120); the pulse rate from a pulse oximeter SD 3 /min against the
  ECG's 2 (specified ±3 /min at rest and ±5 /min in motion [mindray_n22]; it also misses the
  beats that make no pulse);
* representation: what a minutes-scale model with a few states cannot represent (breathing and
  posture swings of pressure, arrhythmia, sensor placement). These values are calibrated on the
  phantom study (``vitaltwin validate phantom``) so that the forecast bands cover what they
  claim, and are therefore marked "calibrated".

Each observable states the model's domain: the part of the vocabulary's plausible range the ward
model can represent (a heart rate of 15 /min is plausible, but no state of this model produces
it).

Estimated parameters: those routine ICU data identify (see
:func:`vitaltwin.twin.identifiability`). Each moves the observables by at least 0.1 measurement
SD (root mean square) over its population spread, and the set's collinearity index is 1.2. Left
out: contractility (``e_es_ratio0``: its effect on pressures and HR is nearly a combination of
resistance, heart rate and compliance — collinearity 36 with them) and the shunt (SpO2 sits on
the flat part of the dissociation curve at rest: 0.03 SD). Both stay at their population values
and the ensemble's state uncertainty absorbs them.

Process noise (model error, per square root of an hour) was calibrated on the phantom study;
states not listed are driven by known inputs and get none. The vital-sign discrepancy SDs are
about the spread of each sign across an ICU population, so a patient the model does not capture
is followed rather than pulled toward the model; they and their time constant (48 h) were chosen
on the tuning half of 400 PhysioNet set-A patients (``vitaltwin validate replay``).

Personalization fits, with the parameters, the initial pathogen load (softplus of a coordinate
with prior N(-4, 2): most patients start with little or none) and the blood volume's ratio to the
resting volume (log-normal prior, SD 10 %).

Events: MAP below 65 mmHg for 30 consecutive minutes or more (the sustained hypotension of
Maheshwari 2018 [maheshwari2018], associated with organ injury); SpO2 below 90 % at any time;
lactate above 4 mmol/L at any time (the Sepsis-3 and Surviving Sepsis threshold for
resuscitation [evans2021]).
"""

from __future__ import annotations

from vitaltwin.data.vocabulary import FIO2
from vitaltwin.model import ChartedInput, Event, InitialUnknown, Observable, TwinSpec
from vitaltwin.physiology.ward import WARD_DT_S, ward_baseline, ward_model
from vitaltwin.physiology.ward_whatif import WARD_WHATIF

ARTERIAL, OXIMETER = "invasive-arterial", "pulse-oximetry"  # methods (data.schema.METHODS)
WARD_OBSERVABLES: tuple[Observable, ...] = (
    Observable("HR", "hr_bpm", ("8867-4",), 2.0, 5.0, 20.0, 250.0, ((OXIMETER, 3.0),)),
    Observable("MAP", "map_mmhg", ("8478-0",), 5.0, 5.0, 20.0, 200.0, ((ARTERIAL, 2.0),)),
    Observable("SBP", "sbp_mmhg", ("8480-6",), 8.0, 8.0, 40.0, 280.0, ((ARTERIAL, 2.5),)),
    Observable("DBP", "dbp_mmhg", ("8462-4",), 6.0, 5.0, 15.0, 180.0, ((ARTERIAL, 2.0),)),
    Observable("SpO2", "spo2_pct", ("59408-5", "2708-6"), 2.5, 1.5, 50.0, 100.0),
    Observable("RR", "rr_per_min", ("9279-1",), 2.0, 3.0, 4.0, 60.0),
    Observable("Temp", "temp_c", ("8310-5",), 0.2, 0.3, 32.0, 43.0),
    Observable("Lactate", "lactate_mmol_l", ("2524-7", "32693-4"), 0.2, 0.8, 0.2, 25.0),
    Observable("WBC", "wbc_10e9_l", ("6690-2",), 0.5, 4.0, 0.1, 100.0),
    Observable("Hb", "hb_g_dl", ("718-7",), 0.3, 0.6, 3.0, 22.0),
)
"""What a twin of the ward model assimilates, in the order of the observation vector."""

VITAL_SIGN_DISCREPANCY: tuple[tuple[str, float], ...] = (
    ("HR", 30.0),
    ("MAP", 24.0),
    ("SBP", 36.0),
    ("DBP", 21.0),
    ("SpO2", 6.0),
    ("RR", 9.0),
    ("Temp", 1.2),
)
"""Stationary SD of each vital sign's model discrepancy for a real patient (observable units)."""
DISCREPANCY_TAU_H = 48.0
"""Time constant of the vital-sign discrepancies (h): a deviation persists for about two days."""

WARD_TWIN = TwinSpec(
    name="ward-icu",
    build_model=ward_model,
    baseline=ward_baseline,
    observables=WARD_OBSERVABLES,
    estimated=("r_sys_ratio0", "hr0_bpm", "c_sa_ratio", "rr0_per_min", "wbc0_10e9_l"),
    process_sd_per_sqrt_h={
        "v_plasma_ml": 150.0,
        "v_isf_ml": 300.0,
        "v_rbc_ml": 20.0,
        "infl_p": 0.04,
        "infl_n": 0.02,
        "infl_d": 0.05,
        "temp_c": 0.4,
        "lactate_mmol_l": 0.6,
    },
    param_sd_per_sqrt_h=0.08,
    dt_s=WARD_DT_S,
    nonnegative=("infl_p", "infl_n", "infl_d", "infl_ca", "v_plasma_ml", "v_isf_ml", "v_rbc_ml"),
    state_limits={
        "temp_c": (30.0, 44.0),
        "lactate_mmol_l": (0.1, 30.0),
        "v_plasma_ml": (500.0, 8000.0),
        "v_rbc_ml": (200.0, 5000.0),
        "v_isf_ml": (1000.0, 60000.0),
    },
    charted_inputs=(ChartedInput(FIO2.loinc, "fio2", 0.21, 1.0),),
    discrepancy=VITAL_SIGN_DISCREPANCY,
    discrepancy_tau_h=DISCREPANCY_TAU_H,
    events=(
        Event("map_below_65_30min", "MAP", 65.0, below=True, sustained_min=30.0),
        Event("spo2_below_90", "SpO2", 90.0, below=True),
        Event("lactate_above_4", "Lactate", 4.0, below=False),
    ),
    initial_unknowns=(
        InitialUnknown("initial_pathogen", ("infl_p",), "softplus", -4.0, 2.0),
        InitialUnknown("initial_volume_ratio", ("v_plasma_ml", "v_rbc_ml"), "log_ratio", 0.0, 0.1),
    ),
    whatif=WARD_WHATIF,
)
"""The twin declaration of the ward-scale ICU model."""
