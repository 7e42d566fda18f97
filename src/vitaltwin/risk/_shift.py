"""How far a patient-hour lies from the data a model was trained on: a calibrated measure, per
feature and joint (it replaces the training-range flag, which fired on whole sites whose assays
or ranges differed by a hair and said nothing about whether the scores were worse).

**Per feature**: the two-sided tail probability of the value under the training distribution
(its quantiles, interpolated), continued beyond the training range by an exponential decay in
units of the feature's interquartile range — a value just outside the range is barely unusual,
one several IQRs outside it very; the *surprise* is ``-log10`` of it. A missing value carries
no surprise (missingness is the model's business, and a site that measures less is not a
different patient).

**Joint**: the mean of a row's :data:`TOP_K` largest surprises: one odd value is not a patient
unlike the training data, several at once are.

**Calibrated** by split conformal prediction (Vovk, Gammerman & Shafer, *Algorithmic Learning
in a Random World*, 2005; Angelopoulos & Bates, arXiv:2107.07511, 2021): the quantiles are fitted
on 80 % of the training patients and the joint scores of the other 20 % are kept; a row's
p-value is the share of those scores at or above its own. Under exchangeability
``P(p <= alpha) <= alpha``, so the flag at ``alpha`` (:data:`ALPHA`, 1 %) fires on about 1 % of
hours like the training data's, and more where the data really differ; whether flagged hours
also *score* worse is what the leave-site-out study checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]

LEVELS = np.linspace(0.0, 1.0, 201)
"""The quantile levels kept per feature (every half percentile)."""
TOP_K = 3
"""How many of a row's largest surprises the joint score averages."""
ALPHA = 0.01
"""The flag's significance level: about this share of hours like the training data's."""
MAX_CALIBRATION = 20_000
"""Calibration scores kept (a random subset of the held-out patients' hours)."""
FLOOR = 1e-12


@dataclass(frozen=True)
class ShiftReference:
    """The training data of a model, as the shift measure needs it (JSON-serializable)."""

    names: list[str]
    quantiles: list[list[float]]  # per feature, at :data:`LEVELS` (empty: never measured)
    scale: list[float]  # per feature, its interquartile range (or a fallback scale)
    calibration: list[float]  # joint scores of held-out training hours, ascending
    alpha: float = ALPHA
    top_k: int = TOP_K

    @classmethod
    def from_data(
        cls,
        X: pd.DataFrame,
        patient: npt.ArrayLike,
        features: list[str] | None = None,
        seed: int = 0,
        alpha: float = ALPHA,
    ) -> ShiftReference:
        """Fit on the rows of ``X`` (``features`` of it; all columns by default), patients
        split 80/20 between the quantiles and the calibration."""
        names = [str(c) for c in (features if features is not None else X.columns)]
        pid = np.asarray(patient)
        ids = np.unique(pid)
        rng = np.random.default_rng(seed)
        held = rng.random(ids.size) < 0.2
        if ids.size >= 2 and not held.any():
            held[rng.integers(ids.size)] = True
        calib = np.isin(pid, ids[held])
        values = X[names].to_numpy(dtype=np.float64)
        fit_rows = values[~calib] if (~calib).any() else values
        quantiles: list[list[float]] = []
        scale: list[float] = []
        for j in range(len(names)):
            v = fit_rows[:, j]
            v = v[np.isfinite(v)]
            if v.size == 0:
                quantiles.append([])
                scale.append(1.0)
                continue
            q = np.quantile(v, LEVELS)
            iqr = float(q[150] - q[50])
            spread = float(q[-1] - q[0])
            fallback = max(abs(float(q[100])), 1.0) * 1e-3
            quantiles.append(q.tolist())
            scale.append(iqr if iqr > 0 else (spread / 4 if spread > 0 else fallback))
        ref = cls(names, quantiles, scale, [], alpha)
        cal_rows = values[calib] if calib.any() else values
        if len(cal_rows) > MAX_CALIBRATION:
            cal_rows = cal_rows[rng.choice(len(cal_rows), MAX_CALIBRATION, replace=False)]
        scores = np.sort(ref._joint(ref._surprise(cal_rows)))
        return cls(names, quantiles, scale, scores.tolist(), alpha)

    def _surprise(self, values: FloatArray) -> FloatArray:
        out = np.zeros(values.shape)
        for j, q in enumerate(self.quantiles):
            if not q:
                continue
            x = values[:, j]
            ok = np.isfinite(x)
            qa = np.asarray(q)
            # the lowest and highest level a value reaches (ties in discrete values: the middle)
            lo = np.interp(x[ok], qa, LEVELS, left=0.0, right=1.0)
            hi = np.interp(-x[ok], -qa[::-1], LEVELS[::-1], left=1.0, right=0.0)
            level = (lo + hi) / 2
            tail = np.minimum(level, 1.0 - level)
            edge = 0.5 / (len(LEVELS) - 1)  # the tail mass at the last quantile
            beyond = np.maximum(qa[0] - x[ok], x[ok] - qa[-1])
            outside = beyond > 0
            tail = np.maximum(tail, edge)
            tail[outside] = edge * np.exp(-beyond[outside] / self.scale[j])
            out[ok, j] = -np.log10(np.maximum(tail, FLOOR))
        return out

    def _joint(self, surprise: FloatArray) -> FloatArray:
        k = min(self.top_k, surprise.shape[1])
        if k == 0:
            return np.zeros(len(surprise))
        top = -np.partition(-surprise, k - 1, axis=1)[:, :k]
        out: FloatArray = top.mean(axis=1)
        return out

    def surprise(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each feature's surprise per row (``-log10`` of its tail probability; 0 missing)."""
        return pd.DataFrame(
            self._surprise(X[self.names].to_numpy(dtype=np.float64)),
            columns=self.names,
            index=X.index,
        )

    def p_value(self, X: pd.DataFrame) -> FloatArray:
        """The conformal p-value of each row's joint score among the calibration hours."""
        joint = self._joint(self._surprise(X[self.names].to_numpy(dtype=np.float64)))
        cal = np.asarray(self.calibration)
        at_or_above = cal.size - np.searchsorted(cal, joint, side="left")
        return np.asarray((1.0 + at_or_above) / (1.0 + cal.size), dtype=np.float64)

    def flag(self, X: pd.DataFrame, alpha: float | None = None) -> npt.NDArray[np.bool_]:
        """Rows unlike the training data: p-value at most ``alpha`` (default: the reference's)."""
        out: npt.NDArray[np.bool_] = self.p_value(X) <= (self.alpha if alpha is None else alpha)
        return out

    def drivers(self, X: pd.DataFrame, k: int = 3) -> list[list[tuple[str, float]]]:
        """Each row's ``k`` most surprising features with their surprise (the reasons for a
        flag, shown with it)."""
        s = self._surprise(X[self.names].to_numpy(dtype=np.float64))
        order = np.argsort(-s, axis=1)[:, :k]
        return [[(self.names[j], float(s[i, j])) for j in row if s[i, j] > 0]
                for i, row in enumerate(order)]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["ALPHA", "TOP_K", "ShiftReference"]
