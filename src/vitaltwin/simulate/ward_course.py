"""A ward of virtual patients with hidden deteriorations, simulated hour by hour, and measured
as an ICU measures them: the patients of the alert study and of the demo ward.

* **Patients** from the population model (:func:`vitaltwin.simulate.population.sample_population`:
  hidden parameters). Some develop sepsis (a pathogen inoculum at a hidden hour, as in the
  phantom study), some bleed (blood loss at ``bleed_ml_min`` for ``bleed_hours`` from a hidden
  hour: the ward model's ``hemorrhage_ml_s`` input); the rest stay stable.
* **Truth**: :meth:`VirtualWard.next_hour` integrates every patient one hour (batched) and gives
  the observables at the end of each minute.
* **Measured** (:func:`measure`): each observable's measurement error, and monitor artefacts
  at ``artefact_rate`` per value — arterial-line flush or zeroing (all pressures 0-25 or
  250-300 mmHg), SpO2 probe off (50-70 %), double-counted QRS (twice the heart rate) — as in
  the phantom study.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from vitaltwin.physiology import WARD_DT_S, WARD_TWIN
from vitaltwin.simulate._solver import make_integrator
from vitaltwin.simulate.population import sample_population

MONITOR = ("HR", "MAP", "SBP", "DBP", "SpO2", "RR")
"""What a bedside monitor reports continuously."""
LABS = ("Lactate", "WBC", "Hb")


@dataclass(frozen=True)
class WardCourse:
    """Who deteriorates, how and when (drawn per patient from these ranges)."""

    septic_fraction: float = 0.3
    bleeding_fraction: float = 0.2
    onset_hours: tuple[int, int] = (3, 16)  # the hidden insult starts in one of these hours
    severity: tuple[float, float] = (0.5, 2.5)  # pathogen inoculum (the phantom study's)
    bleed_ml_min: tuple[float, float] = (15.0, 35.0)  # class II-III haemorrhage over the hours
    bleed_hours: tuple[int, int] = (1, 3)

    def __post_init__(self) -> None:
        if not 0 <= self.septic_fraction + self.bleeding_fraction <= 1:
            raise ValueError("the septic and bleeding fractions must add up to at most 1")
        if not 0 <= self.onset_hours[0] <= self.onset_hours[1]:
            raise ValueError(f"onset hours {self.onset_hours}: need 0 <= first <= last")


class VirtualWard:
    """``n_patients`` virtual patients on the course ``course`` (reproducible by ``seed``)."""

    def __init__(self, n_patients: int, seed: int, course: WardCourse = WardCourse()) -> None:
        if n_patients < 1:
            raise ValueError("a ward needs at least one patient")
        self.model = WARD_TWIN.model
        self.n = n_patients
        rng = np.random.default_rng(seed)
        pop = sample_population(n_patients, seed=seed, model=self.model)
        self.params = pop.params
        self.profiles = pop.profiles
        draw = rng.random(n_patients)
        sepsis, bleeding = course.septic_fraction, course.septic_fraction + course.bleeding_fraction
        self.kind = np.where(draw < sepsis, "sepsis",
                             np.where(draw < bleeding, "bleeding", "stable"))  # fmt: skip
        self.onset_h = rng.integers(course.onset_hours[0], course.onset_hours[1] + 1, n_patients)
        self.severity = rng.uniform(*course.severity, n_patients)
        self.bleed_ml_min = rng.uniform(*course.bleed_ml_min, n_patients)
        self.bleed_h = rng.integers(course.bleed_hours[0], course.bleed_hours[1] + 1, n_patients)
        self.hour = 0  # hours simulated so far
        self._x = pop.states.copy()
        self._integrate = make_integrator(self.model, WARD_DT_S, 1, 60, batched=True)

    def next_hour(self) -> np.ndarray:
        """Simulate the next hour: the true observables at the end of each minute, ``(n, 60,
        m)`` in :data:`vitaltwin.physiology.WARD_TWIN`'s order."""
        model, h = self.model, self.hour
        start = (self.kind == "sepsis") & (self.onset_h == h)
        self._x[start, model.state_index("infl_p")] += self.severity[start]
        u = np.tile(model.default_inputs(), (self.n, 1))
        bleeding = (
            (self.kind == "bleeding") & (self.onset_h <= h) & (h < self.onset_h + self.bleed_h)
        )
        u[bleeding, model.input_index("hemorrhage_ml_s")] = self.bleed_ml_min[bleeding] / 60.0
        p = jnp.asarray(self.params)
        x_end, rec = self._integrate(jnp.asarray(self._x), p, jnp.asarray(u), jnp.asarray(0.0))
        y = WARD_TWIN.observe(rec, p[:, None, :], jnp.asarray(u)[:, None, :])
        self._x = np.array(x_end)
        self.hour += 1
        return np.asarray(y)


def measure(
    truth: np.ndarray, rng: np.random.Generator, artefact_rate: float, noise_scale: float = 1.0
) -> np.ndarray:
    """What the instruments report for true observables ``(n, k, m)``: each observable's
    measurement error (its declared SD times ``noise_scale``; the SDs include the twin's
    allowance for model error, so a display of raw samples may want less) and monitor artefacts
    at ``artefact_rate`` per monitor value (module docstring); SpO2 at most 100 %."""
    n, k, _ = truth.shape
    sd = noise_scale * np.array([o.sd for o in WARD_TWIN.observables])
    y = truth + rng.standard_normal(truth.shape) * sd
    add_artefacts(y, rng.random((n, k)) < artefact_rate * len(MONITOR), rng, y)
    idx = {name: WARD_TWIN.index(name) for name in WARD_TWIN.names}
    y[:, :, idx["SpO2"]] = np.minimum(y[:, :, idx["SpO2"]], 100.0)
    return y


def add_artefacts(
    y: np.ndarray, hit: np.ndarray, rng: np.random.Generator, heart_rate_from: np.ndarray
) -> np.ndarray:
    """Put a monitor artefact in ``y`` ``(n, k, m)`` at every ``hit`` ``(n, k)``, each one of
    arterial-line flush or zeroing, SpO2 probe off, double-counted QRS (twice
    ``heart_rate_from``'s heart rate) with equal chance (module docstring); returns where
    values were replaced."""
    idx = {name: WARD_TWIN.index(name) for name in ("HR", "MAP", "SBP", "DBP", "SpO2")}
    art = np.zeros(y.shape, bool)
    for i, k in zip(*np.nonzero(hit), strict=True):
        kind = rng.integers(0, 3)
        if kind == 0:  # arterial line flush or zeroing
            v = rng.uniform(0.0, 25.0) if rng.random() < 0.5 else rng.uniform(250.0, 300.0)
            for name in ("MAP", "SBP", "DBP"):
                y[i, k, idx[name]] = v
                art[i, k, idx[name]] = True
        elif kind == 1:  # SpO2 probe off
            y[i, k, idx["SpO2"]] = rng.uniform(50.0, 70.0)
            art[i, k, idx["SpO2"]] = True
        else:  # double-counted QRS
            y[i, k, idx["HR"]] = 2.0 * heart_rate_from[i, k, idx["HR"]]
            art[i, k, idx["HR"]] = True
    return art
