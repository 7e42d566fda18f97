"""Tracking many patients at once on a regular cycle grid (phantom study, replay, benchmark).

The live :class:`~vitaltwin.twin.PatientTwin` groups one patient's irregular observations into
cycles; for cohorts the observations are first put on a grid — ``y`` and ``mask`` of shape
``(patients, cycles, observables)``, a missing value being ``mask = False`` — and every cycle
integrates all ensembles to the cycle's time and assimilates what was observed, in one batched
call each.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import PartitionSpec

from vitaltwin.progress import SILENT, Progress
from vitaltwin.simulate import batch_mesh, split_batch
from vitaltwin.twin._enkf import INFLATION_MAX, RTPS, analyse
from vitaltwin.twin._ensemble import Layout, advance, constrain, perturb, predict

SHORT_CYCLE_S = 10.0


def track(
    layout: Layout,
    members: np.ndarray,
    base: np.ndarray,
    inputs: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    cycle_s: float,
    rng: np.random.Generator,
    on_cycle: Callable[[int, np.ndarray], None] | None = None,
    label: str = "tracking",
    progress: Progress = SILENT,
    r_var: np.ndarray | None = None,
    rtps: float = RTPS,
    inflation_max: float = INFLATION_MAX,
) -> dict[str, np.ndarray]:
    """Filter ``B`` patients through ``T`` cycles.

    Args:
        members: ``(B, N, n_aug)`` initial ensembles (at time 0).
        base: ``(B, n_params)``; inputs: ``(B, T, n_inputs)`` in force during each cycle.
        y, mask: ``(B, T, m)``; cycle ``k`` ends at ``(k + 1) * cycle_s``, where its values are
            assimilated.
        on_cycle: called after each analysis with the cycle index and the members.
        r_var: observation error variances ``(m,)`` (default: the spec's observables' SDs).
        rtps, inflation_max: spread control of the analysis (:func:`analyse`).
        progress: told of each cycle, under ``label`` (:mod:`vitaltwin.progress`).

    Returns the posterior mean and SD of the observables after each cycle (``mean``, ``sd``:
    ``(B, T, m)``), the forecast of each cycle made at the end of the previous one (``prior_mean``,
    ``prior_sd``: the predicted observables before assimilating), which values were used and
    gated (``(B, T, m)`` booleans) and the final members.
    """
    b, t, m = y.shape
    mean = np.zeros((b, t, m))
    sd = np.zeros((b, t, m))
    prior_mean = np.zeros((b, t, m))
    prior_sd = np.zeros((b, t, m))
    used = np.zeros((b, t, m), bool)
    gated = np.zeros((b, t, m), bool)
    z = jnp.asarray(members)
    r = np.broadcast_to(layout.spec.sd**2 if r_var is None else r_var, (b, m))
    lam = np.ones(b)
    task = progress.start(label, t)
    try:
        for k in range(t):
            u = inputs[:, k]
            z = advance(layout, z, base, u, cycle_s, rng)
            hz = predict(layout, z, jnp.asarray(base), jnp.asarray(u))
            hz_np = np.asarray(hz)
            prior_mean[:, k] = hz_np.mean(axis=1)
            prior_sd[:, k] = hz_np.std(axis=1, ddof=1)
            res = analyse(
                z, hz, y[:, k], mask[:, k], r, inflation=lam, rtps=rtps, inflation_max=inflation_max
            )
            z = constrain(layout, res.members)
            lam = np.asarray(res.inflation)
            hz_post = np.asarray(predict(layout, z, jnp.asarray(base), jnp.asarray(u)))
            mean[:, k] = hz_post.mean(axis=1)
            sd[:, k] = hz_post.std(axis=1, ddof=1)
            used[:, k] = np.asarray(res.used)
            gated[:, k] = np.asarray(res.gated)
            if on_cycle is not None:
                on_cycle(k, np.asarray(z))
            task.advance()
    finally:
        task.close()
    return {
        "mean": mean,
        "sd": sd,
        "prior_mean": prior_mean,
        "prior_sd": prior_sd,
        "used": used,
        "gated": gated,
        "members": np.asarray(z),
        "inflation": lam,
    }


BLOCK_PATIENTS = 50
"""Patients per block in the short cycle. A block's ensembles and intermediates (50 x 64
members: about 1 MB) stay in the processor's cache from the model step through the serial
analysis; the whole batch in one piece streams every intermediate through main memory several
times: on 2 cores, 10,000 patients x 64 members took 0.92 s in one piece, 0.35-0.38 s in
blocks of 25-100 and 0.45 s in blocks of 200 (``bench/bench_twin.py``)."""


class CycleArrays(NamedTuple):
    """One short cycle's per-patient inputs (leading axis: patient)."""

    z: Array  # (B, N, n_aug) members
    base: Array  # (B, n_params)
    u: Array  # (B, n_inputs)
    y: Array  # (B, m) observed values
    mask: Array  # (B, m) observed or not
    r: Array  # (B, m) observation error variances
    keys: Array  # (B,) random keys: each patient's process noise
    dt: Array  # (B,) seconds since each patient's previous cycle (0 to SHORT_CYCLE_S)


def _block_cycle(layout: Layout, a: CycleArrays) -> tuple[Array, Array, Array]:
    """One short cycle for a block of patients: one explicit Euler step of ``a.dt`` for every
    member, process noise (drawn from each patient's own key, so a patient's result does not
    depend on the block it falls in), prediction, analysis, projection.

    Short cycles only (``dt`` <= :data:`SHORT_CYCLE_S`): the ward model's fastest process
    (norepinephrine, time constant ~260 s) moves a state by well under 1 % in one step, so Euler
    is as good as RK4 here, and the observations are predicted from the signals computed for
    the step (at its start; haemodynamic outputs move far less than their measurement error in
    a few seconds) — one evaluation of the model per member instead of five."""
    model = layout.model
    z = a.z
    b, n = z.shape[:2]
    ns = layout.n_states
    uu = jnp.broadcast_to(a.u[:, None, :], (b, n, a.u.shape[-1]))
    p = layout.params(z, a.base[:, None, :])
    xs, ps, us = model.split(z[..., :ns], p, uu)
    sig = model.signals_named(jnp.zeros(()), xs, ps, us)
    d = model.derivatives_given_signals(jnp.zeros(()), xs, ps, us, sig)
    dt = a.dt[:, None]  # (b, 1): against the members' axis
    x = jnp.stack([xs[k] + dt * d[k] for k in model.state_names], axis=-1)
    normals = jax.vmap(lambda k: jax.random.normal(k, z.shape[1:], z.dtype))(a.keys)
    zz = layout.decay(jnp.concatenate([x, z[..., ns:]], axis=-1), dt[..., None])
    zz = perturb(layout, zz, normals, dt[..., None])
    hz = layout.with_discrepancy(zz, layout.spec.observables_of(zz[..., :ns], sig))
    res = analyse(zz, hz, a.y, a.mask, a.r)
    return constrain(layout, res.members), res.used, res.gated


@partial(jax.jit, static_argnums=(0, 2))
def _blocked_cycle(layout: Layout, a: CycleArrays, block: int) -> tuple[Array, Array, Array]:
    """:func:`_block_cycle` over the batch in blocks of ``block`` patients, one after another
    (the last block padded with copies of the first patient, dropped afterwards)."""
    b = a.z.shape[0]
    n_blocks = -(-b // block)
    pad = n_blocks * block - b

    def blocks(x: Array) -> Array:
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
        return x.reshape(n_blocks, block, *x.shape[1:])

    out = jax.lax.map(lambda ab: _block_cycle(layout, ab), CycleArrays(*(blocks(x) for x in a)))
    return tuple(o.reshape(n_blocks * block, *o.shape[2:])[:b] for o in out)


def cycle(
    layout: Layout,
    members: Array,
    base: Array,
    inputs: Array,
    y: np.ndarray,
    mask: np.ndarray,
    key: Array,
    dt_s: float = 1.0,
    block: int = BLOCK_PATIENTS,
) -> tuple[Array, Array, Array]:
    """A short assimilation cycle (new 1 Hz vitals for every bed): ``(members, used, gated)``.

    The batch is processed in cache-sized blocks of ``block`` patients; with several JAX devices
    (GPUs, or CPU cores exposed as devices) the patients are first split across them, each
    device running its share block by block. Patient ``i``'s process noise comes from
    ``jax.random.split(key, B)[i]``, so the result does not depend on ``block`` or the devices."""
    if not 0 < dt_s <= SHORT_CYCLE_S:
        raise ValueError(f"cycle() is for cycles of up to {SHORT_CYCLE_S:g} s, not {dt_s}")
    b = int(jnp.shape(members)[0])
    r = jnp.broadcast_to(jnp.asarray(layout.spec.sd**2), y.shape)
    arrays = CycleArrays(
        jnp.asarray(members),
        jnp.asarray(base),
        jnp.asarray(inputs),
        jnp.asarray(y),
        jnp.asarray(mask, dtype=bool),
        r,
        jax.random.split(key, b),
        jnp.full(b, float(dt_s)),
    )
    return run_cycle(layout, arrays, block)


def run_cycle(
    layout: Layout, arrays: CycleArrays, block: int = BLOCK_PATIENTS
) -> tuple[Array, Array, Array]:
    """:func:`cycle` on arrays given per patient (their own observation errors, random keys and
    cycle lengths): ``(members, used, gated)``. Compiled once per layout, batch size and block;
    callers with a changing batch pad it to a few sizes."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    b = int(arrays.z.shape[0])
    mesh = batch_mesh()
    if mesh is None or b % mesh.size:
        return _blocked_cycle(layout, arrays, min(block, b))  # type: ignore[no-any-return]
    sharded = _sharded_cycle(layout, min(block, b // mesh.size))
    return sharded(CycleArrays(*split_batch(*arrays)))


@lru_cache(maxsize=16)
def _sharded_cycle(layout: Layout, block: int) -> Callable[..., tuple[Array, Array, Array]]:
    """:func:`_blocked_cycle` with the batch split across the devices (compiled once per layout
    and block size)."""
    mesh = batch_mesh()
    spec = PartitionSpec("batch")  # type: ignore[no-untyped-call]

    def local(a: CycleArrays) -> tuple[Array, Array, Array]:
        return _blocked_cycle(layout, a, block)  # type: ignore[no-any-return]

    return jax.jit(
        jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(CycleArrays(*(spec,) * 8),),  # type: ignore[arg-type]
            out_specs=(spec,) * 3,
        )
    )
