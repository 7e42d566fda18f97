"""How honest a forecast's uncertainty is: band coverage, bands rescaled on tuning data, CRPS.

A forecast is taken as normal, N(mean, sd^2), per outcome. Reported on the evaluation rows:

* the share of outcomes inside its central 50 % and 90 % bands;
* the bands *rescaled* on the tuning rows, split-conformal style (Vovk et al. 2005
  [vovk2005]; normalized by the forecast's own spread): each level's band is ``sd`` times the
  tuning rows' quantile of |standardized error| at that level instead of the normal's 0.674 and
  1.645. Their coverage on the evaluation rows says whether an honest band can be had by
  rescaling alone, and the factor on the spread (``band90_scale``: 1 = as issued) says how far
  off the forecast's own spread is;
* the bands the twin issues when calibrated *online* (:func:`online_coverage`): hour by hour,
  each hour's bands rescaled by the errors of the forecasts resolved in the hours before it
  (:class:`vitaltwin.twin.OnlineBandCalibration`), with no tuning data at all;
* the continuous ranked probability score, closed form for the normal (Gneiting & Raftery 2007
  [gneiting2007]; in the outcome's unit, lower is better), beside a reference point forecast's
  (persistence) with the spread of its errors on the tuning rows.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from vitaltwin.twin import OnlineBandCalibration

LEVELS = (0.5, 0.9)
"""Central band levels whose coverage is reported."""
UNCERTAINTY_COLUMNS = (
    *(
        f"band{int(v * 100)}_{k}"
        for v in LEVELS
        for k in ("coverage", "scale", "coverage_rescaled")
    ),
    "twin_crps",
    "persistence_crps",
)
"""The keys of :func:`uncertainty`'s result, in order."""
ONLINE_COLUMNS = tuple(
    f"band{int(v * 100)}_{k}_online" for v in LEVELS for k in ("coverage", "scale")
)
"""The keys of :func:`online_coverage`'s result, in order."""


def normal_crps(mean: np.ndarray, sd: np.ndarray | float, y: np.ndarray) -> np.ndarray:
    """CRPS of a normal forecast N(mean, sd^2) for outcome ``y`` (Gneiting & Raftery 2007
    [gneiting2007]): sd (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = (y - mean)/sd."""
    z = (y - mean) / sd
    out: np.ndarray = sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    return out


def uncertainty(
    mean: np.ndarray,
    sd: np.ndarray,
    y: np.ndarray,
    reference: np.ndarray,
    tune: np.ndarray,
    ev: np.ndarray,
) -> dict[str, float]:
    """Band coverage (as issued and rescaled on the ``tune`` rows) and CRPS on the ``ev`` rows
    (module docstring): ``mean``, ``sd`` the predictive distribution of outcomes ``y``,
    ``reference`` a point forecast (persistence) scored with the spread of its errors on the
    ``tune`` rows."""
    out: dict[str, float] = {}
    z_abs = np.abs(y - mean) / sd
    for level in LEVELS:
        pct = int(level * 100)
        half = norm.ppf(0.5 + level / 2)
        out[f"band{pct}_coverage"] = float((z_abs[ev] <= half).mean())
        k = float(np.quantile(z_abs[tune], level))
        out[f"band{pct}_scale"] = k / half  # the factor on the twin's own spread
        out[f"band{pct}_coverage_rescaled"] = float((z_abs[ev] <= k).mean())
    out["twin_crps"] = float(normal_crps(mean[ev], sd[ev], y[ev]).mean())
    p_sd = float(np.std((y - reference)[tune], ddof=1))
    out["persistence_crps"] = float(normal_crps(reference[ev], p_sd, y[ev]).mean())
    return out


def online_coverage(
    mean: np.ndarray,
    sd: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    window: int = 5000,
    min_errors: int = 200,
    counted: np.ndarray | None = None,
) -> dict[str, float]:
    """Coverage on ``counted`` (default: ``rows``) ``(B, T)`` of the bands issued when
    calibrated online: step ``k``'s bands by :class:`vitaltwin.twin.OnlineBandCalibration`
    holding the errors of ``rows`` in the steps before ``k`` (the first, before ``min_errors``
    are in, as issued); and the factor on the spread at the end (``band90_scale_online``)."""
    inside, scales = online_inside(mean, sd, y, rows, window, min_errors, counted)
    n = int((rows if counted is None else counted).sum())
    out: dict[str, float] = {}
    for level in LEVELS:  # in ONLINE_COLUMNS' order
        pct = int(level * 100)
        out[f"band{pct}_coverage_online"] = int(inside[level].sum()) / n if n else float("nan")
        out[f"band{pct}_scale_online"] = scales[f"band{pct}_scale_online"]
    return out


def online_inside(
    mean: np.ndarray,
    sd: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    window: int = 5000,
    min_errors: int = 200,
    counted: np.ndarray | None = None,
) -> tuple[dict[float, np.ndarray], dict[str, float]]:
    """What :func:`online_coverage` counts, outcome by outcome: per level, ``(B, T)`` true
    where a ``counted`` outcome fell inside its online-calibrated band (for intervals by
    resampling patients); and the factors on the spread at the end."""
    cal = OnlineBandCalibration(["y"], window=window, min_errors=min_errors)
    count = rows if counted is None else counted
    inside = {level: np.zeros(y.shape, bool) for level in LEVELS}
    for k in range(y.shape[1]):
        r, c = rows[:, k], count[:, k]
        if c.any():
            m, s, v = mean[c, k], sd[c, k], y[c, k]
            for level in LEVELS:
                lo, hi = cal.band("y", m, s, level)
                inside[level][c, k] = (v >= lo) & (v <= hi)
        if r.any():
            cal.record("y", y[r, k], mean[r, k], sd[r, k])
    return inside, {f"band{int(lv * 100)}_scale_online": cal.factor("y", lv) for lv in LEVELS}
