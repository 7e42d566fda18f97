"""Replaying real patients through their twins: PhysioNet 2019 and eICU, hour by hour.

The study reads canonical tables, from any file an adapter reads
(:func:`vitaltwin.interop.read_any`; for set A the PhysioNet adapter: LOINC codes, canonical
units, implausible values quarantined, one ICU encounter per stay) or from a store. Each ICU
stay becomes an hourly grid from its start (an eICU folder: see below). Each patient whose ICU
stay lasts at least ``min_hours`` hours gets a twin from demographics (age and sex; PhysioNet
gives no weight or height, so the sex's adult median is used: 88/76 kg, 175/161 cm, US
2015-2018 [fryar2021]); charted FiO2 sets the twin's ``fio2`` input. Every hour
the twin forecasts the next hour before seeing it, then assimilates it.

The one-hour-ahead forecast is compared with what was charted in the next hour for HR, MAP and
SpO2, beside the baselines a statistician would use, computed in the same run on the same hours
(:mod:`vitaltwin.validation.baselines`: persistence, the recent mean, an exponentially weighted
mean, a linear trend, a linear regression and gradient-boosted trees on lagged values; the two
fitted ones are fitted on the tuning half of the patients). Patients are split by a hash of
their identifier; every figure is reported on the evaluation half; the twin's settings were
chosen on the tuning half, whose errors are reported beside. Beside the twin's forecast, its
current estimate (the posterior an hour before) used as the forecast: what the twin's dynamics
add is the difference.

The twin's gain over persistence and over the best baseline (its MAE minus the twin's) comes
with a 95 % interval from 1,000 bootstrap resamples of the evaluation patients.

**Does the twin add information?** The boosting baseline fitted again with the twin's one-hour
forecast of the compared observables, the target's spread and the twin's estimated physiology
(posterior means of the estimated parameters an hour before) as features
(``boosting_with_twin_mae``, with the interval of boosting's MAE minus it), and with the twin's
current estimate instead of its forecast (``boosting_with_twin_now_mae``: its dynamics' share).

**eICU.** An eICU database folder is read by :func:`vitaltwin.interop.eicu.convert_eicu`
(unit stays as patients; cuff pressures): each hour's last value is the chart; an observable
the source does not chart in both halves (the demo: HR and SpO2) is named in
:attr:`ReplayResult.absent` and has no row.

**Uncertainty.** The twin's predictive distribution of the next hour's chart is its ensemble's
forecast with the chart's observation error, taken as normal: N(prior mean, prior SD^2 + r), r
the tracking's observation variance. Its band coverage, the bands rescaled on the tuning half,
the bands calibrated online on the evaluation patients' earlier hours and its CRPS beside
persistence's are those of :mod:`vitaltwin.validation.uncertainty`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vitaltwin.data import Record
from vitaltwin.data.versions import current
from vitaltwin.data.vocabulary import FIO2
from vitaltwin.interop import ReadError, read_any
from vitaltwin.interop.eicu import convert_eicu, is_eicu
from vitaltwin.physiology import WARD_TWIN
from vitaltwin.progress import SILENT, Progress
from vitaltwin.store import Store
from vitaltwin.twin import ChartedTracking, demographic_start, track_charted
from vitaltwin.validation.baselines import boosting_with, forecasts
from vitaltwin.validation.uncertainty import online_coverage, uncertainty

# the study is of the ward model's twin
NAMES, BY_LOINC, LOW, HIGH = WARD_TWIN.names, WARD_TWIN.by_loinc, WARD_TWIN.low, WARD_TWIN.high
FIO2_LOINC = FIO2.loinc

COMPARED = ("HR", "MAP", "SpO2")


@dataclass(frozen=True)
class ReplayConfig(ChartedTracking):
    """The replay study: which patients and hours, how many members, the seed; the filter
    settings for hourly charts are inherited from :class:`vitaltwin.twin.ChartedTracking`."""

    min_hours: int = 24
    max_hours: int = 48
    n_members: int = 32
    max_patients: int | None = None
    seed: int = 3


@dataclass
class ReplayResult:
    config: ReplayConfig
    patients: int
    table: pd.DataFrame  # per observable: n, MAE of the twin and of every baseline, gains
    absent: tuple[str, ...] = ()  # compared observables the data do not chart (no row)

    def beats_persistence(self) -> dict[str, bool]:
        t = self.table
        return {str(n): bool(t.loc[n, "twin_mae"] < t.loc[n, "persistence_mae"]) for n in t.index}


class ReplayError(ValueError):
    """The replay's input cannot be used (named, with the reason)."""


def _grid(
    obs: pd.DataFrame, patients: list[str], origin: pd.Series, hours: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mask, fio2) on an hourly grid from each patient's ``origin`` (ICU admission): y, mask
    (B, hours, m); fio2 (B, hours) carried forward."""
    b, m = len(patients), len(NAMES)
    pos = {p: i for i, p in enumerate(patients)}
    since = obs["effective_time"] - obs["patient_id"].map(origin)
    hour = (since.dt.total_seconds() // 3600).fillna(-1).astype(int)
    keep = obs["patient_id"].isin(pos) & (hour < hours) & (hour >= 0)
    o = obs[keep].assign(hour=hour[keep], i=obs.loc[keep, "patient_id"].map(pos))
    y = np.zeros((b, hours, m))
    mask = np.zeros((b, hours, m), bool)
    j = o["loinc"].map(BY_LOINC)
    v = o[j.notna()]
    jj = j[j.notna()].astype(int).to_numpy()
    ok = (v["value"].to_numpy() >= LOW[jj]) & (v["value"].to_numpy() <= HIGH[jj])
    y[v["i"].to_numpy()[ok], v["hour"].to_numpy()[ok], jj[ok]] = v["value"].to_numpy()[ok]
    mask[v["i"].to_numpy()[ok], v["hour"].to_numpy()[ok], jj[ok]] = True
    f = o[o["loinc"] == FIO2_LOINC]
    fio2 = np.full((b, hours), np.nan)
    fio2[f["i"].to_numpy(), f["hour"].to_numpy()] = np.clip(f["value"].to_numpy(), 0.21, 1.0)
    fio2 = pd.DataFrame(fio2.T).ffill().fillna(0.21).to_numpy().T
    return y, mask, fio2


def _gain_interval(
    err_twin: np.ndarray,
    err_other: np.ndarray,
    rows: np.ndarray,
    rng: np.random.Generator,
    n_boot: int = 1000,
) -> tuple[float, float]:
    """95 % interval of a baseline's MAE minus the twin's (positive: the twin is better) over
    hours ``rows`` ``(B, T)``, resampling patients (an hour's errors are correlated within a
    patient, so hours are not independent draws)."""
    keep = rows.any(axis=1)
    if not keep.any():
        return float("nan"), float("nan")
    n = rows[keep].sum(axis=1)
    d = np.where(rows, err_other - err_twin, 0.0)[keep].sum(axis=1)
    pick = rng.integers(0, keep.sum(), size=(n_boot, int(keep.sum())))
    gains = d[pick].sum(axis=1) / n[pick].sum(axis=1)
    lo, hi = np.quantile(gains, [0.025, 0.975])
    return float(lo), float(hi)


def _one_hour_later(a: np.ndarray) -> np.ndarray:
    """``a`` ``(B, T, ...)`` moved one hour later (NaN in the first): known before hour k."""
    out = np.full(a.shape, np.nan)
    out[:, 1:] = a[:, :-1]
    return out


def _icu_stays(encounters: pa.Table | None, min_hours: int) -> pd.Series:
    """Start of the first ICU encounter of each patient whose stay lasts ``min_hours`` or more,
    by patient id."""
    if encounters is None or encounters.num_rows == 0:
        raise ReplayError("no encounters: the replay needs each patient's ICU stay")
    enc = encounters.select(["patient_id", "start_time", "end_time", "kind"]).to_pandas()
    enc = enc[(enc["kind"] == "ICU") & enc["start_time"].notna() & enc["end_time"].notna()]
    first = enc.sort_values("start_time", kind="stable").groupby("patient_id").first()
    long = (first["end_time"] - first["start_time"]) >= pd.Timedelta(hours=min_hours)
    out: pd.Series = first.loc[long, "start_time"]
    return out


def run_replay(
    source: Path | Record | Store, cfg: ReplayConfig = ReplayConfig(), progress: Progress = SILENT
) -> ReplayResult:
    """Replay the ICU stays of ``source``: a file any adapter reads (set A: the PhysioNet
    Parquet or PSV), a canonical record, or a store."""
    if isinstance(source, Path):
        if source.is_dir() and not is_eicu(source):
            raise ReplayError(
                f"{source}: a folder without eICU tables (the replay reads a file any adapter "
                "reads, or an eICU database folder: MIMIC-IV has no bedside vital signs)"
            )
        try:
            source = convert_eicu(source) if source.is_dir() else read_any(source)
        except ReadError as exc:
            raise ReplayError(str(exc)) from None
    start = (
        _icu_stays(source.encounters(), cfg.min_hours)
        if isinstance(source, Store)
        else (_icu_stays(source.encounters, cfg.min_hours))
    )
    eligible = sorted(start.index.astype(str))
    if not eligible:
        raise ReplayError(f"no ICU stay of {cfg.min_hours} h or more")
    if cfg.max_patients is not None and len(eligible) > cfg.max_patients:
        rng_pick = np.random.default_rng(cfg.seed)
        eligible = sorted(rng_pick.choice(eligible, cfg.max_patients, replace=False).tolist())
    codes = [*BY_LOINC, FIO2_LOINC]
    columns = ["patient_id", "effective_time", "loinc", "value"]
    if isinstance(source, Store):
        obs_t = source.observations(eligible, loinc=codes).select(columns)
        pat_t = source.patients(eligible)
    else:
        table = current(source.observations)
        keep = pc.is_in(table["patient_id"], pa.array(eligible))
        keep = pc.and_(keep, pc.is_in(table["loinc"], pa.array(codes)))
        obs_t = table.filter(keep).select(columns)
        pat_t = source.patients
    # sorted, so that an hour with several values (eICU's cuff every few minutes) keeps its last
    obs = obs_t.to_pandas().sort_values(["patient_id", "effective_time"], kind="stable")
    demo = pat_t.to_pandas().drop_duplicates("patient_id").set_index("patient_id").loc[eligible]
    train = np.array([zlib.crc32(p.encode()) % 2 == 0 for p in eligible])
    if train.all() or not train.any():
        raise ReplayError(
            f"{len(eligible)} eligible patient(s) all fall in one half of the split: the study "
            "needs patients in both (tuning and evaluation)"
        )
    hours = cfg.max_hours
    y, mask, fio2 = _grid(obs, eligible, start, hours)
    layout = cfg.layout(WARD_TWIN)
    model = layout.model
    rng = np.random.default_rng(cfg.seed)
    b = len(eligible)
    base = np.zeros((b, model.n_params))
    members = np.zeros((b, cfg.n_members, layout.n_aug))
    for i, (sex, age) in enumerate(zip(demo["sex"], demo["age_years"], strict=True)):
        base[i], members[i] = demographic_start(layout, sex, age, cfg.n_members, rng)
    inputs = np.broadcast_to(model.default_inputs(), (b, hours, model.n_inputs)).copy()
    inputs[:, :, model.input_index("fio2")] = fio2
    n_est = len(layout.estimated)
    latent = np.full((b, hours, n_est), np.nan)  # the estimated parameters' means after hour k

    def collect(k: int, z: np.ndarray) -> None:
        latent[:, k] = np.asarray(layout.to_theta(layout.phi(jnp.asarray(z)))).mean(axis=1)

    out = track_charted(
        cfg, layout, members, base, inputs, y, mask, rng, "replaying", collect, progress
    )
    cols = [NAMES.index(n) for n in COMPARED]
    known_latent = _one_hour_later(latent)  # what the twin knew of the patient before hour k
    posterior_before = _one_hour_later(out["mean"])  # the twin's estimate an hour earlier
    posterior_sd_before = _one_hour_later(out["sd"])
    r_var = cfg.observation_variance(layout.spec)
    rows = []
    absent = []
    for name in COMPARED:
        j = NAMES.index(name)
        yj, mj = y[:, :, j], mask[:, :, j]
        target_ok = mj & (np.cumsum(mj, axis=1) > 1)  # charted, with a value charted before
        tune = target_ok & train[:, None]  # the twin was tuned on this half
        ev = target_ok & ~train[:, None]
        if not tune.any() or not ev.any():  # not charted in one half (eICU: no HR, no SpO2)
            absent.append(name)
            continue
        tune_rows = np.broadcast_to(train[:, None], yj.shape)  # the fitted baselines learn here
        baseline = forecasts(yj, mj, tune_rows)
        last = baseline["persistence"]
        truth = yj[ev]
        err_twin = np.abs(out["prior_mean"][:, :, j] - yj)
        # the twin's current estimate (its posterior an hour earlier) used as the forecast: the
        # part of the forecast its dynamics add is the difference
        now = posterior_before[:, :, j]
        pred_sd = np.sqrt(out["prior_sd"][:, :, j] ** 2 + r_var[j])
        spread = uncertainty(out["prior_mean"][:, :, j], pred_sd, yj, last, tune, ev)
        spread |= online_coverage(out["prior_mean"][:, :, j], pred_sd, yj, ev)
        err = {k: np.abs(f - yj) for k, f in baseline.items()}
        # the boosting baseline given the twin's forecast (all compared observables, the
        # target's spread) and its estimated physiology: does the twin add information? And
        # given its current estimate instead of its forecast: do its dynamics?
        with_twin = boosting_with(
            yj,
            mj,
            tune_rows,
            np.concatenate(
                [out["prior_mean"][:, :, cols], out["prior_sd"][:, :, j, None], known_latent], -1
            ),
        )
        with_now = boosting_with(
            yj,
            mj,
            tune_rows,
            np.concatenate(
                [posterior_before[:, :, cols], posterior_sd_before[:, :, j, None], known_latent],
                -1,
            ),
        )
        mae = {k: float(e[ev].mean()) for k, e in err.items()}
        best = min(mae, key=lambda k: mae[k])
        gain_lo, gain_hi = _gain_interval(err_twin, err["persistence"], ev,
                                          np.random.default_rng(cfg.seed))  # fmt: skip
        best_lo, best_hi = _gain_interval(err_twin, err[best], ev,
                                          np.random.default_rng(cfg.seed))  # fmt: skip
        # the twin's information: the boosting baseline's MAE minus the one given the twin's
        twin_lo, twin_hi = _gain_interval(np.abs(with_twin - yj), err["boosting"], ev,
                                          np.random.default_rng(cfg.seed))  # fmt: skip
        rows.append(
            {
                "observable": name,
                "n_hours": int(ev.sum()),
                "twin_mae": float(err_twin[ev].mean()),
                "twin_now_mae": float(np.abs(now[ev] - truth).mean()),
                "twin_mae_tuning_half": float(err_twin[tune].mean()),
                "persistence_mae_tuning_half": float(err["persistence"][tune].mean()),
                "twin_posterior_gap": float(np.abs(out["mean"][:, :, j][ev] - truth).mean()),
                **{f"{k}_mae": v for k, v in mae.items()},
                "baseline_mae": mae["regression"],  # the name earlier releases reported
                "best_baseline": best,
                "best_baseline_mae": mae[best],
                "gain_vs_persistence_ci95_low": gain_lo,
                "gain_vs_persistence_ci95_high": gain_hi,
                "gain_vs_best_ci95_low": best_lo,
                "gain_vs_best_ci95_high": best_hi,
                "boosting_with_twin_mae": float(np.abs(with_twin - yj)[ev].mean()),
                "boosting_with_twin_now_mae": float(np.abs(with_now - yj)[ev].mean()),
                "boosting_with_twin_gain_ci95_low": twin_lo,
                "boosting_with_twin_gain_ci95_high": twin_hi,
                **spread,
            }
        )
    if not rows:
        raise ReplayError(
            f"none of {', '.join(COMPARED)} is charted in both halves of the "
            f"{len(eligible)} eligible stays: nothing to compare"
        )
    return ReplayResult(cfg, b, pd.DataFrame(rows).set_index("observable"), tuple(absent))
