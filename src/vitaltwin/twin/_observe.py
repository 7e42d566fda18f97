"""What the twin can see: the observation operator and its error model.

Each observable maps a LOINC code to an output of the ward model and an error standard
deviation made of two parts, combined in quadrature:

* the instrument: HR SD 2 /min (ECG monitors; well inside the ±10 % or ±5 /min an ECG monitor
  may err by, IEC 60601-2-27 [iec60601_2_27]); arterial pressure
  SD 5 mmHg for MAP, 8 systolic, 6 diastolic (the largest SD a validated device may have is
  8 mmHg, ISO 81060-2 [iso81060_2]); SpO2 2.5 % (A_rms of 2-3 % against co-oximetry,
  ISO 80601-2-61 [iso80601_2_61]); RR 2 /min; temperature 0.2 °C; lactate 0.2 mmol/L; WBC
  0.5 x10^9/L; haemoglobin 0.3 g/dL;
* representation: what a minutes-scale model with a few states cannot represent (breathing
  and posture swings of pressure, arrhythmia, sensor placement). These values are calibrated
  on the phantom study (``vitaltwin validate phantom``) so that the forecast bands cover what
  they claim, and are therefore marked "calibrated".

Plausible ranges gate the observation before it reaches the filter (values outside are rejected
with a reason, as at ingestion); the filter's innovation test then gates values that are
plausible in general but not for this patient now (an artefact).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jax import Array

from vitaltwin.model import Model, Vars


@dataclass(frozen=True)
class Observable:
    """One measured quantity: LOINC codes that carry it, the model output, errors."""

    name: str
    output: str
    loinc: tuple[str, ...]
    unit: str
    sd_instrument: float
    sd_model: float
    low: float
    high: float

    @property
    def sd(self) -> float:
        return float(np.hypot(self.sd_instrument, self.sd_model))


OBSERVABLES: tuple[Observable, ...] = (
    Observable("HR", "hr_bpm", ("8867-4",), "/min", 2.0, 5.0, 20.0, 250.0),
    Observable("MAP", "map_mmhg", ("8478-0",), "mm[Hg]", 5.0, 5.0, 20.0, 200.0),
    Observable("SBP", "sbp_mmhg", ("8480-6",), "mm[Hg]", 8.0, 8.0, 40.0, 280.0),
    Observable("DBP", "dbp_mmhg", ("8462-4",), "mm[Hg]", 6.0, 5.0, 15.0, 180.0),
    Observable("SpO2", "spo2_pct", ("59408-5", "2708-6"), "%", 2.5, 1.5, 50.0, 100.0),
    Observable("RR", "rr_per_min", ("9279-1",), "/min", 2.0, 3.0, 4.0, 60.0),
    Observable("Temp", "temp_c", ("8310-5",), "Cel", 0.2, 0.3, 32.0, 43.0),
    Observable("Lactate", "lactate_mmol_l", ("2524-7", "32693-4"), "mmol/L", 0.2, 0.8, 0.2, 25.0),
    Observable("WBC", "wbc_10e9_l", ("6690-2",), "10*9/L", 0.5, 4.0, 0.1, 100.0),
    Observable("Hb", "hb_g_dl", ("718-7",), "g/dL", 0.3, 0.6, 3.0, 22.0),
)
"""What the twin assimilates, in the order of the observation vector."""

NAMES = tuple(o.name for o in OBSERVABLES)
BY_LOINC = {code: i for i, o in enumerate(OBSERVABLES) for code in o.loinc}
SD = np.array([o.sd for o in OBSERVABLES])
LOW = np.array([o.low for o in OBSERVABLES])
HIGH = np.array([o.high for o in OBSERVABLES])

FIO2_LOINC = "19994-3"
"""Charted FiO2 is not an observation of the model but one of its inputs."""


def observables(model: Model, x: Array, signals: Vars) -> Array:
    """The observation vector ``(..., len(OBSERVABLES))`` from states ``(..., n_states)`` and the
    signals already computed for them (outputs that are states are read from ``x``)."""
    cols = [
        x[..., model.state_index(o.output)] if o.output in model.state_names else signals[o.output]
        for o in OBSERVABLES
    ]
    return jnp.stack(cols, axis=-1)


def observe(model: Model, x: Array, p: Array, u: Array) -> Array:
    """Model-predicted observations ``(..., len(OBSERVABLES))`` for states ``(..., n_states)``."""
    return observables(model, x, model.signals(0.0, x, p, u))


def index(name: str) -> int:
    """Position of an observable (``"MAP"``) in the observation vector."""
    try:
        return NAMES.index(name)
    except ValueError:
        raise KeyError(f"no observable {name!r}; known: {', '.join(NAMES)}") from None
