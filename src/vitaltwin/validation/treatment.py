"""Treatment responses of real patients against the twin's what-if: does the twin know what a
norepinephrine rate change or a fluid bolus does to this patient's blood pressure?

**Events** (eICU: the only shared database with blood pressure; MIMIC-IV's demo has no bedside
vitals): every change of a norepinephrine rate charted in ug/min or ug/kg/min (rates in mL/h
have no stated concentration and are left out, counted) and every fluid bolus or volume
resuscitation, with a cuff MAP measured in the hour before the change (the latest one is
"MAP before") and one 30-60 min after (the first one is the outcome). An event followed by
another treatment before its outcome is left out (counted): its response is not its own.
Rates in ug/min become ug/kg/min with the admission weight (the population's 80 kg where none
is charted, counted). eICU charts that a bolus was given, not its volume: a bolus is taken as
500 mL over 30 min (the middle of eICU's own "250-1000 mL" category), stated in the result.

**The twin** of each stay (the ward model from age and sex, hourly-chart filter settings of
:class:`vitaltwin.twin.ChartedTracking`, cycles of ``cycle_min``) assimilates the stay's cuff
pressures with the norepinephrine actually running as its input, from unit admission. For each
event it forecasts from the end of the last cycle before the change — having seen nothing
after it — under the dose actually given from the change on, and under no change; the forecast
at the outcome's minute (median and 50 %/90 % bands with the cuff's measurement error) is the
prediction.

**Compared** on the same events: no change (MAP after = MAP before), a population
dose-response fitted on the training half of the stays (MAP change = a + b x dose change for
norepinephrine, the mean change for boluses), the twin without the change, and the twin with the
dose given. Stays are split by a hash of their id; every figure is on the evaluation half, with
95 % intervals from 1,000 resamples of its stays: MAE of MAP after, direction accuracy (the
sign of the predicted change from MAP before against the observed one, where it changed), and
the twin's band coverage, with its bands rescaled on the training events and its CRPS against
no change's (:mod:`vitaltwin.validation.uncertainty`).

**Recalibration** (``recalibrate``): for each treatment, one parameter of the twin's response
(:data:`RECALIBRATED`: the potency of norepinephrine, the distribution clearance that takes an
infused volume out of the plasma) is chosen from a few factors on each patient's value by the
MAE of the twin's forecasts on the *training* stays' events — each candidate's twin tracks those
stays with it from admission, so state and parameter agree, and every candidate with the same
random numbers (common random numbers: they differ by the parameter only). The evaluation stays
are then tracked with the chosen values and, with the same random numbers, as declared: scored
as "twin recalibrated" beside "twin".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vitaltwin.data import Record
from vitaltwin.data.versions import current
from vitaltwin.interop.eicu import BOLUS  # how the reader names boluses
from vitaltwin.physiology import WARD_TWIN
from vitaltwin.progress import SILENT, Progress
from vitaltwin.twin import ChartedTracking, demographic_start, run_schedule, track
from vitaltwin.validation.uncertainty import online_inside, uncertainty

MAP_LOINC, SBP_LOINC, DBP_LOINC, WEIGHT_LOINC = "8478-0", "8480-6", "8462-4", "29463-7"
PER_MIN = {"ug/kg/min": False, "ug/min": True}  # rate unit -> divided by the weight
METHODS = ("no_change", "population", "twin_no_change", "twin")
ONLINE_MIN_EVENTS = 50
"""Events of a treatment whose errors the online calibration needs before it rescales (a
ward's one-hour bands wait for 200; a few hundred treatment events in all would leave most
of them as issued)."""
RECALIBRATED: dict[str, tuple[str, tuple[float, ...]]] = {
    "norepinephrine": ("ne_ec50_ng_ml", (0.5, 1.0, 1.5, 2.0)),
    "fluid bolus": ("kt_ml_min", (0.5, 1.0, 2.0, 4.0)),
}
"""Per treatment, the parameter recalibrated on the training stays and the factors tried on
each patient's value (within the parameter's declared range for the reference adult): the
potency of norepinephrine (its EC50; at the doses given, the effect is nearly proportional to
1/EC50) and how fast an infused volume leaves the plasma (Hahn's distribution clearance)."""


@dataclass(frozen=True)
class TreatmentConfig(ChartedTracking):
    """The study's settings (module docstring)."""

    cycle_min: int = 15
    before_min: float = 60.0
    after_min: tuple[float, float] = (30.0, 60.0)
    max_days: float = 7.0  # events later in a stay are left out (counted)
    bolus_ml: float = 500.0
    bolus_min: float = 30.0
    default_weight_kg: float = 80.0
    n_members: int = 32
    n_boot: int = 1000
    max_stays: int | None = None  # a random subset of the stays with events (None: all)
    recalibrate: bool = False  # fit RECALIBRATED on the training stays, report on the rest
    seed: int = 5


class TreatmentError(ValueError):
    """The study's input cannot be used (named, with the reason)."""


@dataclass
class TreatmentResult:
    config: TreatmentConfig
    events: pd.DataFrame  # one row per event kept, with every method's prediction
    table: pd.DataFrame  # per treatment and method: n, MAE, direction accuracy, intervals
    coverage: pd.DataFrame  # per treatment: the twin's 50 % and 90 % band coverage
    responses: pd.DataFrame  # per kind of change: observed MAP change beside the twin's effect
    excluded: dict[str, int] = field(default_factory=dict)
    # with recalibrate: per treatment and factor tried, the training MAE, and which was chosen
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)


def _minutes(t: pd.Series, origin: pd.Series) -> np.ndarray:
    """Minutes from ``origin`` to ``t``, row by row."""
    out: np.ndarray = (t - origin).dt.total_seconds().to_numpy() / 60.0
    return out


def _events(
    meds: pd.DataFrame, bp: pd.DataFrame, weight: pd.Series, admit: pd.Series, cfg: TreatmentConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(events kept, the norepinephrine rate history in ug/kg/min, counts of those left out)."""
    out: dict[str, int] = {}
    ne = meds[meds["drug"].str.lower() == "norepinephrine"].copy()
    out["norepinephrine rates in other units (mL/h, none)"] = int(
        (~ne["rate_unit"].isin(list(PER_MIN))).sum()
    )
    ne = ne[ne["rate_unit"].isin(list(PER_MIN)) & ne["rate"].notna()]
    w = ne["patient_id"].map(weight)
    out["norepinephrine rates with the population weight"] = int(
        (ne["rate_unit"].map(PER_MIN) & w.isna()).sum()
    )
    w = w.fillna(cfg.default_weight_kg)
    ne["dose"] = np.where(ne["rate_unit"].map(PER_MIN), ne["rate"] / w, ne["rate"])
    ne = ne.sort_values(["patient_id", "start_time"], kind="stable")
    ne["previous"] = ne.groupby("patient_id")["dose"].shift(1).fillna(0.0)
    changes = ne[ne["dose"] != ne["previous"]]
    bol = meds[meds["drug"].astype(str).str.contains(BOLUS) & meds["rate"].isna()]
    ev = pd.concat(
        [
            pd.DataFrame({"patient_id": changes["patient_id"], "time": changes["start_time"],
                          "treatment": "norepinephrine", "dose_before": changes["previous"],
                          "dose_after": changes["dose"]}),
            pd.DataFrame({"patient_id": bol["patient_id"], "time": bol["start_time"],
                          "treatment": "fluid bolus", "dose_before": 0.0,
                          "dose_after": cfg.bolus_ml}),
        ],
        ignore_index=True,
    ).sort_values(["patient_id", "time"], kind="stable")  # fmt: skip
    ev = ev[ev["patient_id"].isin(admit.index)]
    since = (ev["time"] - ev["patient_id"].map(admit)).dt.total_seconds() / 86400.0
    out["events before admission or after max_days"] = int(
        ((since < 0) | (since > cfg.max_days)).sum()
    )
    ev = ev[(since >= 0) & (since <= cfg.max_days)]
    # the MAP before (latest within before_min) and after (first within after_min)
    maps = bp[bp["loinc"] == MAP_LOINC].sort_values("effective_time")
    by_pid = {p: g for p, g in maps.groupby("patient_id")}
    rows = []
    nxt = ev.groupby("patient_id")["time"].shift(-1)
    lo, hi = (pd.Timedelta(minutes=m) for m in cfg.after_min)
    before = pd.Timedelta(minutes=cfg.before_min)
    no_before = no_after = confounded = 0
    for (i, e), t_next in zip(ev.iterrows(), nxt, strict=True):
        g = by_pid.get(e["patient_id"])
        if g is None:
            no_before += 1
            continue
        t = g["effective_time"]
        pre = g[(t <= e["time"]) & (t >= e["time"] - before)]
        post = g[(t >= e["time"] + lo) & (t <= e["time"] + hi)]
        if pre.empty:
            no_before += 1
            continue
        if post.empty:
            no_after += 1
            continue
        t_after = post["effective_time"].iloc[0]
        if pd.notna(t_next) and t_next <= t_after:
            confounded += 1
            continue
        rows.append({**e.to_dict(), "event": i, "map_before": float(pre["value"].iloc[-1]),
                     "time_before": pre["effective_time"].iloc[-1], "time_after": t_after,
                     "map_after": float(post["value"].iloc[0])})  # fmt: skip
    out["no MAP in the hour before"] = no_before
    out["no MAP 30-60 min after"] = no_after
    out["another treatment before the outcome"] = confounded
    history = ne[["patient_id", "start_time", "dose"]]
    return pd.DataFrame(rows), history, out


def run_treatment(
    record: Record, cfg: TreatmentConfig = TreatmentConfig(), progress: Progress = SILENT
) -> TreatmentResult:
    """The study over a canonical record holding patients, encounters, medications and cuff
    pressures (an eICU database read by :func:`vitaltwin.interop.eicu.convert_eicu`)."""
    if record.medications is None or record.medications.num_rows == 0:
        raise TreatmentError("no medications: the study needs charted infusions and boluses")
    if record.encounters is None or record.encounters.num_rows == 0:
        raise TreatmentError("no encounters: the study needs each stay's ICU admission")
    enc = record.encounters.to_pandas()
    enc = enc[enc["kind"] == "ICU"].sort_values("start_time").drop_duplicates("patient_id")
    admit = enc.set_index("patient_id")["start_time"]
    obs = current(record.observations).to_pandas()
    bp = obs[obs["loinc"].isin([MAP_LOINC, SBP_LOINC, DBP_LOINC])]
    weight = obs[obs["loinc"] == WEIGHT_LOINC].groupby("patient_id")["value"].first()
    meds = record.medications.to_pandas()
    events, ne, excluded = _events(meds, bp, weight, admit, cfg)
    if events.empty:
        raise TreatmentError(f"no treatment with a MAP before and after ({excluded})")
    stays = sorted(events["patient_id"].unique())
    if cfg.max_stays is not None and len(stays) > cfg.max_stays:
        pick = np.random.default_rng(cfg.seed).choice(stays, cfg.max_stays, replace=False)
        stays = sorted(pick.tolist())
        events = events[events["patient_id"].isin(stays)]
    train = np.array([zlib.crc32(p.encode()) % 2 == 0 for p in stays])
    if train.all() or not train.any():
        raise TreatmentError(f"{len(stays)} stay(s) all fall in one half of the split")
    events["train"] = events["patient_id"].map(dict(zip(stays, train, strict=True)))
    prep = _prepare(record, events, ne, bp, admit.loc[stays], cfg)
    events = prep.events
    pred = _twin(events, prep, cfg, [{}], "tracking the stays", progress)[0]
    events = pd.concat([events, pred], axis=1)
    calibration = pd.DataFrame()
    if cfg.recalibrate:
        calibration, chosen = _recalibrate(events, prep, cfg, progress)
        held = events[~events["train"]]
        declared, again = _twin(held, prep, cfg, [{}, chosen],
                                "tracking the evaluation stays, as declared and recalibrated",
                                progress)  # fmt: skip
        # the twin as declared, tracked with the same random numbers as the recalibrated one:
        # the two differ by the chosen parameters only
        events.loc[held.index, list(declared.columns)] = declared
        events = events.join(again.add_prefix("recal_"))
        events = events.rename(columns={"recal_twin_map": "twin_recalibrated_map"})
    events = _population(events)
    table, coverage = _score(events, cfg)
    return TreatmentResult(cfg, events, table, coverage, _responses(events), excluded, calibration)


@dataclass
class _Prepared:
    """Every stay with events on one grid of cycles from its ICU admission: the cuff pressures
    (cycle means), the inputs in force, the population parameters and initial ensemble."""

    events: pd.DataFrame  # with "cycle", the last cycle that ends at or before the change
    layout: Any
    pos: dict[str, int]
    origin: pd.Series
    y: np.ndarray
    mask: np.ndarray
    inputs: np.ndarray
    base: np.ndarray
    members: np.ndarray


def _prepare(
    record: Record,
    events: pd.DataFrame,
    ne: pd.DataFrame,
    bp: pd.DataFrame,
    origin: pd.Series,
    cfg: TreatmentConfig,
) -> _Prepared:
    stays = list(origin.index)
    k_event = (_minutes(events["time"], events["patient_id"].map(origin)) // cfg.cycle_min).astype(
        int
    )
    events = events.assign(cycle=k_event - 1).reset_index(drop=True)
    n_cycles = int(k_event.max()) + 1
    pos = {p: i for i, p in enumerate(stays)}
    layout = cfg.layout(WARD_TWIN)
    model, spec = layout.model, layout.spec
    b, m = len(stays), len(spec.names)
    y, mask = np.zeros((b, n_cycles, m)), np.zeros((b, n_cycles, m), bool)
    v = bp[bp["patient_id"].isin(pos)]
    k = (_minutes(v["effective_time"], v["patient_id"].map(origin)) // cfg.cycle_min).astype(int)
    v = v.assign(k=k, i=v["patient_id"].map(pos), j=v["loinc"].map(spec.by_loinc))
    v = v[(v["k"] >= 0) & (v["k"] < n_cycles)]
    mean = v.groupby(["i", "k", "j"])["value"].mean().reset_index()
    ii, kk, jj = (mean[c].to_numpy(int) for c in ("i", "k", "j"))
    ok = (mean["value"].to_numpy() >= spec.low[jj]) & (mean["value"].to_numpy() <= spec.high[jj])
    y[ii[ok], kk[ok], jj[ok]] = mean["value"].to_numpy()[ok]
    mask[ii[ok], kk[ok], jj[ok]] = True
    # the inputs in force: norepinephrine as charted (at each cycle's start), boluses given
    inputs = np.broadcast_to(model.default_inputs(), (b, n_cycles, model.n_inputs)).copy()
    i_ne, i_fl = model.input_index("ne_rate_ug_kg_min"), model.input_index("infusion_ml_s")
    starts_min = np.arange(n_cycles) * float(cfg.cycle_min)
    for p, g in ne[ne["patient_id"].isin(pos)].groupby("patient_id"):
        at_min = (g["start_time"] - origin[p]).dt.total_seconds().to_numpy() / 60.0
        idx = np.searchsorted(at_min, starts_min, side="right") - 1
        inputs[pos[p], :, i_ne] = np.where(idx >= 0, g["dose"].to_numpy()[np.maximum(idx, 0)], 0.0)
    bolus_rate = cfg.bolus_ml / (cfg.bolus_min * 60.0)
    bol = events[events["treatment"] == "fluid bolus"]
    at = _minutes(bol["time"], bol["patient_id"].map(origin))
    for p, m0 in zip(bol["patient_id"], at, strict=True):
        k0, k1 = int(m0 // cfg.cycle_min), int((m0 + cfg.bolus_min) // cfg.cycle_min)
        inputs[pos[p], k0 : k1 + 1, i_fl] += bolus_rate
    rng = np.random.default_rng(cfg.seed)
    demo = record.patients.to_pandas().drop_duplicates("patient_id").set_index("patient_id")
    base = np.zeros((b, model.n_params))
    members = np.zeros((b, cfg.n_members, layout.n_aug))
    for p, i in pos.items():
        row = demo.loc[p] if p in demo.index else pd.Series({"sex": None, "age_years": np.nan})
        age = float(row["age_years"]) if pd.notna(row["age_years"]) else float("nan")
        base[i], members[i] = demographic_start(layout, row["sex"], age, cfg.n_members, rng)
    return _Prepared(events, layout, pos, origin, y, mask, inputs, base, members)


def _twin(
    events: pd.DataFrame,
    prep: _Prepared,
    cfg: TreatmentConfig,
    variants: list[dict[str, float]],
    label: str,
    progress: Progress,
) -> list[pd.DataFrame]:
    """The twin's forecasts of ``events`` (a subset of ``prep.events``) once per variant of the
    model's parameters (name -> factor on each patient's value; ``{}``: as they are): the
    events' stays are tracked from admission to their last event with each variant's
    parameters, every variant with the same random numbers (the same stays, the same seed), so
    the variants differ by their parameters only."""
    layout, model = prep.layout, prep.layout.model
    stays = sorted(events["patient_id"].unique())
    rows = np.array([prep.pos[p] for p in stays])
    n_cycles = int(events["cycle"].max()) + 2
    at = {p: i for i, p in enumerate(stays)}
    row_of = np.array([at[p] for p in events["patient_id"]])  # each event's batch row
    wanted: dict[int, list[int]] = {}
    for r, kc in enumerate(events["cycle"]):
        wanted.setdefault(int(kc), []).append(r)
    out = []
    for v, over in enumerate(variants):
        base = prep.base[rows].copy()
        for name, factor in over.items():
            base[:, model.param_index(name)] *= factor
        members = prep.members[rows].copy()
        # the members at the end of each event's cycle (k = -1: the start)
        at_event = np.zeros((len(events), cfg.n_members, layout.n_aug))
        for r in wanted.get(-1, []):
            at_event[r] = members[row_of[r]]

        def keep(kc: int, z: np.ndarray, at_event: np.ndarray = at_event) -> None:
            for r in wanted.get(kc, []):
                at_event[r] = z[row_of[r]]

        tag = label if len(variants) == 1 else f"{label} ({v + 1}/{len(variants)})"
        track(layout, members, base, prep.inputs[rows, :n_cycles], prep.y[rows, :n_cycles],
              prep.mask[rows, :n_cycles], cfg.cycle_min * 60.0, np.random.default_rng(cfg.seed),
              on_cycle=keep, label=tag, progress=progress,
              r_var=cfg.observation_variance(layout.spec), rtps=cfg.rtps,
              inflation_max=cfg.inflation_max)  # fmt: skip
        pred = _forecasts(events, at_event, base[row_of], prep.inputs[rows][row_of], prep.origin,
                          cfg, layout)  # fmt: skip
        out.append(pred.set_axis(events.index))
    return out


def _recalibrate(
    events: pd.DataFrame, prep: _Prepared, cfg: TreatmentConfig, progress: Progress
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per treatment, the factor on its parameter (:data:`RECALIBRATED`) whose twin predicts the
    training stays' MAP after the change best (lowest MAE); 1 (the parameter as declared) is one
    of the candidates and wins ties, so the data have to say otherwise for it to change."""
    model = prep.layout.model
    rows, chosen = [], {}
    for kind, (name, factors) in RECALIBRATED.items():
        fit = events[events["train"] & (events["treatment"] == kind)]
        if fit.empty:
            continue
        preds = _twin(
            fit,
            prep,
            cfg,
            [{name: f} for f in factors],
            f"recalibrating {name} on the training stays' {kind} events",
            progress,
        )
        mae = {
            f: float(np.abs(pred["twin_map"] - fit["map_after"]).mean())
            for f, pred in zip(factors, preds, strict=True)
        }  # fmt: skip
        best = min(mae, key=lambda f: (mae[f], f != 1.0))
        chosen[name] = best
        declared = model.parameter(name).default
        rows += [{"treatment": kind, "parameter": name, "factor": f,
                  "value_for_reference_adult": declared * f, "chosen": f == best,
                  "train_events": len(fit), "train_stays": int(fit["patient_id"].nunique()),
                  "train_mae_mmhg": mae[f]} for f in sorted(mae)]  # fmt: skip
    return pd.DataFrame(rows), chosen


def _responses(events: pd.DataFrame) -> pd.DataFrame:
    """Evaluation half, per kind of change (norepinephrine up, down; bolus): the mean observed
    MAP change beside the twin's predicted effect of the change (with the dose given minus
    without) and its drift without the change (no change minus MAP before), in mmHg."""
    ev = events[~events["train"]]
    kind = np.where(ev["treatment"] == "fluid bolus", "fluid_bolus",
                    np.where(ev["dose_after"] > ev["dose_before"], "norepinephrine_up",
                             "norepinephrine_down"))  # fmt: skip
    frame = pd.DataFrame({
        "kind": kind,
        "observed_change_mmhg": ev["map_after"] - ev["map_before"],
        "twin_effect_mmhg": ev["twin_map"] - ev["twin_no_change_map"],
        "twin_drift_mmhg": ev["twin_no_change_map"] - ev["map_before"],
        "dose_change": ev["dose_after"] - ev["dose_before"],
    })  # fmt: skip
    means = {c: (c, "mean") for c in frame.columns if c.endswith("_mmhg")}
    if "twin_recalibrated_map" in ev:
        frame["recalibrated_effect_mmhg"] = (
            ev["twin_recalibrated_map"] - ev["recal_twin_no_change_map"]
        )
        means["recalibrated_effect_mmhg"] = ("recalibrated_effect_mmhg", "mean")
    out = frame.groupby("kind").agg(
        events=("observed_change_mmhg", "size"),
        median_dose_change=("dose_change", "median"),
        **means,
    )
    return out


def _forecasts(
    events: pd.DataFrame,
    at_event: np.ndarray,
    base: np.ndarray,
    inputs: np.ndarray,
    origin: pd.Series,
    cfg: TreatmentConfig,
    layout: Any,
) -> pd.DataFrame:
    """The twin's MAP at each outcome's minute, under the dose given and under no change, from
    each event's members ``at_event``, parameters ``base`` and stay inputs ``inputs`` (one row
    per event)."""
    model, spec = layout.model, layout.spec
    dt_min = layout.dt_s / 60.0
    start = (events["cycle"].to_numpy() + 1) * float(cfg.cycle_min)  # the forecast's start
    to_change = _minutes(events["time"], events["patient_id"].map(origin)) - start
    to_after = _minutes(events["time_after"], events["patient_id"].map(origin)) - start
    steps = int(np.ceil(to_after.max() / dt_min)) + 1
    i_ne, i_fl = model.input_index("ne_rate_ug_kg_min"), model.input_index("infusion_ml_s")
    k_in = np.clip(events["cycle"].to_numpy() + 1, 0, inputs.shape[1] - 1)
    u0 = inputs[np.arange(len(events)), k_in].copy()  # in force when the forecast starts
    u0[:, i_fl] = 0.0
    minute = (np.arange(steps) + 0.5) * dt_min
    bolus = events["treatment"].to_numpy() == "fluid bolus"
    ne_rows = ~bolus
    u0[ne_rows, i_ne] = events["dose_before"].to_numpy()[ne_rows]
    same = np.repeat(u0[:, None, :], steps, axis=1)
    given = same.copy()
    after = minute[None, :] >= to_change[:, None]
    dose_after = events["dose_after"].to_numpy()[:, None]
    given[:, :, i_ne] = np.where(ne_rows[:, None] & after, dose_after, same[:, :, i_ne])
    in_bolus = after & (minute[None, :] < to_change[:, None] + cfg.bolus_min)
    given[:, :, i_fl] += np.where(
        bolus[:, None] & in_bolus, cfg.bolus_ml / (cfg.bolus_min * 60.0), 0.0
    )
    j = spec.names.index("MAP")
    step = np.clip(np.round(to_after / dt_min).astype(int) - 1, 0, steps - 1)
    out: dict[str, np.ndarray] = {}
    noise = np.random.default_rng(cfg.seed).standard_normal((len(events), at_event.shape[1]))
    for name, sched in (("twin", given), ("twin_no_change", same)):
        traj = run_schedule(layout, at_event, base, sched, record_every=1, seed=cfg.seed)
        v = traj.values[np.arange(len(events)), :, step, j]  # (E, N)
        measured = v + noise * np.sqrt(cfg.observation_variance(spec)[j])
        out[f"{name}_map"] = np.median(v, axis=1)
        if name == "twin":
            for q in (0.05, 0.25, 0.75, 0.95):
                out[f"twin_q{int(q * 100):02d}"] = np.quantile(measured, q, axis=1)
    return pd.DataFrame(out)


def _population(events: pd.DataFrame) -> pd.DataFrame:
    """The population dose-response, fitted on the training stays' events (module docstring)."""
    d_map = events["map_after"] - events["map_before"]
    pred = pd.Series(np.nan, index=events.index)
    for kind, g in events.groupby("treatment"):
        fit = g[g["train"]]
        dm = d_map[fit.index]
        if kind == "norepinephrine" and len(fit) >= 3:
            b, a = np.polyfit(fit["dose_after"] - fit["dose_before"], dm, 1)
            pred[g.index] = a + b * (g["dose_after"] - g["dose_before"])
        else:
            pred[g.index] = dm.mean() if len(fit) else 0.0
    return events.assign(population_map=events["map_before"] + pred,
                         no_change_map=events["map_before"])  # fmt: skip


def _stay_resamples(stays: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` patient-bootstrap resamples of events (row indices), whole stays at a time."""
    uniq = np.unique(stays)
    idx_of = {s: np.flatnonzero(stays == s) for s in uniq}
    return [np.concatenate([idx_of[s] for s in rng.choice(uniq, uniq.size)]) for _ in range(n)]


def _ci(flags: np.ndarray, picks: list[np.ndarray]) -> list[float]:
    """The 95 % patient-bootstrap interval of the share of ``flags`` that are true."""
    return [float(x) for x in np.percentile([flags[i].mean() for i in picks], [2.5, 97.5])]


def _score(events: pd.DataFrame, cfg: TreatmentConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    ev = events[~events["train"]]
    rng = np.random.default_rng(cfg.seed)
    rows, cover = [], []
    for kind, g in ev.groupby("treatment"):
        stays = g["patient_id"].to_numpy()
        uniq = np.unique(stays)
        picks = _stay_resamples(stays, rng, cfg.n_boot)
        obs_change = (g["map_after"] - g["map_before"]).to_numpy()
        recal = ("twin_recalibrated",) if "twin_recalibrated_map" in g else ()
        for method in METHODS + recal:
            p = g[f"{method}_map"].to_numpy()
            err = np.abs(p - g["map_after"].to_numpy())
            moved = obs_change != 0
            pred_change = p - g["map_before"].to_numpy()
            right = (np.sign(pred_change) == np.sign(obs_change)).astype(float)
            right[~moved] = np.nan
            mae_b = [err[i].mean() for i in picks]
            dir_b = [np.nanmean(right[i]) for i in picks]
            rows.append({
                "treatment": kind, "method": method, "events": len(g), "stays": uniq.size,
                "mae_mmhg": float(err.mean()),
                "mae_ci95": [float(x) for x in np.percentile(mae_b, [2.5, 97.5])],
                "direction_accuracy": float(np.nanmean(right)) if method != "no_change" else None,
                "direction_ci95": [float(x) for x in np.nanpercentile(dir_b, [2.5, 97.5])]
                if method != "no_change" else None,
            })  # fmt: skip
        a = g["map_after"].to_numpy()
        row: dict[str, Any] = {"treatment": kind, "events": len(g)}
        for pre, suffix in (("", ""), ("recal_", "_twin_recalibrated")):
            if f"{pre}twin_q25" in g:
                for band, lo, hi in (("band50", "q25", "q75"), ("band90", "q05", "q95")):
                    low, high = g[f"{pre}twin_{lo}"].to_numpy(), g[f"{pre}twin_{hi}"].to_numpy()
                    inside = (a >= low) & (a <= high)
                    row[band + suffix] = float(inside.mean())
                    row[f"{band}{suffix}_ci95"] = _ci(inside, picks)
        # recalibrated bands (on the training events) and CRPS, the ensemble's band taken as
        # normal with the spread of its 5-95 % range
        # (in stay, then time order: the online calibration below takes them one after another)
        every = events[events["treatment"] == kind].sort_values(["patient_id", "time"],
                                                                kind="stable")  # fmt: skip
        mean, after = every["twin_map"].to_numpy(), every["map_after"].to_numpy()
        sd = ((every["twin_q95"] - every["twin_q05"]) / (2 * 1.6449)).to_numpy()
        train = every["train"].to_numpy()
        spread = uncertainty(mean, sd, after, every["map_before"].to_numpy(), train, ~train)
        row.update({k: v for k, v in spread.items() if not k.endswith("_coverage")})
        # calibrated online: each event's band rescaled by the errors of the events before it,
        # counted on the evaluation half
        inside_online, scales = online_inside(
            mean[None], sd[None], after[None], np.ones((1, sd.size), bool),
            min_errors=ONLINE_MIN_EVENTS, counted=~train[None])  # fmt: skip
        row.update(scales)
        stays_ev = every["patient_id"].to_numpy()[~train]
        ev_picks = _stay_resamples(stays_ev, rng, cfg.n_boot)
        for level, flags in inside_online.items():
            band = f"band{int(level * 100)}_coverage_online"
            row[band] = float(flags[0, ~train].mean())
            row[f"{band}_ci95"] = _ci(flags[0, ~train], ev_picks)
        cover.append(row)
    return pd.DataFrame(rows), pd.DataFrame(cover)


def plot_treatment(result: TreatmentResult, path: Any) -> Any:
    """Predicted against observed MAP change per method and treatment (evaluation half), with
    each method's MAE: a twin that knows the response puts its points on the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = result.events[~result.events["train"]]
    kinds = sorted(ev["treatment"].unique())
    shown = ("population", "twin_no_change", "twin") + (
        ("twin_recalibrated",) if "twin_recalibrated_map" in ev else ()
    )
    fig, axes = plt.subplots(len(kinds), len(shown), figsize=(3.2 * len(shown), 3.0 * len(kinds)),
                             squeeze=False)  # fmt: skip
    for r, kind in enumerate(kinds):
        g = ev[ev["treatment"] == kind]
        obs = g["map_after"] - g["map_before"]
        lim = float(np.nanpercentile(np.abs(obs), 98)) + 5
        for c, method in enumerate(shown):
            ax = axes[r, c]
            pred = g[f"{method}_map"] - g["map_before"]
            ax.scatter(pred, obs, s=8, alpha=0.6)
            ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8, ls="--")
            ax.axhline(0, color="grey", lw=0.5)
            ax.axvline(0, color="grey", lw=0.5)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            mae = float(np.abs(g[f"{method}_map"] - g["map_after"]).mean())
            ax.set_title(f"{kind}: {method.replace('_', ' ')}\nMAE {mae:.1f} mmHg", fontsize=9)
            ax.set_xlabel("predicted MAP change (mmHg)", fontsize=8)
            if c == 0:
                ax.set_ylabel("observed MAP change (mmHg)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
