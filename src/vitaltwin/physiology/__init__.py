"""Mechanistic physiology: components, composed models and patient profiles."""

from vitaltwin.physiology._sources import SOURCES, cite
from vitaltwin.physiology.baroreflex import Baroreflex
from vitaltwin.physiology.circulation import VOLUME_STATES, Circulation, activation
from vitaltwin.model import Model


def cardiovascular_model(baroreflex: bool = True) -> Model:
    """The beat-resolved cardiovascular model: circulation, with the baroreflex by default."""
    comps = [Baroreflex(), Circulation()] if baroreflex else [Circulation()]
    return Model(comps, name="beat-cv" if baroreflex else "beat-cv-open-loop")


__all__ = [
    "SOURCES",
    "VOLUME_STATES",
    "Baroreflex",
    "Circulation",
    "activation",
    "cardiovascular_model",
    "cite",
]
