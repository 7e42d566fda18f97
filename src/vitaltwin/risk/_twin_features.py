"""Twin-derived physiology as risk features: each patient's twin replayed hour by hour.

For every patient the twin (:mod:`vitaltwin.twin`) starts from the population for their age and
sex, and assimilates the grid's charted vitals and labs hour by hour with the hourly-chart
filter settings for charted data (:class:`vitaltwin.twin.ChartedTracking`). The
features of the row at hour ``t`` come from the twin after it has assimilated hour ``t`` and
nothing later:

* the posterior mean and SD of the estimated parameters — systemic resistance ratio
  (``r_sys_ratio0``: the SVR of the model relative to the population), resting heart rate,
  arterial compliance ratio, resting respiratory rate, baseline white-cell count;
* the posterior mean of physiological states the data do not show directly — blood volume
  (plasma + red cells), interstitial volume, pathogen load, activated phagocytes, tissue damage,
  anti-inflammatory mediator, lactate;
* the twin's one-hour forecast of MAP and the forecast probability of MAP < 65 mmHg and of
  SpO2 < 90 % in the next hour (the forecast ensemble's mean and SD, Gaussian tail), made with
  the FiO2 charted up to hour ``t``.

Contractility is not estimated (see :data:`vitaltwin.physiology.WARD_TWIN`: collinear with
resistance, heart rate and compliance), so it does not appear. The twin has no access to
labels: nothing here is fitted to the outcome.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from jax import numpy as jnp
from scipy.stats import norm

from vitaltwin.physiology import WARD_TWIN
from vitaltwin.progress import SILENT, Progress
from vitaltwin.risk._cohort import Cohort
from vitaltwin.risk._utility import patient_blocks
from vitaltwin.twin import ChartedTracking, demographic_start, track_charted

# the features are those of the ward model's twin
NAMES, LOW, HIGH = WARD_TWIN.names, WARD_TWIN.low, WARD_TWIN.high

GRID_FOR_OBSERVABLE = {
    "HR": "HR",
    "MAP": "MAP",
    "SBP": "SBP",
    "DBP": "DBP",
    "SpO2": "O2Sat",
    "RR": "Resp",
    "Temp": "Temp",
    "Lactate": "Lactate",
    "WBC": "WBC",
    "Hb": "Hgb",
}
CACHE_VERSION = 2  # 2: twins with model discrepancy and centred process noise
STATES = ("infl_p", "infl_n", "infl_d", "infl_ca", "v_isf_ml", "lactate_mmol_l")


def twin_features(
    cohort: Cohort,
    n_members: int = 16,
    batch: int = 2000,
    seed: int = 11,
    cfg: ChartedTracking | None = None,
    progress: Progress = SILENT,
) -> pd.DataFrame:
    """``twin_*`` features for every grid row (same order as ``cohort.grid``)."""
    cfg = cfg or ChartedTracking()
    g = cohort.grid
    layout = cfg.layout(WARD_TWIN)
    model = layout.model
    names = [f"twin_{p}" for p in layout.estimated]
    cols = (
        names
        + [f"{n}_sd" for n in names]
        + ["twin_blood_volume_ml"]
        + [f"twin_{s}" for s in STATES]
        + ["twin_map_next_mmhg", "twin_p_map_below_65", "twin_p_spo2_below_90"]
    )
    out = np.full((len(g), len(cols)), np.nan)
    pid = g["patient_id"].to_numpy()
    starts, lengths = patient_blocks(pid)
    hours = g["hour"].to_numpy()
    last_hour = np.maximum.reduceat(hours, starts)
    order = np.argsort(last_hour, kind="stable")  # similar stay lengths share a batch
    rng = np.random.default_rng(seed)
    i_map, i_spo2 = NAMES.index("MAP"), NAMES.index("SpO2")
    vol_idx = [model.state_index("v_plasma_ml"), model.state_index("v_rbc_ml")]
    st_idx = [model.state_index(s) for s in STATES]
    fio2_col = g["FiO2"].to_numpy(dtype=np.float64)
    task = progress.start("twin features", len(starts))
    try:
        for b0 in range(0, len(order), batch):
            sel = order[b0 : b0 + batch]
            nb = sel.size
            t_len = int(last_hour[sel].max()) + 2  # one extra cycle: the last hour's forecast
            y = np.zeros((nb, t_len, len(NAMES)))
            mask = np.zeros((nb, t_len, len(NAMES)), bool)
            fio2 = np.full((nb, t_len), np.nan)
            base = np.zeros((nb, model.n_params))
            members = np.zeros((nb, n_members, layout.n_aug))
            rows_of = []
            for j, p in enumerate(sel):
                r = np.arange(starts[p], starts[p] + lengths[p])
                h = hours[r]
                rows_of.append((r, h))
                for k, name in enumerate(NAMES):
                    v = g[GRID_FOR_OBSERVABLE[name]].to_numpy()[r]
                    ok = np.isfinite(v) & (v >= LOW[k]) & (v <= HIGH[k])
                    y[j, h[ok], k] = v[ok]
                    mask[j, h[ok], k] = True
                f = fio2_col[r]
                fio2[j, h[np.isfinite(f)]] = f[np.isfinite(f)]
                info = cohort.patients.loc[pid[starts[p]]]
                base[j], members[j] = demographic_start(
                    layout, info["sex"], float(info["age_years"]), n_members, rng
                )
            # the FiO2 in force during cycle k is the last one charted before it began (k - 1)
            known = pd.DataFrame(fio2.T).ffill().fillna(0.21).to_numpy().T
            inputs = np.broadcast_to(model.default_inputs(), (nb, t_len, model.n_inputs)).copy()
            inputs[:, 1:, model.input_index("fio2")] = np.clip(known[:, :-1], 0.21, 1.0)
            inputs[:, 0, model.input_index("fio2")] = 0.21
            post = np.zeros((nb, t_len, len(cols) - 3))

            def collect(k: int, z: np.ndarray, post: npt.NDArray[np.float64] = post) -> None:
                zz = np.asarray(z)
                theta = np.asarray(layout.to_theta(layout.phi(jnp.asarray(zz))))
                ne = len(layout.estimated)
                post[:, k, :ne] = theta.mean(axis=1)
                post[:, k, ne : 2 * ne] = theta.std(axis=1, ddof=1)
                post[:, k, 2 * ne] = zz[..., vol_idx].sum(axis=-1).mean(axis=1)
                post[:, k, 2 * ne + 1 :] = zz[..., st_idx].mean(axis=1)

            res = track_charted(
                cfg,
                layout,
                members,
                base,
                inputs,
                y,
                mask,
                rng,
                f"twins {b0 + 1}-{b0 + nb} of {len(order)}",
                on_cycle=collect,
                progress=progress,
            )
            fm = res["prior_mean"][:, 1:]
            fs = np.maximum(res["prior_sd"][:, 1:], 1e-6)
            nxt = np.stack(
                [
                    fm[..., i_map],
                    norm.cdf((65.0 - fm[..., i_map]) / fs[..., i_map]),
                    norm.cdf((90.0 - fm[..., i_spo2]) / fs[..., i_spo2]),
                ],
                axis=-1,
            )
            for j, (r, h) in enumerate(rows_of):
                out[r, : post.shape[2]] = post[j, h]
                out[r, post.shape[2] :] = nxt[j, h]
            task.advance(nb)
    finally:
        task.close()
    return pd.DataFrame(out, columns=cols, index=g.index)


def cached_twin_features(
    cohort: Cohort,
    cache_dir: Path | None,
    n_members: int = 8,
    data_sha256: str | None = None,
    progress: Progress = SILENT,
) -> pd.DataFrame:
    """:func:`twin_features`, kept in ``cache_dir`` under the data's hash and the settings (the
    replay of a whole data set takes minutes; the result depends only on the data)."""
    if cache_dir is None:
        return twin_features(cohort, n_members=n_members, progress=progress)
    from vitaltwin.risk._registry import data_hash

    key = (data_sha256 or data_hash(cohort))[:16]
    path = cache_dir / f"twin_features_{key}_m{n_members}_v{CACHE_VERSION}.parquet"
    if path.exists():
        f = pd.read_parquet(path)
        if len(f) == len(cohort.grid):
            f.index = cohort.grid.index
            return f
    f = twin_features(cohort, n_members=n_members, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    f.to_parquet(path)
    return f
