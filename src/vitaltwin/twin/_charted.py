"""Twins of real patients from their charts: a start from demographics and hourly tracking.

Each patient gets a twin from demographics (age and sex; when weight and height are unknown,
as in PhysioNet 2019, the sex's adult median is used: 88/76 kg, 175/161 cm, US 2015-2018
[fryar2021]) and assimilates charted values in one-hour cycles with settings chosen for
charted data (:class:`ChartedTracking`). Used by the PhysioNet replay study and by the risk
models' twin features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vitaltwin.model import TwinSpec
from vitaltwin.physiology import DEFAULT_TWIN, PatientProfile
from vitaltwin.progress import SILENT, Progress
from vitaltwin.twin._ensemble import Layout, initial_members, layout_for
from vitaltwin.twin._track import track

SIZE = {"male": (88.0, 175.0), "female": (76.0, 161.0)}


@dataclass(frozen=True)
class ChartedTracking:
    """Filter settings for tracking hourly charted data (chosen on set A, see the docs)."""

    # Filter settings for hourly charted data (chosen on 300 patients of set A, see the README):
    # no relaxation to prior spread or adaptive inflation (with hourly cycles they widen the
    # ensemble into the model's nonlinear range), faster parameter drift, less state noise, and a
    # smaller representation error (charted values are validated spot values).
    param_sd_per_sqrt_h: float = 0.3
    process_scale: float = 0.3
    representation_scale: float = 0.5
    rtps: float = 0.0
    inflation_max: float = 1.0
    # Model discrepancy of the vital signs (vitaltwin.twin._ensemble): the stationary SDs the
    # model's spec recommends (for the ward model vitaltwin.physiology.VITAL_SIGN_DISCREPANCY)
    # times discrepancy_scale (0: none), relaxing over discrepancy_tau_h. Chosen on the tuning
    # half of 400 patients (one-hour MAE of HR / MAP / SpO2): SDs a third of these with tau 6 h
    # and 16 members 5.02 / 7.39 / 2.05; these with tau 48 h and 32 members 4.57 / 6.99 / 1.90;
    # persistence 4.57 / 7.59 / 2.32 (without discrepancy, on the other half: 5.98 / 8.30 / 2.49
    # against persistence 4.87 / 7.53 / 2.05).
    discrepancy_scale: float = 1.0
    discrepancy_tau_h: float = 48.0

    def layout(self, spec: TwinSpec | None = None) -> Layout:
        """The ensemble layout of ``spec``'s model (the default model's when None) with these
        noise settings."""
        s = DEFAULT_TWIN if spec is None else spec
        return layout_for(
            s,
            param_sd_per_sqrt_h=self.param_sd_per_sqrt_h,
            process_scale=self.process_scale,
            discrepancy=tuple((n, sd * self.discrepancy_scale) for n, sd in s.discrepancy)
            if self.discrepancy_scale > 0
            else (),
            discrepancy_tau_h=self.discrepancy_tau_h,
        )

    def observation_variance(self, spec: TwinSpec) -> np.ndarray:
        """Per observable: instrument variance plus the scaled representation variance."""
        return np.array(
            [
                o.sd_instrument**2 + (self.representation_scale * o.sd_model) ** 2
                for o in spec.observables
            ]
        )


class DemographicsWarning(UserWarning):
    """A twin was started with demographics filled in from the population (named in the
    message): its starting physiology is the population's, not the patient's."""


POPULATION_AGE_YEARS = 65.0
"""Age used when it is unknown: about the median age of adult ICU admissions (PhysioNet 2019,
eICU and MIMIC-IV all have medians of 62-66 years)."""
POPULATION_SEX = "male"
"""Sex used when it is unknown: the more frequent in adult ICUs (about 55-58 % of stays)."""


def profile_from(
    sex: str | None,
    age_years: float | None,
    weight_kg: float | None = None,
    height_cm: float | None = None,
) -> tuple[PatientProfile, list[str]]:
    """The patient's profile, each unknown (None or NaN) or unusable value filled in from the
    population — age :data:`POPULATION_AGE_YEARS` (a known age clipped to the adult 18-100),
    sex :data:`POPULATION_SEX`, weight and height the sex's adult median [fryar2021] — and
    what was filled in, in words."""
    filled: list[str] = []

    def finite(v: float | None) -> float | None:
        return float(v) if v is not None and np.isfinite(v) else None

    def size(
        name: str, value: float | None, lo: float, hi: float, median: float, unit: str
    ) -> float:
        v = finite(value)
        if v is not None and lo <= v <= hi:
            return v
        was = "" if v is None else f" {v:g} {unit} (outside {lo:g}-{hi:g})"
        filled.append(f"{name}{was} -> {median:g} {unit}")
        return median

    if sex in SIZE:
        s = str(sex)
    else:
        s = POPULATION_SEX
        filled.append(f"sex {sex!r} -> {s}" if sex is not None else f"sex -> {s}")
    a = finite(age_years)
    age = POPULATION_AGE_YEARS if a is None else float(np.clip(a, 18, 100))
    if a is None:
        filled.append(f"age -> {age:g} y")
    elif a != age:
        filled.append(f"age {a:g} y (outside 18-100) -> {age:g} y")
    w = size("weight", weight_kg, 30.0, 250.0, SIZE[s][0], "kg")
    h = size("height", height_cm, 120.0, 230.0, SIZE[s][1], "cm")
    return PatientProfile(age_years=age, sex=s, weight_kg=w, height_cm=h), filled


def demographic_start(
    layout: Layout, sex: str | None, age_years: float, n_members: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Population parameters and an initial ensemble for a patient known by sex and age only
    (:func:`profile_from`: the sex's median size; age 65 where unknown, clipped to 18-100)."""
    prof, _ = profile_from(sex, age_years)
    p, x_rest = layout.spec.baseline(layout.model, prof)
    return p, initial_members(layout, x_rest, p, n_members, rng)


def track_charted(
    cfg: ChartedTracking,
    layout: Layout,
    members: np.ndarray,
    base: np.ndarray,
    inputs: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    label: str,
    on_cycle: Callable[[int, np.ndarray], None] | None = None,
    progress: Progress = SILENT,
) -> dict[str, np.ndarray]:
    """:func:`vitaltwin.twin.track` in one-hour cycles with the hourly-chart settings."""
    return track(
        layout,
        members,
        base,
        inputs,
        y,
        mask,
        3600.0,
        rng,
        on_cycle=on_cycle,
        label=label,
        progress=progress,
        r_var=cfg.observation_variance(layout.spec),
        rtps=cfg.rtps,
        inflation_max=cfg.inflation_max,
    )
