"""One patient's twin: a model, a posterior over parameters, an ensemble of states.

A :class:`PatientTwin` is created from a patient's demographics (and, optionally, personalized
to the first hours of data: :func:`vitaltwin.twin.personalize`), then kept in step with the
patient by :meth:`PatientTwin.assimilate`: observations are grouped into one-minute cycles, the
ensemble is integrated to each cycle and updated (:mod:`vitaltwin.twin._enkf`). Every cycle
reports its innovations and what it gated or rejected, so the twin never drifts silently.

Save and restore are exact (``save``/``load``: JSON for metadata and the log, NPZ for arrays,
Parquet for the observations assimilated, random generator state included) and versioned.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import vitaltwin
from vitaltwin.data.versions import current_frame
from vitaltwin.data.vocabulary import code as vocabulary_code
from vitaltwin.model import Model, TwinSpec
from vitaltwin.physiology import PatientProfile
from vitaltwin.twin._artefacts import screen
from vitaltwin.twin._charted import DemographicsWarning, profile_from
from vitaltwin.twin._enkf import GATE_SD, analyse
from vitaltwin.twin._ensemble import (
    SUSTAINED_S,
    advance,
    constrain,
    initial_members,
    layout_for,
    predict,
)
from vitaltwin.twin._forecast import Trajectories, run_schedule

FORMAT_VERSION = 2
"""2: the layout's model-discrepancy states are recorded (a version-1 twin has none)."""
CYCLE_S = 60.0
"""Observations within one minute are assimilated together (values of one code averaged)."""


@lru_cache(maxsize=8)
def model_version(model: Model) -> str:
    """A fingerprint of the model: its name, its variables and what its components compute
    beyond their declarations (:meth:`vitaltwin.model.Component.fingerprint`: for the ward
    model, the surrogate's weights)."""
    h = hashlib.sha256()
    h.update(model.name.encode())
    for names in (model.state_names, model.param_names, model.input_names):
        h.update("|".join(names).encode())
    for c in model.components:
        h.update(c.fingerprint())
    return f"{model.name}:{h.hexdigest()[:12]}"


class TwinError(ValueError):
    """A request the twin cannot honour (bad input, time going backwards, wrong format)."""


@dataclass(frozen=True)
class CycleReport:
    """What one assimilation cycle did."""

    time: datetime
    observed: tuple[str, ...]
    used: tuple[str, ...]
    gated: tuple[str, ...]
    rejected: tuple[str, ...]
    innovation: dict[str, float]  # observed - predicted mean
    innovation_sd: dict[str, float]  # predicted SD (ensemble and observation error)
    inflation: float  # the twin's ensemble inflation after this cycle (1: model consistent)
    # each rejected value in words: what value, which range, which code and source
    rejections: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # codes of values the twin does not model (LOINC)
    followed: tuple[str, ...] = ()  # sustained deviations taken as real changes (SUSTAINED_S)

    @property
    def nis(self) -> float:
        """Mean normalised innovation squared of the values observed (about 1 when consistent)."""
        z = [(self.innovation[k] / self.innovation_sd[k]) ** 2 for k in self.innovation]
        return float(np.mean(z)) if z else float("nan")

    def message(self) -> str:
        parts = [f"{self.time:%Y-%m-%d %H:%M} UTC: {len(self.used)} used"]
        for k in self.gated:
            parts.append(
                f"{k} gated (innovation {self.innovation[k]:+.1f}, "
                f"{abs(self.innovation[k]) / self.innovation_sd[k]:.1f} SD > {GATE_SD:g})"
            )
        parts.extend(
            self.rejections
            or tuple(f"{k} rejected (outside plausible range)" for k in self.rejected)
        )
        if self.ignored:
            parts.append(f"not modelled, ignored: LOINC {', '.join(self.ignored)}")
        parts.extend(self.followed)
        return "; ".join(parts)


_MIN_SD = 1e-6
"""Instrument SDs below this count as this (an exact instrument: its weight stays finite)."""

PREFERRED_METHOD = {"non-invasive-cuff": "invasive-arterial", "pulse-oximetry": "ecg"}
"""Method left out of a cycle -> the more direct method of the same code present in it."""


def direct_measurements(df: pd.DataFrame, cycle: list[pd.Series]) -> np.ndarray:
    """Rows to assimilate: all but those whose code the cycle (rows with equal ``cycle``
    keys) also has by a more direct method (:data:`PREFERRED_METHOD`)."""
    keep = np.ones(len(df), bool)
    method = df["method"].fillna("")
    for worse, better in PREFERRED_METHOD.items():
        if not (method == worse).any():
            continue
        has_better = (method == better).groupby([*cycle, df["loinc"]]).transform("any")
        keep &= ~((method == worse) & has_better).to_numpy()
    return keep


class PatientTwin:
    """The digital twin of one patient (see the module docstring).

    Args:
        patient_id: the patient.
        profile: demographics (age, sex, weight, height).
        start: the time of the twin's initial state (timezone-aware).
        n_members: ensemble size.
        seed: random seed (process noise, initial ensemble).
        members: an initial ensemble ``(N, n_aug)`` (from :func:`personalize`); drawn from the
            population prior around the resting state when not given.
        discrepancy: observables given a model-discrepancy state, with stationary SDs
            (:mod:`vitaltwin.twin._ensemble`); :data:`VITAL_SIGN_DISCREPANCY` for a real
            patient, none (the default) when the data come from the model itself (phantoms).
        discrepancy_tau_h: the discrepancies' time constant (h).
    """

    def __init__(
        self,
        patient_id: str,
        profile: PatientProfile,
        start: datetime,
        n_members: int = 64,
        seed: int = 0,
        members: np.ndarray | None = None,
        spec: TwinSpec | None = None,
        discrepancy: tuple[tuple[str, float], ...] = (),
        discrepancy_tau_h: float = 48.0,
    ) -> None:
        if start.tzinfo is None:
            raise TwinError("start must be timezone-aware (UTC)")
        if n_members < 8:
            raise TwinError(f"n_members must be >= 8, got {n_members}")
        self.patient_id = patient_id
        self.profile = profile
        self.layout = layout_for(
            spec,
            discrepancy=tuple((str(n), float(sd)) for n, sd in discrepancy),
            discrepancy_tau_h=float(discrepancy_tau_h),
        )
        self.spec = self.layout.spec
        self.model = self.layout.model
        self.base, self.x_rest = self.spec.baseline(self.model, profile)
        self.inputs = self.model.default_inputs()
        self.time = start.astimezone(UTC)
        self.rng = np.random.default_rng(seed)
        if members is None:
            members = initial_members(self.layout, self.x_rest, self.base, n_members, self.rng)
        if members.shape != (n_members, self.layout.n_aug):
            raise TwinError(f"members must have shape {(n_members, self.layout.n_aug)}")
        self.members = np.asarray(members, dtype=np.float64)
        self.inflation = 1.0
        self.log: list[CycleReport] = []
        # since when each vital sign has been gated in every cycle (SUSTAINED_S)
        self.gated_since: dict[str, datetime] = {}
        self.assimilated: list[dict[str, Any]] = []
        self.model_version = model_version(self.model)

    @classmethod
    def for_patient(
        cls,
        patient_id: str,
        start: datetime,
        *,
        sex: str | None = None,
        age_years: float | None = None,
        weight_kg: float | None = None,
        height_cm: float | None = None,
        n_members: int = 64,
        seed: int = 0,
        spec: TwinSpec | None = None,
    ) -> PatientTwin:
        """The twin of a real patient, with the settings for real data: the model-discrepancy
        states the spec recommends (:attr:`TwinSpec.discrepancy`; the constructor's default is
        none, for data made by the model itself). What is not known of the patient (None or
        NaN) is filled in from the population (:func:`vitaltwin.twin.profile_from`) with a
        :class:`DemographicsWarning` saying what."""
        profile, filled = profile_from(sex, age_years, weight_kg, height_cm)
        if filled:
            warnings.warn(
                f"twin of {patient_id}: demographics from the population: {', '.join(filled)}",
                DemographicsWarning,
                stacklevel=2,
            )
        s = layout_for(spec).spec
        return cls(
            patient_id,
            profile,
            start,
            n_members=n_members,
            seed=seed,
            spec=s,
            discrepancy=s.discrepancy,
            discrepancy_tau_h=s.discrepancy_tau_h,
        )

    # ------------------------------------------------------------------ state
    @property
    def n_members(self) -> int:
        return int(self.members.shape[0])

    def parameters(self) -> pd.DataFrame:
        """Posterior of the estimated parameters: mean, SD, 5th and 95th percentiles."""
        theta = np.asarray(self.layout.to_theta(self.layout.phi(jnp.asarray(self.members))))
        return pd.DataFrame(
            {
                "mean": theta.mean(0),
                "sd": theta.std(0, ddof=1),
                "q05": np.quantile(theta, 0.05, 0),
                "q95": np.quantile(theta, 0.95, 0),
                "unit": [self.model.parameter(n).unit for n in self.layout.estimated],
            },
            index=list(self.layout.estimated),
        )

    def states(self) -> pd.DataFrame:
        """Posterior of the model states: mean and SD."""
        x = self.members[:, : self.layout.n_states]
        return pd.DataFrame(
            {"mean": x.mean(0), "sd": x.std(0, ddof=1)}, index=list(self.model.state_names)
        )

    def predicted(self) -> pd.DataFrame:
        """Observables now: ensemble mean and SD (without measurement error)."""
        y = np.asarray(
            predict(
                self.layout,
                jnp.asarray(self.members[None]),
                jnp.asarray(self.base[None]),
                jnp.asarray(self.inputs[None]),
            )
        )[0]
        return pd.DataFrame(
            {"mean": y.mean(0), "sd": y.std(0, ddof=1)}, index=list(self.spec.names)
        )

    def set_input(self, name: str, value: float) -> None:
        """Set a treatment input from now on (e.g. ``fio2``, ``ne_rate_ug_kg_min``)."""
        self.inputs[self.model.input_index(name)] = float(value)

    # ------------------------------------------------------------ assimilation
    def advance_to(self, when: datetime) -> None:
        """Integrate the ensemble (with process noise) up to ``when``."""
        dt = (when - self.time).total_seconds()
        if dt < -1e-6:
            raise TwinError(f"{when.isoformat()} is before the twin's time {self.time.isoformat()}")
        if dt > 0:
            self.members = np.asarray(
                advance(
                    self.layout,
                    jnp.asarray(self.members[None]),
                    self.base[None],
                    self.inputs[None],
                    dt,
                    self.rng,
                )
            )[0]
            self.time = when

    def assimilate(self, observations: pd.DataFrame | pa.Table) -> list[CycleReport]:
        """Assimilate observations (columns ``effective_time``, ``loinc``, ``value``; the
        canonical schema works as is). Codes the twin does not model are ignored; charted codes
        the spec maps to inputs (FiO2 for the ward model) set them. Observations before the
        twin's time raise :class:`TwinError`. With the canonical ``status`` and ``comparator``
        columns, superseded and retracted versions are left out, and so are censored values
        (``<0.5``): the filter needs a measurement with an error, not a bound. With the
        ``method`` column, a cycle that has an invasive arterial pressure (an ECG heart rate)
        uses it and not the cuff pressure (the oximeter's pulse) of the same code: the two
        measure differently and must not be averaged."""
        df = observations.to_pandas() if isinstance(observations, pa.Table) else observations
        missing = {"effective_time", "loinc", "value"} - set(df.columns)
        if missing:
            raise TwinError(f"observations lack columns {sorted(missing)}")
        df = current_frame(df)
        if "comparator" in df.columns:
            df = df[df["comparator"].fillna("=") == "="]
        if df.empty:
            return []
        t = pd.to_datetime(df["effective_time"])
        if t.dt.tz is None:
            raise TwinError("effective_time must be timezone-aware (UTC)")
        df = df.assign(effective_time=t.dt.tz_convert("UTC")).sort_values("effective_time")
        first = df["effective_time"].iloc[0].to_pydatetime()
        if first < self.time - timedelta(seconds=1e-6):
            raise TwinError(
                f"observation at {first.isoformat()} is before the twin's time "
                f"{self.time.isoformat()}: assimilate in time order"
            )
        origin = pd.Timestamp(self.time)
        cycle = ((df["effective_time"] - origin).dt.total_seconds() // CYCLE_S).astype(int)
        _, screened = screen(df, [cycle])  # known artefact signatures, each with its reason
        artefact = np.full(len(df), "", dtype=object)
        for r, reason in screened:
            artefact[r] = reason
        df = df.assign(artefact=artefact)
        if "method" in df.columns:
            keep = direct_measurements(df, [cycle])
            df, cycle = df[keep], cycle[keep]
        reports = []
        for _, grp in df.groupby(cycle, sort=True):
            reports.append(self._cycle(grp))
        return reports

    def _cycle(self, grp: pd.DataFrame) -> CycleReport:
        when = grp["effective_time"].iloc[-1].to_pydatetime()
        for ci in self.spec.charted_inputs:
            charted = grp[grp["loinc"] == ci.loinc]
            if not charted.empty:
                self.set_input(ci.input, float(np.clip(charted["value"].iloc[-1], ci.low, ci.high)))
        self.advance_to(when)
        spec = self.spec
        m = len(spec.observables)
        # inverse-variance weights: values of one observable by different methods (and
        # errors) combine as their precision says; of one method, this is their mean
        yw, w, n = np.zeros(m), np.zeros(m), np.zeros(m)
        rejected: list[str] = []
        why: list[str] = []
        ignored: set[str] = set()
        inputs_charted = {ci.loinc for ci in spec.charted_inputs}
        first_row = len(self.assimilated)
        sources = grp["source"] if "source" in grp.columns else pd.Series(None, index=grp.index)
        artefacts = grp["artefact"] if "artefact" in grp.columns else pd.Series("", index=grp.index)
        methods = grp["method"] if "method" in grp.columns else pd.Series(None, index=grp.index)
        for code, value, source, artefact, method in zip(
            grp["loinc"], grp["value"], sources, artefacts, methods, strict=True
        ):
            j = spec.by_loinc.get(code)
            if j is None:
                if code not in inputs_charted:
                    ignored.add(str(code))
                continue
            status = "used"
            in_range = np.isfinite(value) and spec.low[j] <= value <= spec.high[j]
            if artefact or not in_range:
                status = "rejected"
                rejected.append(spec.names[j])
                reason = artefact or f"outside the twin's {spec.low[j]:g}-{spec.high[j]:g}"
                origin = f", from {source}" if isinstance(source, str) and source else ""
                why.append(f"{spec.names[j]} {value:g} {vocabulary_code(code).unit} rejected: "
                           f"{reason} (LOINC {code}{origin})")  # fmt: skip
            else:
                how = method if isinstance(method, str) else None
                sd_i = spec.observables[j].sd_instrument_for(how)
                weight = 1.0 / max(sd_i, _MIN_SD) ** 2
                yw[j] += weight * value
                w[j] += weight
                n[j] += 1
            self.assimilated.append(
                {"time": when, "loinc": code, "value": float(value), "status": status}
            )
        mask = n > 0
        y = np.where(mask, yw / np.where(mask, w, 1.0), 0.0)
        r = np.array(
            [
                (1.0 / wk if k else o.sd_instrument**2) + o.sd_model**2
                for o, wk, k in zip(spec.observables, w, n, strict=True)
            ]
        )
        # a vital sign held back by the gate for SUSTAINED_S is a real change: follow it
        due = [
            j for j in np.flatnonzero(mask)
            if spec.names[j] in self.gated_since
            and (when - self.gated_since[spec.names[j]]).total_seconds() >= SUSTAINED_S
        ]  # fmt: skip
        followed: list[str] = []
        if due:
            self.members, names = self.layout.reopen_discrepancy(
                self.members, np.array(due), self.rng
            )
            followed = [
                f"{k} gated since {self.gated_since[k]:%H:%M}, {SUSTAINED_S / 60:g} min or more "
                "in a row: taken as a real change, followed"
                for k in names
            ]
        pred = predict(
            self.layout,
            jnp.asarray(self.members[None]),
            jnp.asarray(self.base[None]),
            jnp.asarray(self.inputs[None]),
        )
        res = analyse(
            self.members[None],
            pred,
            y[None],
            mask[None],
            r[None],
            inflation=np.array([self.inflation]),
        )
        self.members = np.asarray(constrain(self.layout, res.members)[0])
        self.inflation = float(res.inflation[0])
        used = np.asarray(res.used[0])
        gated = np.asarray(res.gated[0])
        innov = np.asarray(res.innovation[0])
        sd = np.asarray(res.innovation_sd[0])
        for row in self.assimilated[first_row:]:
            j = spec.by_loinc.get(row["loinc"])
            if j is not None and row["status"] == "used" and gated[j]:
                row["status"] = "gated"
        for k in np.flatnonzero(mask):
            if gated[k]:
                self.gated_since.setdefault(spec.names[k], when)
            elif used[k]:
                self.gated_since.pop(spec.names[k], None)
        report = CycleReport(
            time=when,
            observed=tuple(spec.names[j] for j in np.flatnonzero(mask)),
            used=tuple(spec.names[j] for j in np.flatnonzero(used)),
            gated=tuple(spec.names[j] for j in np.flatnonzero(gated)),
            rejected=tuple(sorted(set(rejected))),
            rejections=tuple(why),
            followed=tuple(followed),
            ignored=tuple(sorted(ignored)),
            innovation={spec.names[j]: float(innov[j]) for j in np.flatnonzero(mask)},
            innovation_sd={spec.names[j]: float(sd[j]) for j in np.flatnonzero(mask)},
            inflation=self.inflation,
        )
        self.log.append(report)
        return report

    # ---------------------------------------------------------------- forecast
    def schedule(self, hours: float) -> np.ndarray:
        """The current inputs held for ``hours`` on the model's grid: ``(steps, n_inputs)``."""
        steps = round(hours * 3600.0 / self.layout.dt_s)
        return np.tile(self.inputs, (steps, 1))

    def forecast(self, hours: float = 6.0, record_every_min: int = 5) -> Trajectories:
        """Ensemble trajectories of the observables under the current inputs, with event
        probabilities (``Trajectories.probability``) and bands (``Trajectories.bands``)."""
        if not 0.5 <= hours <= 12.0:
            raise TwinError(f"forecast horizon must be 0.5-12 h, got {hours}")
        return run_schedule(
            self.layout,
            self.members[None],
            self.base[None],
            self.schedule(hours)[None],
            max(1, round(record_every_min * 60.0 / self.layout.dt_s)),
        )

    # ------------------------------------------------------------- save / load
    def save(self, directory: str | Path) -> Path:
        """Write the twin to ``directory`` (created); restore with :meth:`load`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "vitaltwin_version": vitaltwin.__version__,
            "model_version": self.model_version,
            "spec": self.spec.name,
            "patient_id": self.patient_id,
            "profile": self.profile.model_dump(),
            "time": self.time.isoformat(),
            "estimated": list(self.layout.estimated),
            "discrepancy": [list(d) for d in self.layout.discrepancy],
            "discrepancy_tau_h": self.layout.discrepancy_tau_h,
            "rng": self.rng.bit_generator.state,
            "inflation": self.inflation,
            "gated_since": {k: v.isoformat() for k, v in self.gated_since.items()},
            "log": [{**r.__dict__, "time": r.time.isoformat()} for r in self.log],
        }
        (d / "twin.json").write_text(json.dumps(meta, indent=1))
        np.savez(d / "arrays.npz", members=self.members, base=self.base, inputs=self.inputs)
        table = pa.Table.from_pylist(
            self.assimilated,
            schema=pa.schema(
                [
                    ("time", pa.timestamp("us", tz="UTC")),
                    ("loinc", pa.string()),
                    ("value", pa.float64()),
                    ("status", pa.string()),
                ]
            ),
        )
        pq.write_table(table, d / "observations.parquet")
        return d

    @classmethod
    def load(cls, directory: str | Path, spec: TwinSpec | None = None) -> PatientTwin:
        """Restore a twin written by :meth:`save` (refuses other format or model versions);
        ``spec``: the model's twin declaration, when not the default model's."""
        d = Path(directory)
        try:
            meta = json.loads((d / "twin.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TwinError(f"{d}: not a saved twin ({exc})") from None
        if meta.get("format_version") not in (1, FORMAT_VERSION):
            raise TwinError(
                f"{d}: twin format {meta.get('format_version')} is not 1 or {FORMAT_VERSION}"
            )
        arrays = np.load(d / "arrays.npz")
        twin = cls(
            meta["patient_id"],
            PatientProfile(**meta["profile"]),
            datetime.fromisoformat(meta["time"]),
            n_members=arrays["members"].shape[0],
            members=arrays["members"],
            discrepancy=tuple((n, sd) for n, sd in meta.get("discrepancy", [])),
            discrepancy_tau_h=meta.get("discrepancy_tau_h", 48.0),
            spec=spec,
        )
        if meta.get("spec", twin.spec.name) != twin.spec.name:
            raise TwinError(f"{d}: a twin of {meta['spec']}, not of {twin.spec.name}")
        if meta["model_version"] != twin.model_version:
            raise TwinError(
                f"{d}: saved with model {meta['model_version']}, this vitaltwin has "
                f"{twin.model_version}"
            )
        if tuple(meta["estimated"]) != twin.layout.estimated:
            raise TwinError(f"{d}: estimated parameters differ from this version's")
        twin.base = arrays["base"]
        twin.inputs = arrays["inputs"]
        twin.rng.bit_generator.state = meta["rng"]
        twin.inflation = float(meta["inflation"])
        twin.gated_since = {
            k: datetime.fromisoformat(v) for k, v in meta.get("gated_since", {}).items()
        }
        twin.log = [
            CycleReport(
                **{**r, "time": datetime.fromisoformat(r["time"])}
                | {
                    k: tuple(r.get(k, ()))
                    for k in (
                        "observed",
                        "used",
                        "gated",
                        "rejected",
                        "rejections",
                        "ignored",
                        "followed",
                    )
                }
            )
            for r in meta["log"]
        ]
        twin.assimilated = pq.read_table(d / "observations.parquet").to_pylist()
        return twin
