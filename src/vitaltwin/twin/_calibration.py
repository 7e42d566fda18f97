"""Forecast bands calibrated online from the twin's own resolved forecasts.

An ensemble's spread is the model's idea of its uncertainty, and it is not the same thing as
the spread of its errors: on set A's hourly charts the twin's one-hour 50 % band held 62-81 %
of what was charted next (too wide), after eICU treatment changes too few (too narrow; docs,
"How honest the twin's uncertainty is"). Whether a band is honest is told by the outcomes of
the forecasts already made, and those arrive with every value a forecast was made for.

:class:`OnlineBandCalibration` keeps, per observable, the standardized errors
``|y - mean| / sd`` of the most recent ``window`` resolved forecasts — pooled over the patients
it serves (a ward's twins, a study's patients) — and issues the central band of level ``L`` as
``mean ± sd × q_L``, ``q_L`` the ``L``-quantile of those errors: split-conformal prediction
(Vovk et al. 2005 [vovk2005]) with the calibration set made of the most recent outcomes, so
that it follows a changing population as adaptive conformal inference does (Gibbs & Candès
2021 [gibbs2021]). It needs no tuning data, only outcomes already seen; until ``min_errors``
are in for an observable, its bands are as the forecast issues them (the normal's quantile).
Safe to use from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

Array = npt.NDArray[np.float64]


class OnlineBandCalibration:
    """Bands from the recent standardized errors of resolved forecasts (module docstring).

    ``observables``: the names it calibrates; ``window``: errors kept per observable (the most
    recent); ``min_errors``: errors needed before the bands are rescaled."""

    def __init__(
        self, observables: Iterable[str], window: int = 5000, min_errors: int = 200
    ) -> None:
        if window < 1 or not 1 <= min_errors <= window:
            raise ValueError(
                f"window {window} and min_errors {min_errors}: need 1 <= min_errors <= window"
            )
        self.window, self.min_errors = window, min_errors
        self._errors: dict[str, Array] = {str(n): np.empty(0) for n in observables}
        self._quantiles: dict[tuple[str, float], float] = {}  # until the next record
        self._lock = threading.Lock()

    def _known(self, name: str) -> Array:
        try:
            return self._errors[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not calibrated here (observables: {', '.join(self._errors)})"
            ) from None

    def record(self, name: str, value: Array, mean: Array, sd: Array) -> int:
        """Add the outcomes ``value`` of forecasts ``N(mean, sd^2)`` of ``name`` (arrays of
        one shape; NaN values and non-positive spreads are skipped); the number added."""
        v, m, s = (np.asarray(a, float).ravel() for a in (value, mean, sd))
        ok = np.isfinite(v) & np.isfinite(m) & np.isfinite(s) & (s > 0)
        z = np.abs(v[ok] - m[ok]) / s[ok]
        with self._lock:
            self._errors[name] = np.concatenate([self._known(name), z])[-self.window :]
            self._quantiles = {k: q for k, q in self._quantiles.items() if k[0] != name}
        return int(z.size)

    def count(self, name: str) -> int:
        """Errors held for ``name``."""
        with self._lock:
            return int(self._known(name).size)

    def half_width(self, name: str, level: float) -> float:
        """The central band of ``level`` (0-1) as a multiple of the forecast's SD: the recent
        errors' ``level``-quantile, or the normal's while fewer than ``min_errors`` are in."""
        if not 0 < level < 1:
            raise ValueError(f"band level {level}: must lie between 0 and 1")
        with self._lock:
            z = self._known(name)
            if z.size < self.min_errors:
                return float(norm.ppf(0.5 + level / 2))
            q = self._quantiles.get((name, level))
            if q is None:  # a ward's forecasts ask far more often than outcomes arrive
                q = self._quantiles[name, level] = float(np.quantile(z, level))
            return q

    def factor(self, name: str, level: float) -> float:
        """The factor on the forecast's own band of ``level`` (1: as issued)."""
        return self.half_width(name, level) / float(norm.ppf(0.5 + level / 2))

    def band(self, name: str, mean: Array, sd: Array, level: float) -> tuple[Array, Array]:
        """The calibrated central band ``(low, high)`` of ``level`` for forecasts
        ``N(mean, sd^2)`` of ``name`` (before any physical limit is applied)."""
        k = self.half_width(name, level)
        m, s = np.asarray(mean, float), np.asarray(sd, float)
        return m - k * s, m + k * s

    def calibrated_quantiles(
        self,
        name: str,
        q05: float,
        q50: float,
        q95: float,
        low: float = -np.inf,
        high: float = np.inf,
    ) -> dict[str, float]:
        """A band issued as quantiles (5, 50, 95 %) of one horizon, calibrated: read as a normal
        (:func:`normal_of_quantiles`), its 50 % (``q25``-``q75``) and 90 % (``q05``-``q95``)
        bands from the recent errors, within the observable's domain ``[low, high]`` (an SpO2
        band stops at 100 %); ``errors``: how many errors that rests on (below ``min_errors``
        the bands are the normal's, not the ensemble's own quantiles)."""
        centre, sd = normal_of_quantiles(q05, q50, q95)
        out = {"q50": centre}
        for level, lo, hi in ((0.5, "q25", "q75"), (0.9, "q05", "q95")):
            k = self.half_width(name, level)
            out[lo] = float(np.clip(centre - k * sd, low, high))
            out[hi] = float(np.clip(centre + k * sd, low, high))
        out["errors"] = float(self.count(name))
        return out


def normal_of_quantiles(q05: float, q50: float, q95: float) -> tuple[float, float]:
    """The centre and SD of a forecast issued as quantiles, read as a normal: the median, and
    the 90 % band's half-width over the normal's 1.645."""
    return float(q50), float((q95 - q05) / (2 * norm.ppf(0.95)))
