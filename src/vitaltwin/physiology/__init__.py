"""Mechanistic physiology: components, composed models and patient profiles."""

from vitaltwin.model import Model
from vitaltwin.physiology._sources import SOURCES, cite
from vitaltwin.physiology.baroreflex import Baroreceptors, Baroreflex
from vitaltwin.physiology.cardiopulmonary import CardiopulmonaryReflex
from vitaltwin.physiology.circulation import VOLUME_STATES, Circulation, activation
from vitaltwin.physiology.hemodynamic_network import HemodynamicSurrogate
from vitaltwin.physiology.patient import (
    REFERENCE_PATIENT,
    PatientProfile,
    initial_state,
    patient_parameters,
)
from vitaltwin.physiology.ward import WARD_DT_S, ward_baseline, ward_model
from vitaltwin.physiology.ward_twin import (
    DISCREPANCY_TAU_H,
    VITAL_SIGN_DISCREPANCY,
    WARD_OBSERVABLES,
    WARD_TWIN,
)
from vitaltwin.physiology.ward_whatif import (
    WARD_WHATIF,
    WardConstraints,
    WardObjective,
    WardPlan,
)

DEFAULT_TWIN = WARD_TWIN
"""The model a twin runs when none is named: the ward-scale ICU model of this release."""


def cardiovascular_model(baroreflex: bool = True) -> Model:
    """The beat-resolved cardiovascular model.

    With ``baroreflex=True`` (default): the arterial baroreflex (Ursino 1998) and the
    cardiopulmonary reflex (Heldt 2002) control the circulation; ``False`` gives the open loop.
    """
    if not baroreflex:
        return Model([Circulation()], name="beat-cv-open-loop")
    return Model(
        [Baroreflex(), Baroreceptors(), CardiopulmonaryReflex(), Circulation()], name="beat-cv"
    )


__all__ = [
    "DEFAULT_TWIN",
    "DISCREPANCY_TAU_H",
    "REFERENCE_PATIENT",
    "SOURCES",
    "VITAL_SIGN_DISCREPANCY",
    "VOLUME_STATES",
    "WARD_DT_S",
    "WARD_OBSERVABLES",
    "WARD_TWIN",
    "WARD_WHATIF",
    "Baroreceptors",
    "Baroreflex",
    "CardiopulmonaryReflex",
    "Circulation",
    "HemodynamicSurrogate",
    "PatientProfile",
    "WardConstraints",
    "WardObjective",
    "WardPlan",
    "activation",
    "cardiovascular_model",
    "cite",
    "initial_state",
    "patient_parameters",
    "ward_baseline",
    "ward_model",
]
