"""The haemodynamic surrogate network: beat-averaged pressures and flows without beating the heart.

A small fully connected network (6 drivers -> 32 -> 32 -> 7 outputs, tanh) that returns the
beat-resolved model's reflex-compensated periodic steady state. It is pure JAX, so the
ward-scale model that calls it stays jit/vmap/grad-able. The weights shipped beside this file
(``hemodynamics.npz``) are trained on the beat model by :mod:`vitaltwin.surrogate` (``vitaltwin
surrogate train``), which sits above the physiology and the solvers; this module only evaluates
the network, so the physiology does not depend on its own training code.

Drivers (``DRIVERS``): the quantities through which the ward-scale model acts on the heart and
circulation — blood volume ratio, systemic resistance ratio, contractility ratio, intrinsic heart
rate, venous tone and arterial compliance ratio, each over the physiological and septic range.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

DRIVERS: tuple[tuple[str, float, float, bool], ...] = (
    ("volume_ratio", 0.70, 1.30, True),
    ("r_sys_ratio", 0.30, 2.50, True),
    ("e_es_ratio", 0.30, 2.00, True),
    ("hr0_bpm", 50.0, 150.0, False),
    ("vu_sv_ratio", 0.90, 1.10, True),
    ("c_sa_ratio", 0.30, 1.60, True),
)
"""(name, lower, upper, log-scaled) of each surrogate input."""

DRIVER_NAMES: tuple[str, ...] = tuple(d[0] for d in DRIVERS)

TARGETS: tuple[str, ...] = (
    "map_mmhg",
    "sbp_mmhg",
    "dbp_mmhg",
    "hr_bpm",
    "sv_ml",
    "co_l_min",
    "cvp_mmhg",
)
"""Steady-state outputs, for the reference adult's size (SV and CO scale with size)."""

WEIGHTS_FILE = "hemodynamics.npz"
"""The shipped weights, beside this module (package data)."""

LOG_TARGET = np.array([t != "cvp_mmhg" for t in TARGETS])
_LO = np.array([d[1] for d in DRIVERS])
_HI = np.array([d[2] for d in DRIVERS])
_LOG_IN = np.array([d[3] for d in DRIVERS])


def scale_drivers(d: Array | np.ndarray) -> Array:
    """Drivers (..., 6) in natural units to [-1, 1] (outside the design range: beyond)."""
    d = jnp.asarray(d)
    lo, hi = jnp.asarray(_LO), jnp.asarray(_HI)
    z_log = jnp.log(jnp.maximum(d, 1e-9) / lo) / jnp.log(hi / lo)
    z_lin = (d - lo) / (hi - lo)
    return 2.0 * jnp.where(jnp.asarray(_LOG_IN), z_log, z_lin) - 1.0


def domain_excess(d: Array) -> Array:
    """How far (in scaled units, 0 inside) drivers lie outside the trained design range."""
    z = scale_drivers(d)
    return jnp.max(jnp.maximum(jnp.abs(z) - 1.0, 0.0), axis=-1)


@dataclass(frozen=True)
class HemodynamicSurrogate:
    """Trained network: ``weights`` [(W, b), ...], output mean/std, and its report."""

    weights: tuple[tuple[np.ndarray, np.ndarray], ...]
    y_mean: np.ndarray
    y_std: np.ndarray
    report: dict[str, Any]

    def __call__(self, drivers: Array) -> dict[str, Array]:
        """Steady-state outputs for drivers (..., 6) in the order of ``DRIVER_NAMES``.

        SV and CO are for the reference adult's size; multiply by the patient's size factor.
        """
        h = scale_drivers(drivers)
        for W, b in self.weights[:-1]:
            h = jnp.tanh(h @ W + b)
        W, b = self.weights[-1]
        y = (h @ W + b) * self.y_std + self.y_mean
        y = jnp.where(jnp.asarray(LOG_TARGET), jnp.exp(y), y)
        return {t: y[..., j] for j, t in enumerate(TARGETS)}

    def fingerprint(self) -> bytes:
        """The network's weights and output scaling as bytes (for model versions)."""
        parts = [a.tobytes() for wb in self.weights for a in wb]
        return b"".join([*parts, self.y_mean.tobytes(), self.y_std.tobytes()])

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"y_mean": self.y_mean, "y_std": self.y_std}
        for i, (W, b) in enumerate(self.weights):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        arrays["report_json"] = np.frombuffer(json.dumps(self.report).encode(), dtype=np.uint8)
        with Path(path).open("wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path | None = None) -> HemodynamicSurrogate:
        """Load weights; by default the ones shipped with vitaltwin."""
        if path is None:
            ref = resources.files("vitaltwin.physiology").joinpath(WEIGHTS_FILE)
            with resources.as_file(ref) as p:
                return cls.load(Path(p))
        with np.load(path) as z:
            n = sum(1 for k in z.files if k.startswith("W"))
            weights = tuple((z[f"W{i}"], z[f"b{i}"]) for i in range(n))
            report = json.loads(bytes(z["report_json"]).decode())
            return cls(weights, z["y_mean"], z["y_std"], report)


def shipped_weights_path() -> Path:
    """Where the shipped weights live (``vitaltwin surrogate train`` writes there by default)."""
    return Path(__file__).with_name(WEIGHTS_FILE)
