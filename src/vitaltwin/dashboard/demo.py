"""The demo ward: the service on embedded defaults (DuckDB, in-process bus) with its dashboard,
fed by a device gateway of virtual patients (or of real PhysioNet set-A stays) over HTTP.

* **Virtual ward** (default): :class:`vitaltwin.simulate.ward_course.VirtualWard` patients —
  some develop sepsis or bleed at hidden times — measured as a monitor measures them
  (:func:`~vitaltwin.simulate.ward_course.measure`: noise and artefacts): every wall-clock
  second one value of each monitor vital per bed (HR, SBP, DBP, MAP, SpO2, RR), temperature
  every simulated hour and lactate, WBC and haemoglobin every four simulated hours.
* **Time acceleration**: the ward's course starts ``hours`` before now and plays at ``speed``
  simulated seconds per wall second (60, the default: a simulated hour per minute, so a septic
  course unfolds in minutes) until it reaches now; from then on it runs in real time, with 1 Hz
  vitals. Data times never run ahead of the clock: the service quarantines values from the
  future, as it should.
* **Replay** (``replay=`` a set-A Parquet file): real stays of at least a day, side by side,
  their chart times moved to start together ``hours`` before now, streamed the same way.

Everything goes through ``POST /v1/observations`` and ``POST /fhir`` as a gateway's would
(with its own API key), so the demo exercises the service's own inputs. The beds are split
between ``units`` (a FHIR extension on each Patient), and :func:`demo_accounts` makes a user of
every role with a fresh password, so signing in as a unit's nurse shows that unit only.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from vitaltwin.governance import Directory
from vitaltwin.interop.fhir_export import EXTENSION
from vitaltwin.physiology import WARD_TWIN
from vitaltwin.simulate.ward_course import LABS, MONITOR, VirtualWard, WardCourse, measure

log = logging.getLogger("vitaltwin.demo")
DEMO_COURSE = WardCourse(septic_fraction=0.35, bleeding_fraction=0.15, onset_hours=(1, 6))
"""Insults within the first six simulated hours, so the demo shows them within minutes."""


@dataclass(frozen=True)
class DemoConfig:
    beds: int = 24
    speed: float = 60.0  # simulated seconds per wall second, until the course reaches now
    hours: float = 12.0  # the course starts this long before now
    seed: int = 2026
    artefact_rate: float = 0.002  # per monitor value
    noise_scale: float = 0.4  # of each observable's declared SD (which allows for model error)
    replay: Path | None = None  # a PhysioNet set-A Parquet file: real stays instead
    course: WardCourse = field(default_factory=lambda: DEMO_COURSE)
    units: tuple[str, ...] = ("ICU-A", "ICU-B")  # the beds are split between them in order

    def __post_init__(self) -> None:
        if not 1 <= self.beds <= 500:
            raise ValueError(f"beds: 1-500, not {self.beds}")
        if not 1 <= self.speed <= 3600:
            raise ValueError(f"speed: 1-3600 simulated seconds per second, not {self.speed}")
        if not 0 <= self.hours <= 72:
            raise ValueError(f"hours: 0-72 h of course before now, not {self.hours}")
        if not self.units:
            raise ValueError("units: one at least")

    def unit(self, bed: int) -> str:
        """The unit of bed ``bed`` (0-based): the beds split evenly, in order."""
        return self.units[bed * len(self.units) // self.beds]


def _in_unit(patient: dict[str, Any], unit: str) -> dict[str, Any]:
    return {**patient, "extension": [{"url": EXTENSION + "icu-unit", "valueString": unit}]}


DEMO_ROLES = (
    ("nurse", "nurse-{unit}", True),
    ("charge_nurse", "charge-nurse", False),
    ("clinician", "clinician", False),
    ("data_scientist", "data-scientist", False),
    ("auditor", "auditor", False),
    ("administrator", "administrator", False),
)
"""The demo's users: a nurse per unit; the charge nurse and the clinician cover every unit."""


def demo_accounts(directory: Directory, cfg: DemoConfig) -> dict[str, tuple[str, str]]:
    """Users of every role with fresh random passwords, and the demo gateway's device: user
    name -> (role, password) and ``"gateway"`` -> ("device", API key)."""
    out: dict[str, tuple[str, str]] = {}
    for role, name, per_unit in DEMO_ROLES:
        for unit in cfg.units if per_unit else (None,):
            user = name.format(unit=(unit or "").lower())
            password = secrets.token_urlsafe(12)
            units = (unit,) if unit else (cfg.units if role in ("charge_nurse", "clinician")
                                          else ())  # fmt: skip
            directory.add_user(user, role, password, units=units)
            out[user] = (role, password)
    out["gateway"] = ("device", directory.add_device("demo-gateway"))
    return out


class _VirtualSource:
    """Records of a virtual ward at simulated times (module docstring)."""

    def __init__(self, cfg: DemoConfig, start: datetime) -> None:
        self.cfg, self.start = cfg, start
        self.ward = VirtualWard(cfg.beds, cfg.seed, cfg.course)
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.ids = [f"bed-{i + 1:02d}" for i in range(cfg.beds)]
        self.truth = np.zeros((cfg.beds, 0, len(WARD_TWIN.names)))
        self.obs = {o.name: o for o in WARD_TWIN.observables}

    def patients(self) -> list[dict[str, Any]]:
        """FHIR Patients (sex and birth date, for the twins' priors)."""
        out = []
        for i, (pid, (_, row)) in enumerate(
            zip(self.ids, self.ward.profiles.iterrows(), strict=True)
        ):
            born = self.start.date().replace(year=self.start.year - round(float(row["age_years"])))
            out.append(_in_unit({"resourceType": "Patient", "id": pid, "gender": row["sex"],
                                 "birthDate": born.isoformat()}, self.cfg.unit(i)))  # fmt: skip
        return out

    def _true(self, minute: float) -> np.ndarray:
        """True observables at a simulated minute (linear between the simulated minutes)."""
        while self.truth.shape[1] < minute + 2:
            self.truth = np.concatenate([self.truth, self.ward.next_hour()], axis=1)
        k = int(minute)
        w = minute - k
        lo = self.truth[:, max(k - 1, 0)]
        hi = self.truth[:, k]
        return np.asarray((1 - w) * lo + w * hi)

    def at(self, s: float, previous_s: float) -> list[dict[str, Any]]:
        """The records of the sample at simulated second ``s`` (labs falling due since
        ``previous_s``)."""
        minute = s / 60.0
        truth = self._true(minute)[:, None, :]
        y = measure(truth, self.rng, self.cfg.artefact_rate, self.cfg.noise_scale)[:, 0, :]
        names = list(MONITOR)
        hour_s = 3600.0
        if s // hour_s > previous_s // hour_s:
            names.append("Temp")
        if (s - 1800.0) // (4 * hour_s) > (previous_s - 1800.0) // (4 * hour_s):
            names.extend(LABS)
        when = (self.start + timedelta(seconds=s)).isoformat()
        return [
            {"patient_id": pid, "time": when, "code": self.obs[n].loinc[0],
             "value": round(float(y[i, WARD_TWIN.index(n)]), 2), "unit": self.obs[n].unit,
             "device": "demo-gateway"}
            for i, pid in enumerate(self.ids) for n in names
        ]  # fmt: skip


class _ReplaySource:
    """Real set-A stays (>= 24 h), moved to start together at ``start``, side by side."""

    def __init__(self, cfg: DemoConfig, start: datetime) -> None:
        from vitaltwin.interop import read_any

        assert cfg.replay is not None
        rec = read_any(cfg.replay)
        obs = rec.observations.to_pandas()
        first = obs.groupby("patient_id")["effective_time"].agg(["min", "max"])
        long = first[(first["max"] - first["min"]) >= timedelta(hours=23)]
        rng = np.random.default_rng(cfg.seed)
        pick = sorted(rng.choice(long.index.to_numpy(), min(cfg.beds, len(long)), replace=False))
        obs = obs[obs["patient_id"].isin(pick)].copy()
        offset = obs["patient_id"].map(first["min"])
        obs["s"] = (obs["effective_time"] - offset).dt.total_seconds()
        self.obs = obs.sort_values("s")
        self.start = start
        self.patients_table = rec.patients.to_pandas()
        self.ids = pick
        self.cfg = cfg

    def patients(self) -> list[dict[str, Any]]:
        out = []
        rows = self.patients_table[self.patients_table["patient_id"].isin(self.ids)]
        for _, r in rows.iterrows():
            p: dict[str, Any] = {"resourceType": "Patient", "id": str(r["patient_id"])}
            p = _in_unit(p, self.cfg.unit(self.ids.index(r["patient_id"])))
            if r.get("sex") in ("male", "female"):
                p["gender"] = r["sex"]
            if r.get("age_years") == r.get("age_years") and r.get("age_years") is not None:
                year = self.start.year - round(float(r["age_years"]))
                p["birthDate"] = f"{year:04d}-01-01"
            out.append(p)
        return out

    def at(self, s: float, previous_s: float) -> list[dict[str, Any]]:
        due = self.obs[(self.obs["s"] > previous_s) & (self.obs["s"] <= s)]
        return [
            {"patient_id": str(r.patient_id), "code": str(r.loinc), "value": float(r.value),
             "unit": str(r.unit), "time": (self.start + timedelta(seconds=float(r.s))).isoformat()}
            for r in due.itertuples()
            if r.value == r.value
        ]  # fmt: skip


class WardFeed:
    """Streams a demo ward into a service at ``url`` (a device gateway over HTTP), one batch
    per wall second, until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        cfg: DemoConfig,
        start: datetime | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url, self.cfg = url.rstrip("/"), cfg
        self.headers = {"x-api-key": api_key} if api_key else {}
        now = (start or datetime.now(UTC)).replace(microsecond=0)
        self.start = now - timedelta(hours=cfg.hours)
        self.source = (
            _ReplaySource(cfg, self.start) if cfg.replay else _VirtualSource(cfg, self.start)
        )
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def batches(self) -> Iterator[tuple[float, list[dict[str, Any]]]]:
        """(simulated second, records) for each wall second, from the start: ``speed``
        seconds of course at a time until it reaches the wall clock, then one."""
        s, prev = 0.0, -1.0
        while True:
            yield s, self.source.at(s, prev)
            now_s = (datetime.now(UTC) - self.start).total_seconds()
            prev, s = s, max(s + 1.0, min(s + self.cfg.speed, now_s))

    def start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _post(self, client: httpx.Client, path: str, body: Any) -> None:
        try:
            r = client.post(self.url + path, json=body)
            r.raise_for_status()
        except httpx.HTTPError as exc:
            self.errors += 1
            self.last_error = f"{path}: {exc}"
            log.warning("demo feed: %s", self.last_error)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0, headers=self.headers) as client:
            bundle = {"resourceType": "Bundle", "type": "collection",
                      "entry": [{"resource": p} for p in self.source.patients()]}  # fmt: skip
            self._post(client, "/fhir", bundle)
            t_next = time.monotonic()
            for _, records in self.batches():
                if self._stop.is_set():
                    return
                if records:
                    self._post(client, "/v1/observations", records)
                    self.sent += len(records)
                t_next += 1.0
                self._stop.wait(max(0.0, t_next - time.monotonic()))
