"""vitaltwin: patient digital twins for the ICU.

JAX computes in float64 throughout (set when :mod:`vitaltwin.model` is imported). Batched
simulations split the batch across all JAX devices: GPUs, or CPU cores when JAX is started
with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (see the README).
"""

from __future__ import annotations

__version__ = "0.1.0"
