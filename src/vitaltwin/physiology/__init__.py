"""Mechanistic physiology: components, composed models and patient profiles."""

from vitaltwin.model import Model
from vitaltwin.physiology._sources import SOURCES, cite
from vitaltwin.physiology.baroreflex import Baroreceptors, Baroreflex
from vitaltwin.physiology.cardiopulmonary import CardiopulmonaryReflex
from vitaltwin.physiology.circulation import VOLUME_STATES, Circulation, activation


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
    "SOURCES",
    "VOLUME_STATES",
    "Baroreceptors",
    "Baroreflex",
    "CardiopulmonaryReflex",
    "Circulation",
    "activation",
    "cardiovascular_model",
    "cite",
]
