"""Sampling parameter vectors from the declared population spread."""

from __future__ import annotations

import numpy as np

from vitaltwin.model._component import Model


def sample_parameters(
    model: Model, n: int, seed: int, base: np.ndarray | None = None, spread: float = 1.0
) -> np.ndarray:
    """``n`` parameter vectors, each parameter log-normal around ``base`` with its ``cv``.

    The log-normal's sigma is sqrt(ln(1 + (spread * cv)^2)) so the coefficient of variation
    equals ``spread * cv``; the median is the base value. Draws are clipped to the parameter's
    physiological bounds. Reproducible by ``seed``.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    base = model.default_params() if base is None else np.asarray(base, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cv = np.array([q.cv for q in model.parameters]) * spread
    sigma = np.sqrt(np.log1p(cv**2))
    draws = base * np.exp(rng.standard_normal((n, model.n_params)) * sigma)
    # Parameters whose base is not positive (offsets) are not varied.
    draws = np.where(base > 0, draws, base)
    lower = np.array([q.lower for q in model.parameters])
    upper = np.array([q.upper for q in model.parameters])
    out: np.ndarray = np.clip(draws, lower, upper)
    return out
