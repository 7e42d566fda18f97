"""Phantom study: twins run on synthetic patients whose truth is known.

This is the "synthetic digital phantom" stage of twin validation. Virtual patients are drawn
from the population model (:func:`vitaltwin.simulate.population.sample_population`: hidden
parameters), most get an infection at a random hour (hidden onset and severity), and the ward
model gives their true course minute by minute. What a twin sees is what a bedside would record:

* HR, MAP, SBP, DBP, SpO2, RR every 5 minutes (monitor trend), temperature hourly, lactate and
  WBC every 6 hours, each with its instrument error and a representation error of the size the
  twin assumes (:data:`vitaltwin.physiology.WARD_OBSERVABLES`);
* artefacts: 1 % of monitor values replaced by a flush or zeroing of the arterial line (MAP,
  SBP, DBP read 0-25 mmHg or 250-300), a probe off (SpO2 50-70 %) or double-counted HR;
* gaps: two periods of 30-120 minutes per patient with no monitor data (transport, procedures).

Twins start from demographics only (population prior) and assimilate every 5 minutes. Every hour
each twin forecasts the next hour. Reported: parameter recovery (error of the posterior mean
against the hidden value, beside the error of the population value the twin started from), state
tracking error against persistence (the last valid measured value carried forward), coverage of
the 50 % and 90 % bands of the one-hour forecast by the measured values, and the sensitivity and
specificity of the forecast "MAP below 65 mmHg within the next hour" (probability >= 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from vitaltwin.physiology import WARD_DT_S, WARD_TWIN, PatientProfile, ward_baseline
from vitaltwin.progress import SILENT, Progress
from vitaltwin.simulate import make_integrator
from vitaltwin.simulate.population import Population, sample_population
from vitaltwin.simulate.ward_course import MONITOR, add_artefacts
from vitaltwin.twin import initial_members, layout_for, run_schedule, track

# the study is of the ward model's twin
NAMES, OBSERVABLES, SD = WARD_TWIN.names, WARD_TWIN.observables, WARD_TWIN.sd
LOW, HIGH = WARD_TWIN.low, WARD_TWIN.high

TARGETS = {
    "sensitivity": (0.90, 1.0),
    "specificity": (0.85, 1.0),
    "coverage_90": (0.85, 0.95),
}


@dataclass(frozen=True)
class PhantomConfig:
    n_patients: int = 200
    hours: int = 24
    n_members: int = 64
    seed: int = 7
    septic_fraction: float = 0.75
    onset_hours: tuple[int, int] = (2, 12)
    severity: tuple[float, float] = (0.5, 2.5)
    artefact_rate: float = 0.01
    gaps_per_patient: int = 2
    cycle_min: int = 5
    threshold: float = 0.5


@dataclass
class PhantomResult:
    config: PhantomConfig
    parameters: pd.DataFrame  # recovery per estimated parameter
    tracking: pd.DataFrame  # RMSE twin vs persistence per observable
    forecast: pd.DataFrame  # 1-h forecast MAE twin vs persistence, coverage per observable
    deterioration: dict[str, float]  # sensitivity, specificity, counts
    gated_artefacts: float  # fraction of artefacts the filter gated

    def pooled_coverage(self, level: int) -> float:
        """Coverage of the ``level`` % band over every forecast of every observable."""
        f = self.forecast
        return float((f[f"coverage_{level}"] * f["n"]).sum() / f["n"].sum())

    def meets_targets(self) -> dict[str, bool]:
        cov = self.pooled_coverage(90)
        return {
            "sensitivity": self.deterioration["sensitivity"] >= TARGETS["sensitivity"][0],
            "specificity": self.deterioration["specificity"] >= TARGETS["specificity"][0],
            "coverage_90": TARGETS["coverage_90"][0] <= cov <= TARGETS["coverage_90"][1],
        }


def _truth(
    cfg: PhantomConfig, rng: np.random.Generator
) -> tuple[Population, np.ndarray, np.ndarray]:
    """The virtual patients, their observables every minute ``(B, hours * 60, m)``, and which
    of them became septic."""
    layout = layout_for(WARD_TWIN)
    model = layout.model
    pop = sample_population(cfg.n_patients, seed=cfg.seed, model=model)
    b = cfg.n_patients
    septic = rng.random(b) < cfg.septic_fraction
    onset = rng.integers(cfg.onset_hours[0], cfg.onset_hours[1] + 1, b)
    severity = rng.uniform(*cfg.severity, b)
    integ = make_integrator(model, WARD_DT_S, 1, 60, batched=True)
    u = np.tile(model.default_inputs(), (b, 1))
    x = pop.states.copy()
    i_p = model.state_index("infl_p")
    per_min = []
    for h in range(cfg.hours):
        start = septic & (onset == h)
        x[start, i_p] += severity[start]
        x_end, rec = integ(
            jnp.asarray(x), jnp.asarray(pop.params), jnp.asarray(u), jnp.asarray(0.0)
        )
        y = WARD_TWIN.observe(
            rec,
            jnp.asarray(pop.params)[:, None, :],
            jnp.asarray(u)[:, None, :],
        )
        per_min.append(np.asarray(y))
        x = np.array(x_end)
    truth = np.concatenate(per_min, axis=1)  # (B, hours*60, m): minute k ends at (k+1) min
    return pop, truth, septic


def _measure(
    cfg: PhantomConfig, truth: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Noisy values on the cycle grid: (y, mask, artefact, clean) each (B, T, m)."""
    b, n_min, _ = truth.shape
    c = cfg.cycle_min
    t_cyc = n_min // c
    at = truth[:, c - 1 :: c, :]  # the value at the end of each cycle
    sd = np.array([o.sd for o in OBSERVABLES])
    clean = at + rng.standard_normal(at.shape) * sd
    mask = np.zeros(at.shape, bool)
    minute = (np.arange(t_cyc) + 1) * c
    idx = {n: NAMES.index(n) for n in NAMES}
    for n in MONITOR:
        mask[:, :, idx[n]] = True
    mask[:, :, idx["Temp"]] = (minute % 60 == 0)[None, :]
    for n in ("Lactate", "WBC"):
        mask[:, :, idx[n]] = ((minute - 60) % 360 == 0)[None, :]
    for i in range(b):
        for _ in range(cfg.gaps_per_patient):
            length = rng.integers(30, 121) // c
            s = rng.integers(0, t_cyc - length)
            mask[i, s : s + length, [idx[n] for n in MONITOR]] = False
    y = clean.copy()
    hit = (rng.random((b, t_cyc)) < cfg.artefact_rate * len(MONITOR)) & mask[:, :, idx["MAP"]]
    art = add_artefacts(y, hit, rng, clean)
    y[:, :, idx["SpO2"]] = np.minimum(y[:, :, idx["SpO2"]], 100.0)
    clean[:, :, idx["SpO2"]] = np.minimum(clean[:, :, idx["SpO2"]], 100.0)
    return y, mask, art, clean


def run_phantom(cfg: PhantomConfig = PhantomConfig(), progress: Progress = SILENT) -> PhantomResult:
    """Generate the phantoms, run their twins, and measure (see the module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    layout = layout_for(WARD_TWIN)
    model = layout.model
    pop, truth, septic = _truth(cfg, rng)
    y, mask, art, clean = _measure(cfg, truth, rng)
    # Plausibility gate at the twin's boundary (as at ingestion): outside the range is rejected.
    mask_in = mask & (y >= LOW) & (y <= HIGH)
    b, t_cyc, m = y.shape
    base = np.zeros_like(pop.params)
    members = np.zeros((b, cfg.n_members, layout.n_aug))
    for i, prof in enumerate(pop.profiles.to_dict("records")):
        p, x_rest = ward_baseline(model, PatientProfile.model_validate(prof))
        base[i] = p
        members[i] = initial_members(layout, x_rest, p, cfg.n_members, rng)
    inputs = np.broadcast_to(model.default_inputs(), (b, t_cyc, model.n_inputs))
    per_hour = 60 // cfg.cycle_min
    fc_prob = np.full((b, cfg.hours), np.nan)
    fc_bands = np.full((4, b, cfg.hours, m), np.nan)
    fc_median = np.full((b, cfg.hours, m), np.nan)
    sched = np.broadcast_to(model.default_inputs(), (b, 60, model.n_inputs))
    i_map = NAMES.index("MAP")

    def hourly(k: int, z: np.ndarray) -> None:
        if (k + 1) % per_hour:
            return
        h = (k + 1) // per_hour  # forecast made at the end of hour h-1, for hour h
        if h >= cfg.hours:
            return
        tr = run_schedule(layout, z, base, sched, record_every=1)
        fc_prob[:, h] = (tr.values[:, :, :, i_map].min(axis=2) < 65.0).mean(axis=1)
        end = tr.values[:, :, -1, :]
        noisy = end + rng.standard_normal(end.shape) * SD  # what a measurement would read
        fc_bands[:, :, h] = np.quantile(noisy, (0.05, 0.25, 0.75, 0.95), axis=1)
        fc_median[:, h] = np.median(end, axis=1)

    out = track(
        layout,
        members,
        base,
        inputs,
        np.where(mask_in, y, 0.0),
        mask_in,
        cfg.cycle_min * 60.0,
        rng,
        on_cycle=hourly,
        label="phantom twins",
        progress=progress,
    )
    # ---- parameter recovery
    theta = np.asarray(layout.to_theta(layout.phi(jnp.asarray(out["members"])))).mean(axis=1)
    hidden = pop.params[:, layout.param_idx]
    prior = base[:, layout.param_idx]
    params = pd.DataFrame(
        {
            "twin_median_abs_rel_error": np.median(np.abs(theta - hidden) / hidden, axis=0),
            "prior_median_abs_rel_error": np.median(np.abs(prior - hidden) / hidden, axis=0),
        },
        index=list(layout.estimated),
    )
    # ---- tracking: truth at each cycle end vs twin posterior mean and vs persistence
    at = truth[:, cfg.cycle_min - 1 :: cfg.cycle_min, :]
    persist = _carry_forward(np.where(mask_in, y, np.nan))
    rows = []
    for j, name in enumerate(NAMES):
        ok = ~np.isnan(persist[:, :, j])
        if not ok.any():  # never measured in the phantom (haemoglobin)
            continue
        rows.append(
            {
                "observable": name,
                "twin_rmse": float(
                    np.sqrt(np.mean((out["mean"][:, :, j][ok] - at[:, :, j][ok]) ** 2))
                ),
                "persistence_rmse": float(
                    np.sqrt(np.mean((persist[:, :, j][ok] - at[:, :, j][ok]) ** 2))
                ),
            }
        )
    tracking = pd.DataFrame(rows).set_index("observable")
    # ---- one-hour forecasts: at hour h (cycle index per_hour*h - 1 ... the measured value)
    fc_rows = []
    hours = np.arange(1, cfg.hours)
    k_end = (hours + 1) * per_hour - 1  # cycle ending at the forecast's target time
    k_now = hours * per_hour - 1
    for j, name in enumerate(NAMES):
        meas = clean[:, k_end, j]
        observed = mask[:, k_end, j] & ~art[:, k_end, j]
        now = persist[:, k_now, j]
        ok = observed & ~np.isnan(now) & ~np.isnan(fc_median[:, hours, j])
        if not ok.any():
            continue
        lo90, lo50, hi50, hi90 = (fc_bands[q][:, hours, j] for q in range(4))
        fc_rows.append(
            {
                "observable": name,
                "n": int(ok.sum()),
                "twin_mae": float(np.abs(fc_median[:, hours, j] - meas)[ok].mean()),
                "persistence_mae": float(np.abs(now - meas)[ok].mean()),
                "coverage_50": float(((meas >= lo50) & (meas <= hi50))[ok].mean()),
                "coverage_90": float(((meas >= lo90) & (meas <= hi90))[ok].mean()),
            }
        )
    forecast = pd.DataFrame(fc_rows).set_index("observable")
    # ---- deterioration: MAP < 65 at any minute of the next hour (truth)
    true_min = truth[:, :, i_map].reshape(b, cfg.hours, 60).min(axis=2) < 65.0
    pred = fc_prob[:, hours] >= cfg.threshold
    actual = true_min[:, hours]
    tp = int((pred & actual).sum())
    fn = int((~pred & actual).sum())
    tn = int((~pred & ~actual).sum())
    fp = int((pred & ~actual).sum())
    # New episodes only: the hour before was not hypotensive.
    new = ~true_min[:, hours - 1]
    tp_new = int((pred & actual & new).sum())
    fn_new = int((~pred & actual & new).sum())
    det = {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "positives": tp + fn,
        "negatives": tn + fp,
        "sensitivity_new_episodes": _ratio(tp_new, tp_new + fn_new),
        "new_episodes": tp_new + fn_new,
        "septic_patients": int(septic.sum()),
    }
    gated = float((out["gated"] & art).sum() / max(int((art & mask_in).sum()), 1))
    return PhantomResult(cfg, params, tracking, forecast, det, gated)


def _ratio(k: int, n: int) -> float:
    """k / n, or NaN when there is nothing to count (no positive hours, say)."""
    return k / n if n else float("nan")


def _carry_forward(v: np.ndarray) -> np.ndarray:
    """Last non-NaN value along axis 1 (NaN before the first)."""
    df = pd.DataFrame(v.transpose(1, 0, 2).reshape(v.shape[1], -1))
    out: np.ndarray = (
        df.ffill().to_numpy().reshape(v.shape[1], v.shape[0], v.shape[2]).transpose(1, 0, 2)
    )
    return out
