"""Shared fixtures: the reference adult's steady state is computed once per session."""

from __future__ import annotations

import numpy as np
import pytest

from vitaltwin.model import Model
from vitaltwin.physiology import cardiovascular_model
from vitaltwin.physiology.patient import REFERENCE_PATIENT, initial_state, patient_parameters
from vitaltwin.simulate import SteadyState, steady_state


@pytest.fixture(scope="session")
def model() -> Model:
    return cardiovascular_model()


@pytest.fixture(scope="session")
def reference_params(model: Model) -> np.ndarray:
    return patient_parameters(model, REFERENCE_PATIENT)


@pytest.fixture(scope="session")
def reference_steady(model: Model, reference_params: np.ndarray) -> SteadyState:
    return steady_state(model, reference_params, initial_state(model, REFERENCE_PATIENT))
