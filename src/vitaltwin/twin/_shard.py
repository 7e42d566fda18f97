"""Many patients' twins kept as one batch: the live service's shard.

A :class:`TwinShard` holds the ensembles of every patient it tracks in one array and
assimilates a batch of new observations — any patients, any number of seconds — with one
batched short cycle (:func:`vitaltwin.twin.run_cycle`) per round of cycles, instead of one call
per patient: at 1 Hz a ward of thousands of beds is one call per second.

It follows :class:`~vitaltwin.twin.PatientTwin`'s rules for what is assimilated: observations
are grouped per patient into cycles of :data:`CYCLE_S` from the twin's time; superseded and
retracted versions and censored values are left out; values outside the spec's physical range
are rejected; a cycle with an invasive pressure (ECG heart rate) does not also use the cuff
(pulse oximeter) value of the same code; charted inputs (FiO2) set the model's input; values
timed at or before a patient's twin time are *late* (counted, not assimilated), so
re-delivered observations are never assimilated twice. The ensembles move with the short
cycle's explicit Euler step over gaps of up to :data:`SHORT_CYCLE_S` and with the model's own
integrator (batched, as :func:`vitaltwin.twin.advance` does for one patient) over longer ones.

Determinism: a patient's process noise comes from a key folded from the shard's seed, the
patient's identifier and the patient's cycle count, so a patient's result depends neither on
the other patients in the batch nor on how the batch is padded (up to floating-point rounding
of the vectorized arithmetic, ~1e-11), and a shard restored from :meth:`TwinShard.save`
continues exactly as the saved one would have.

Batches are cut into chunks of at most :data:`CHUNK` patients, each padded to a power of two
(at least 8), so at most eight shapes are ever compiled; :meth:`TwinShard.warm_up` compiles them
ahead for an expected ward size.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa

import vitaltwin
from vitaltwin.data.versions import current_frame
from vitaltwin.model import TwinSpec
from vitaltwin.physiology import PatientProfile
from vitaltwin.simulate import partitioned_step
from vitaltwin.twin._artefacts import screen
from vitaltwin.twin._ensemble import (
    SUSTAINED_S,
    Layout,
    initial_members,
    layout_for,
    perturb,
)
from vitaltwin.twin._forecast import Trajectories, run_schedule
from vitaltwin.twin._track import BLOCK_PATIENTS, SHORT_CYCLE_S, CycleArrays, run_cycle
from vitaltwin.twin._twin import (
    _MIN_SD,
    CYCLE_S,
    PatientTwin,
    TwinError,
    direct_measurements,
    model_version,
)

SHARD_FORMAT = 3  # 2: each patient's start time (start_us); 3: gated_since_us
READABLE_FORMATS = (2, 3)  # a format-2 checkpoint has no gate runs: none are open
MIN_BATCH = 8
CHUNK = 1024
"""Patients per batched call at most: a larger batch is cut into calls of this size, so only
the powers of two from :data:`MIN_BATCH` to here are ever compiled (about 2 s each on this
machine) and padding never wastes more than a chunk's rounding."""
_US = 1_000_000


def padded_size(n: int) -> int:
    """The batch size ``n`` patients (at most :data:`CHUNK`) are padded to: the next power of
    two, at least :data:`MIN_BATCH`."""
    return min(CHUNK, max(MIN_BATCH, 1 << max(0, int(n) - 1).bit_length()))


def _sizes(limit: int) -> list[int]:
    """The padded batch sizes up to the one ``limit`` patients use."""
    sizes = [MIN_BATCH]
    while sizes[-1] < min(limit, CHUNK):
        sizes.append(2 * sizes[-1])
    return sizes


def _padding(b: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a batch of ``b`` padded to ``size`` (the padding repeats row 0), and which rows
    are real."""
    pad = np.concatenate([np.arange(b), np.zeros(size - b, np.int64)])
    return pad, np.arange(size) < b


@dataclass(frozen=True)
class ShardUpdate:
    """What one :meth:`TwinShard.assimilate` did."""

    patients: tuple[str, ...]  # patients whose twin moved, with their new times:
    times: tuple[datetime, ...]
    values: int  # values taken into a cycle (used or gated)
    gated: int  # of which gated by the innovation test
    rejected: int  # outside the spec's physical range, or a known artefact
    late: int  # at or before the patient's twin time: not assimilated
    calls: int  # batched cycles run
    # values with a known artefact signature, not assimilated: (patient, time, code, reason)
    artefacts: tuple[tuple[str, datetime, str, str], ...] = ()
    # vital signs gated for SUSTAINED_S and then followed as real changes: (patient, time, name)
    followed: tuple[tuple[str, datetime, str], ...] = ()


def _key(patient_id: str) -> int:
    return zlib.crc32(patient_id.encode()) & 0x7FFFFFFF


@jax.jit
def _keys(root: jax.Array, patients: jax.Array, counts: jax.Array) -> jax.Array:
    return jax.vmap(lambda p, c: jax.random.fold_in(jax.random.fold_in(root, p), c))(
        patients, counts
    )


@partial(jax.jit, static_argnums=(0,))
def _integrate(
    layout: Layout,
    z: jax.Array,
    base: jax.Array,
    u: jax.Array,
    n_steps: jax.Array,
    duration_s: jax.Array,
    keys: jax.Array,
) -> jax.Array:
    """Members ``(B, N, n_aug)`` integrated over each patient's ``duration_s`` in ``n_steps``
    equal steps (RK4 with the slow components by Euler, as :func:`advance`), then perturbed by
    the process noise of that duration drawn from each patient's key."""
    model = layout.model
    b, n = z.shape[:2]
    uu = jnp.broadcast_to(u[:, None, :], (b, n, u.shape[-1]))
    xs, ps, us = model.split(z[..., : layout.n_states], layout.params(z, base[:, None, :]), uu)
    h = (duration_s / n_steps)[:, None]  # (B, 1): against the members' axis

    def step(_: int, xx: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return partitioned_step(model, jnp.zeros(()), xx, h, ps, us)

    xs = jax.lax.fori_loop(0, n_steps, step, dict(xs))
    zz = jnp.concatenate([model.join_states(xs), z[..., layout.n_states :]], axis=-1)
    zz = layout.decay(zz, duration_s[:, None, None])
    noise_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)  # not the cycle's draws
    normals = jax.vmap(lambda k: jax.random.normal(k, z.shape[1:], z.dtype))(noise_keys)
    return perturb(layout, zz, normals, duration_s[:, None, None])


class TwinShard:
    """The twins of many patients of one model, assimilated together (module docstring).

    Args:
        spec: the model's twin declaration (default: the ward model's).
        n_members: ensemble size per patient.
        discrepancy, discrepancy_tau_h: the model-discrepancy states (as for
            :class:`PatientTwin`; :data:`vitaltwin.physiology.ward_twin.VITAL_SIGN_DISCREPANCY`
            for real patients).
        seed: the shard's random seed.
        block: patients per cache-sized block of the batched cycle.
    """

    def __init__(
        self,
        spec: TwinSpec | None = None,
        n_members: int = 32,
        discrepancy: tuple[tuple[str, float], ...] = (),
        discrepancy_tau_h: float = 48.0,
        seed: int = 0,
        block: int = BLOCK_PATIENTS,
    ) -> None:
        if n_members < 8:
            raise TwinError(f"n_members must be >= 8, got {n_members}")
        self.layout = layout_for(
            spec,
            discrepancy=tuple((str(n), float(sd)) for n, sd in discrepancy),
            discrepancy_tau_h=float(discrepancy_tau_h),
        )
        self.spec = self.layout.spec
        self.model = self.layout.model
        self.model_version = model_version(self.model)
        self.n_members, self.seed, self.block = n_members, seed, block
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.profiles: list[PatientProfile] = []
        m = len(self.spec.observables)
        self._r_instrument = np.array([o.sd_instrument**2 for o in self.spec.observables])
        # instrument variance by stated method (per observable; the default where the
        # observable gives none for that method)
        self._r_method = {
            method: np.array([o.sd_instrument_for(method) ** 2 for o in self.spec.observables])
            for method in sorted({k for o in self.spec.observables for k, _ in o.sd_by_method})
        }
        self._r_model = np.array([o.sd_model**2 for o in self.spec.observables])
        self._root = jax.random.PRNGKey(seed)
        # per patient (grown by doubling): ensembles, parameters, inputs, time (epoch us),
        # cycles run, values taken per observable, gated, rejected and late counts
        self.members = np.zeros((0, n_members, self.layout.n_aug))
        self.base = np.zeros((0, self.model.n_params))
        self.inputs = np.zeros((0, self.model.n_inputs))
        self.time_us = np.zeros(0, np.int64)
        self.start_us = np.zeros(0, np.int64)  # when each patient's twin started
        self.cycles = np.zeros(0, np.int64)
        self.values = np.zeros((0, m), np.int64)
        self.gated = np.zeros(0, np.int64)
        self.rejected = np.zeros(0, np.int64)
        self.late = np.zeros(0, np.int64)
        self._pkey = np.zeros(0, np.int64)
        # per patient and observable: since when gated in every cycle (epoch us; -1: not)
        self.gated_since_us = np.zeros((0, m), np.int64)
        # codes the twin takes: its observables' LOINC codes, then its charted inputs'
        self._obs_codes = list(self.spec.by_loinc)
        self._obs_of_code = np.array(
            [self.spec.by_loinc[c] for c in self._obs_codes] + [0] * len(self.spec.inputs_by_loinc)
        )
        self._codes = pd.Index([*self._obs_codes, *self.spec.inputs_by_loinc])
        self._ids: pd.Index = pd.Index([], dtype=object)
        self.saved_at: datetime | None = None  # when the checkpoint it was loaded from was saved
        self._baselines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._followed: list[tuple[str, datetime, str]] = []  # during one assimilate call

    # -- patients -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, patient_id: object) -> bool:
        return patient_id in self.index

    def _grow(self, n: int) -> None:
        cap = self.members.shape[0]
        if n <= cap:
            return
        new = max(n, 2 * cap, 16)
        for name in _ARRAYS:
            a = getattr(self, name)
            grown = np.zeros((new, *a.shape[1:]), a.dtype)
            grown[:cap] = a
            setattr(self, name, grown)

    def add(self, patient_id: str, profile: PatientProfile, start: datetime) -> None:
        """Start tracking a patient from the population prior for ``profile`` at ``start``."""
        if patient_id in self.index:
            raise TwinError(f"patient {patient_id!r} is already in the shard")
        if start.tzinfo is None:
            raise TwinError("start must be timezone-aware (UTC)")
        i = len(self.ids)
        self._grow(i + 1)
        key = profile.model_dump_json()
        if key not in self._baselines:  # the model's steady state: ~10 ms, once per profile
            self._baselines[key] = self.spec.baseline(self.model, profile)
        base, x_rest = self._baselines[key]
        rng = np.random.default_rng([self.seed, _key(patient_id)])
        self.members[i] = initial_members(self.layout, x_rest, base, self.n_members, rng)
        self.base[i] = base
        self.inputs[i] = self.model.default_inputs()
        self.time_us[i] = self.start_us[i] = _us(start)
        self.gated_since_us[i] = -1
        self._pkey[i] = _key(patient_id)
        self.ids.append(patient_id)
        self.index[patient_id] = i
        self.profiles.append(profile)

    def time(self, patient_id: str) -> datetime:
        """The patient's twin time (UTC)."""
        return _dt(int(self.time_us[self._i(patient_id)]))

    def _i(self, patient_id: str) -> int:
        try:
            return self.index[patient_id]
        except KeyError:
            raise TwinError(f"patient {patient_id!r} is not in the shard") from None

    def twin(self, patient_id: str) -> PatientTwin:
        """A copy of one patient's twin as a :class:`PatientTwin` (for forecasts, what-if,
        estimates); changing it does not change the shard."""
        i = self._i(patient_id)
        twin = PatientTwin(
            patient_id,
            self.profiles[i],
            _dt(int(self.time_us[i])),
            n_members=self.n_members,
            seed=int(self.cycles[i]),
            members=self.members[i].copy(),
            spec=self.spec,
            discrepancy=self.layout.discrepancy,
            discrepancy_tau_h=self.layout.discrepancy_tau_h,
        )
        twin.base = self.base[i].copy()
        twin.inputs = self.inputs[i].copy()
        twin.gated_since = {
            self.spec.names[j]: _dt(int(u)) for j, u in enumerate(self.gated_since_us[i]) if u >= 0
        }
        return twin

    # -- assimilation ---------------------------------------------------------------------------

    def assimilate(self, observations: pd.DataFrame | pa.Table) -> ShardUpdate:
        """Assimilate new observations of any of the shard's patients (columns ``patient_id``,
        ``effective_time``, ``loinc``, ``value``; the canonical schema works as is). Patients
        not in the shard raise :class:`TwinError` (add them first)."""
        df = observations.to_pandas() if isinstance(observations, pa.Table) else observations
        missing = {"patient_id", "effective_time", "loinc", "value"} - set(df.columns)
        if missing:
            raise TwinError(f"observations lack columns {sorted(missing)}")
        df = current_frame(df)
        if "comparator" in df.columns:
            df = df[df["comparator"].fillna("=") == "="]
        if len(self._ids) != len(self.ids):  # patients were added since
            self._ids = pd.Index(self.ids, dtype=object)
        p_all = self._ids.get_indexer(pd.Index(df["patient_id"]))
        if (p_all < 0).any():
            unknown = sorted(set(df["patient_id"][p_all < 0]))
            raise TwinError(f"patients not in the shard: {unknown[:5]}")
        charted = self.spec.inputs_by_loinc
        # the codes taken: the observables', then the charted inputs' (-1: not taken)
        j_all = self._codes.get_indexer(pd.Index(df["loinc"]))
        keep = j_all >= 0
        df, p_all, j_all = df[keep], p_all[keep], j_all[keep]
        empty = ShardUpdate((), (), 0, 0, 0, 0, 0)
        if df.empty:
            return empty
        t = pd.to_datetime(df["effective_time"])
        if t.dt.tz is None:
            raise TwinError("effective_time must be timezone-aware (UTC)")
        t_us = t.dt.tz_convert(None).to_numpy().astype("datetime64[us]").view(np.int64)
        p = p_all.astype(np.int64)
        late = t_us <= self.time_us[p]
        np.add.at(self.late, p[late], 1)
        n_late = int(late.sum())
        df, t_us, p, jc = df[~late], t_us[~late], p[~late], j_all[~late]
        if df.empty:
            return ShardUpdate((), (), 0, 0, 0, n_late, 0)
        cyc = (t_us - self.time_us[p]) // round(CYCLE_S * _US)
        clean, screened = screen(df, [pd.Series(p, index=df.index), pd.Series(cyc, index=df.index)])
        artefacts = tuple(
            (self.ids[p[r]], _dt(int(t_us[r])), str(df["loinc"].iloc[r]), reason)
            for r, reason in screened
        )
        np.add.at(self.rejected, p[~clean], 1)
        n_artefacts = int((~clean).sum())
        df, t_us, p, cyc, jc = df[clean], t_us[clean], p[clean], cyc[clean], jc[clean]
        if df.empty:
            return ShardUpdate((), (), 0, 0, n_artefacts, n_late, 0, artefacts)
        if "method" in df.columns:
            keep = direct_measurements(
                df, [pd.Series(p, index=df.index), pd.Series(cyc, index=df.index)]
            )
            df, t_us, p, cyc, jc = df[keep], t_us[keep], p[keep], cyc[keep], jc[keep]
        # cycles: (patient, cycle) groups, each patient's in time order, ranked per patient
        groups = pd.DataFrame({"p": p, "c": cyc})
        g = groups.groupby(["p", "c"], sort=True).ngroup().to_numpy()
        n_g = int(g.max()) + 1
        when = np.full(n_g, np.iinfo(np.int64).min)
        np.maximum.at(when, g, t_us)
        first = pd.DataFrame({"g": g, "p": p}).drop_duplicates("g").sort_values("g")
        g_patient = first["p"].to_numpy()
        g_rank = first.groupby("p").cumcount().to_numpy()
        # values per cycle and observable: range-checked, summed, counted
        m = len(self.spec.observables)
        values = df["value"].to_numpy(np.float64)
        is_obs = jc < len(self._obs_codes)
        jo = np.where(is_obs, self._obs_of_code[jc], 0)
        ok = (
            is_obs
            & np.isfinite(values)
            & (values >= self.spec.low[jo])
            & (values <= self.spec.high[jo])
        )
        bad = is_obs & ~ok
        np.add.at(self.rejected, p[bad], 1)
        # inverse-variance weights by measurement method (one method: the values' mean)
        var = self._r_instrument[jo]
        if "method" in df.columns and self._r_method:
            method = df["method"].to_numpy(object)
            for name, r_m in self._r_method.items():
                by = method == name
                var = np.where(by, r_m[jo], var)
        weight = 1.0 / np.maximum(var, _MIN_SD**2)
        y_w = np.zeros((n_g, m))
        w = np.zeros((n_g, m))
        y_n = np.zeros((n_g, m), np.int64)
        np.add.at(y_w, (g[ok], jo[ok]), weight[ok] * values[ok])
        np.add.at(w, (g[ok], jo[ok]), weight[ok])
        np.add.at(y_n, (g[ok], jo[ok]), 1)
        # charted inputs: each cycle's last value per input
        settings: dict[int, list[tuple[int, float]]] = {}
        if charted:
            for k_code, ci in enumerate(charted.values()):
                rows = np.flatnonzero(jc == len(self._obs_codes) + k_code)
                if rows.size:
                    order = rows[np.argsort(t_us[rows], kind="stable")]
                    last = pd.Series(values[order], index=g[order]).groupby(level=0).last()
                    k = self.model.input_index(ci.input)
                    for gi, v in zip(last.index.to_numpy(), last.to_numpy(), strict=True):
                        settings.setdefault(int(gi), []).append(
                            (k, float(np.clip(v, ci.low, ci.high)))
                        )
        n_values, n_gated, calls = 0, 0, 0
        self._followed = []
        for rank in range(int(g_rank.max()) + 1):
            sel = np.flatnonzero(g_rank == rank)
            for gi in sel:
                for k, v in settings.get(int(gi), []):
                    self.inputs[g_patient[gi], k] = v
            _, gated = self._cycle(g_patient[sel], when[sel], y_w[sel], w[sel], y_n[sel])
            n_values += int(y_n[sel].sum())
            n_gated += int(gated.sum())
            calls += 1
        touched = np.unique(g_patient)
        return ShardUpdate(
            tuple(self.ids[i] for i in touched),
            tuple(_dt(int(u)) for u in self.time_us[touched]),
            n_values,
            n_gated,
            int(bad.sum()) + n_artefacts,
            n_late,
            calls,
            artefacts,
            tuple(self._followed),
        )

    def _cycle(
        self,
        idx: np.ndarray,
        when_us: np.ndarray,
        y_w: np.ndarray,
        w: np.ndarray,
        y_n: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One batched cycle for patients ``idx`` (distinct) ending at ``when_us``: per
        observable the precision-weighted sum of the values ``y_w``, their precisions' sum
        ``w`` (1 / instrument variance each) and their count ``y_n``."""
        dt = (when_us - self.time_us[idx]) / _US
        long = dt > SHORT_CYCLE_S
        if long.any():  # gaps: the model's own integrator first, then the analysis alone
            for c0 in range(0, int(long.sum()), CHUNK):
                c = slice(c0, c0 + CHUNK)
                self._integrate(idx[long][c], dt[long][c])
            dt[long] = 0.0
        mask = y_n > 0
        y = np.where(mask, y_w / np.where(mask, w, 1.0), 0.0)
        r = np.where(mask, 1.0 / np.where(mask, w, 1.0), self._r_instrument) + self._r_model
        # vital signs held back by the gate for SUSTAINED_S: real changes, followed
        since = self.gated_since_us[idx]
        due = mask & (since >= 0) & (when_us[:, None] - since >= round(SUSTAINED_S * _US))
        for row in np.flatnonzero(due.any(axis=1)):
            i = idx[row]
            rng = np.random.default_rng([self.seed, int(self._pkey[i]), int(self.cycles[i])])
            self.members[i], names = self.layout.reopen_discrepancy(
                self.members[i], np.flatnonzero(due[row]), rng
            )
            for name in names:
                self._followed.append((self.ids[i], _dt(int(when_us[row])), name))
        used, gated = np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
        for c0 in range(0, len(idx), CHUNK):
            c = slice(c0, c0 + CHUNK)
            used[c], gated[c] = self._chunk(idx[c], dt[c], y[c], mask[c], r[c])
        since = np.where(gated & (since < 0), when_us[:, None], since)
        self.gated_since_us[idx] = np.where(used, -1, since)
        self.time_us[idx] = when_us
        self.cycles[idx] += 1
        self.values[idx] += y_n
        self.gated[idx] += gated.sum(axis=1)
        return used, gated

    def _integrate(self, idx: np.ndarray, dt: np.ndarray) -> None:
        """Integrate patients ``idx`` over gaps ``dt`` (s) with the model's integrator, each in
        the same number of equal steps of at most the model's step, then add each one's
        process noise (from its own key)."""
        b = len(idx)
        pad, real = _padding(b, padded_size(b))
        ii = idx[pad]
        dur = np.where(real, dt[pad], 0.0)
        n_steps = max(1, int(np.ceil(dur.max() / self.layout.dt_s)))
        keys = _keys(self._root, jnp.asarray(self._pkey[ii]), jnp.asarray(self.cycles[ii]))
        z = _integrate(self.layout, jnp.asarray(self.members[ii]), jnp.asarray(self.base[ii]),
                       jnp.asarray(self.inputs[ii]), jnp.asarray(n_steps), jnp.asarray(dur),
                       keys)  # fmt: skip
        self.members[idx] = np.asarray(z)[:b]

    def _chunk(
        self, idx: np.ndarray, dt: np.ndarray, y: np.ndarray, mask: np.ndarray, r: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        b = len(idx)
        size = padded_size(b)
        pad, real = _padding(b, size)
        ii = idx[pad]
        keys = _keys(self._root, jnp.asarray(self._pkey[ii]), jnp.asarray(self.cycles[ii]))
        arrays = CycleArrays(
            jnp.asarray(self.members[ii]),
            jnp.asarray(self.base[ii]),
            jnp.asarray(self.inputs[ii]),
            jnp.asarray(y[pad]),
            jnp.asarray(mask[pad] & real[:, None]),
            jnp.asarray(r[pad]),
            keys,
            jnp.asarray(np.where(real, dt[pad], 0.0)),
        )
        z, used, gated = run_cycle(self.layout, arrays, min(self.block, size))
        self.members[idx] = np.asarray(z)[:b]
        return np.asarray(used)[:b], np.asarray(gated)[:b]

    def warm_up(self, patients: int, forecasts: int = 1, forecast_hours: float = 1.0) -> None:
        """Compile the batched cycle and the integrator over gaps for every padded batch size up
        to ``patients``, and the forecast over ``forecast_hours`` for every padded size up to
        ``forecasts`` patients (on a throwaway shard of the same model)."""
        probe = TwinShard(self.spec, self.n_members, self.layout.discrepancy,
                          self.layout.discrepancy_tau_h, self.seed, self.block)  # fmt: skip
        probe.add("warm-up", PatientProfile(), _EPOCH)
        m = len(self.spec.observables)
        for size in _sizes(patients):  # the same patient in every row: only shapes matter
            idx = np.zeros(size, np.int64)
            probe._chunk(idx, np.zeros(size), np.zeros((size, m)), np.zeros((size, m), bool),
                         np.ones((size, m)))  # fmt: skip
            probe._integrate(idx, np.full(size, 60.0))  # and over gaps
        for size in _sizes(forecasts):
            probe.forecast(["warm-up"] * size, forecast_hours)

    # -- forecasts ------------------------------------------------------------------------------

    def forecast(
        self, patient_ids: list[str], hours: float = 1.0, record_every_min: int = 5
    ) -> Trajectories:
        """Ensemble forecasts of several patients under their current inputs, in one batched
        call (rows in the order of ``patient_ids``; padded rows dropped)."""
        return self.forecast_job(patient_ids, hours, record_every_min).run()

    def forecast_job(
        self, patient_ids: list[str], hours: float = 1.0, record_every_min: int = 5
    ) -> ForecastJob:
        """What :meth:`forecast` computes, taken from the shard now (copies): a caller that
        shares the shard between threads takes the job under its lock and runs it outside,
        so a forecast never holds up assimilation."""
        if not 0.5 <= hours <= 12.0:
            raise TwinError(f"forecast horizon must be 0.5-12 h, got {hours}")
        idx = np.array([self._i(pid) for pid in patient_ids], np.int64)
        b = len(idx)
        if b == 0:
            raise TwinError("no patients to forecast")
        ii = idx[_padding(b, padded_size(b) if b <= CHUNK else -(-b // CHUNK) * CHUNK)[0]]
        steps = round(hours * 3600.0 / self.layout.dt_s)
        every = max(1, round(record_every_min * 60.0 / self.layout.dt_s))
        return ForecastJob(self.layout, self.members[ii], self.base[ii],
                           np.repeat(self.inputs[ii][:, None, :], steps, axis=1), every,
                           b)  # fmt: skip

    # -- save / load ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole shard as one NPZ document (metadata and arrays); :meth:`from_bytes`
        restores it."""
        n = len(self.ids)
        meta = {
            "format_version": SHARD_FORMAT,
            "vitaltwin_version": vitaltwin.__version__,
            "model_version": self.model_version,
            "spec": self.spec.name,
            "n_members": self.n_members,
            "seed": self.seed,
            "block": self.block,
            "discrepancy": [list(x) for x in self.layout.discrepancy],
            "discrepancy_tau_h": self.layout.discrepancy_tau_h,
            "patients": self.ids,
            "profiles": [p.model_dump() for p in self.profiles],
            "saved_at": datetime.now(UTC).isoformat(),
        }
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                 **{k: getattr(self, k)[:n] for k in _ARRAYS})  # fmt: skip
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, spec: TwinSpec | None = None) -> TwinShard:
        """Restore a shard from :meth:`to_bytes` (refuses another format or model version)."""
        try:
            with np.load(io.BytesIO(data)) as z:
                meta = json.loads(z["meta"].tobytes())
                arrays = {k: z[k] for k in _ARRAYS if k in z}
        except (OSError, ValueError, KeyError) as exc:
            raise TwinError(f"not a saved shard ({exc})") from None
        if meta.get("format_version") not in READABLE_FORMATS:
            raise TwinError(f"shard format {meta.get('format_version')}, not {SHARD_FORMAT}")
        missing = set(_ARRAYS) - set(arrays)
        if missing - {"gated_since_us"}:
            raise TwinError(f"not a saved shard (no {sorted(missing)})")
        shard = cls(spec, meta["n_members"], tuple((n, sd) for n, sd in meta["discrepancy"]),
                    meta["discrepancy_tau_h"], meta["seed"], meta["block"])  # fmt: skip
        if meta["spec"] != shard.spec.name or meta["model_version"] != shard.model_version:
            raise TwinError(
                f"saved with {meta['spec']} {meta['model_version']}, this vitaltwin has "
                f"{shard.spec.name} {shard.model_version}"
            )
        n = len(meta["patients"])
        shard._grow(n)
        for k in _ARRAYS:
            getattr(shard, k)[:n] = arrays.get(k, -1)  # only gated_since_us may be missing
        shard.ids = list(meta["patients"])
        shard.index = {pid: i for i, pid in enumerate(shard.ids)}
        shard.profiles = [PatientProfile(**p) for p in meta["profiles"]]
        shard.saved_at = datetime.fromisoformat(meta["saved_at"])
        return shard

    def save(self, path: str | Path) -> Path:
        """Write the shard to one file (owner-only), atomically: a reader finds the whole
        previous checkpoint or the whole new one, never a mix."""
        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.to_bytes())
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, spec: TwinSpec | None = None) -> TwinShard:
        """Restore a shard written by :meth:`save`."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TwinError(f"{path}: not a saved shard ({exc})") from None
        try:
            return cls.from_bytes(data, spec)
        except TwinError as exc:
            raise TwinError(f"{path}: {exc}") from None

    def start(self, patient_id: str) -> datetime:
        """When the patient's twin started (KeyError for a patient not in the shard)."""
        return _dt(int(self.start_us[self._i(patient_id)]))

    def hours_tracked(self) -> float:
        """Hours of twin time of every patient together (patient-hours)."""
        n = len(self.ids)
        return float((self.time_us[:n] - self.start_us[:n]).sum() / 3.6e9)

    def summary(self, patient_id: str) -> dict[str, Any]:
        """Counts for one patient: its start and time, cycles, values taken per observable,
        gated, rejected, late."""
        i = self._i(patient_id)
        return {
            "time": _dt(int(self.time_us[i])).isoformat(),
            "start": _dt(int(self.start_us[i])).isoformat(),
            "cycles": int(self.cycles[i]),
            "assimilated": int(self.values[i].sum()),
            "values": {n: int(v) for n, v in zip(self.spec.names, self.values[i], strict=True)},
            "gated": int(self.gated[i]),
            "rejected": int(self.rejected[i]),
            "late": int(self.late[i]),
        }


@dataclass(frozen=True)
class ForecastJob:
    """A batched forecast's inputs, copied from a shard (:meth:`TwinShard.forecast_job`)."""

    layout: Layout
    members: np.ndarray
    base: np.ndarray
    schedule: np.ndarray
    record_every: int
    rows: int  # the patients asked for; the rest is padding

    def run(self) -> Trajectories:
        traj = run_schedule(self.layout, self.members, self.base, self.schedule,
                            self.record_every)  # fmt: skip
        b = self.rows
        return Trajectories(traj.spec, traj.minutes, traj.values[:b], traj.events[:b],
                            traj.held_min[:b], traj.members_end[:b])  # fmt: skip


_ARRAYS = ("members", "base", "inputs", "time_us", "start_us", "cycles", "values", "gated",
           "rejected", "late", "_pkey", "gated_since_us")  # fmt: skip


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(t: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (t - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)
