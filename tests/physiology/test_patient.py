"""Patient profiles set baseline parameters: size by blood volume, age by arterial stiffness."""

from __future__ import annotations

import pandas as pd
import pytest

from vitaltwin.model import Model
from vitaltwin.physiology.patient import (
    REFERENCE_PATIENT,
    PatientProfile,
    initial_state,
    patient_parameters,
    pulse_wave_velocity_m_s,
)
from vitaltwin.simulate import steady_state


def test_nadler_blood_volume() -> None:
    # Nadler 1962: male 1.75 m, 70 kg -> 0.3669*1.75^3 + 0.03219*70 + 0.6041 = 4.823 L
    assert REFERENCE_PATIENT.blood_volume_ml == pytest.approx(4823.0, abs=1.0)
    woman = PatientProfile(sex="female", weight_kg=60, height_cm=165)
    assert woman.blood_volume_ml == pytest.approx(
        1000 * (0.3561 * 1.65**3 + 0.03308 * 60 + 0.1833), rel=1e-12
    )


def test_pwv_rises_with_age() -> None:
    ages = [20, 35, 50, 65, 80]
    pwv = [pulse_wave_velocity_m_s(a) for a in ages]
    assert pwv == sorted(pwv)
    assert pwv[0] == pytest.approx(6.2)


def _ss(model: Model, profile: PatientProfile) -> pd.Series:
    ss = steady_state(model, patient_parameters(model, profile), initial_state(model, profile))
    assert ss.converged
    return ss.beats.iloc[-3:].mean()


def test_size_scales_volumes_not_pressures(model: Model) -> None:
    small = PatientProfile(sex="female", weight_kg=55, height_cm=160)
    ref = _ss(model, REFERENCE_PATIENT)
    s = _ss(model, small)
    k = small.blood_volume_ml / REFERENCE_PATIENT.blood_volume_ml
    assert k < 0.85
    assert s.map_mmhg == pytest.approx(ref.map_mmhg, rel=1e-3)
    assert s.edv_ml == pytest.approx(k * ref.edv_ml, rel=1e-3)
    assert s.co_l_min == pytest.approx(k * ref.co_l_min, rel=1e-3)


def test_older_patient_has_wider_pulse_pressure(model: Model) -> None:
    young = _ss(model, PatientProfile(age_years=25))
    old = _ss(model, PatientProfile(age_years=75))
    assert (old.sbp_mmhg - old.dbp_mmhg) > 1.3 * (young.sbp_mmhg - young.dbp_mmhg)
    assert old.sbp_mmhg > young.sbp_mmhg
