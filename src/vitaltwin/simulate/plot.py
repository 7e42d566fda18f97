"""Plots of scenario results: trends with the arterial waveform, and LV pressure-volume loops."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vitaltwin.simulate.scenario import ScenarioResult


def _save(fig: Figure, res: ScenarioResult, path: Path) -> Path:
    """Title the figure with the scenario, write it as PNG and close it."""
    title = f"{res.scenario.name}: {res.scenario.description}"
    fig.suptitle(title if len(title) < 120 else title[:117] + "...", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _mark_events(ax: Axes, res: ScenarioResult, unit_s: float = 60.0) -> None:
    """Dashed lines at the actions, on an axis in units of ``unit_s`` seconds."""
    for _, ev in res.events.iterrows():
        ax.axvline(ev.t_s / unit_s, color="0.5", lw=0.8, ls="--")


def plot_scenario(res: ScenarioResult, path: str | Path) -> Path:
    """Six stacked panels over time (minutes) with the scenario's actions marked."""
    path = Path(path)
    ts, b = res.timeseries, res.beats
    tm = ts["t_s"].to_numpy() / 60.0
    bm = b["t_s"].to_numpy() / 60.0
    fig, axes = plt.subplots(6, 1, figsize=(11, 14), sharex=True)
    ax = axes[0]
    ax.plot(tm, ts["p_sa_mmhg"], color="tab:red", lw=0.3, alpha=0.35, label="arterial waveform")
    ax.plot(bm, b["sbp_mmhg"], color="tab:red", lw=1.2, label="SBP")
    ax.plot(bm, b["map_mmhg"], color="k", lw=1.4, label="MAP")
    ax.plot(bm, b["dbp_mmhg"], color="tab:blue", lw=1.2, label="DBP")
    ax.set_ylabel("pressure (mmHg)")
    ax.legend(loc="upper right", ncol=4, fontsize=8)
    axes[1].plot(bm, b["hr_bpm"], color="tab:purple")
    axes[1].set_ylabel("HR (/min)")
    axes[2].plot(bm, b["co_l_min"], color="tab:green", label="CO (L/min)")
    ax2 = axes[2].twinx()
    ax2.plot(bm, b["sv_ml"], color="tab:olive", ls=":", label="SV (mL)")
    axes[2].set_ylabel("CO (L/min)")
    ax2.set_ylabel("SV (mL)")
    axes[3].plot(bm, b["edv_ml"], label="LVEDV (mL)")
    axes[3].plot(bm, b["esv_ml"], label="LVESV (mL)")
    ax3 = axes[3].twinx()
    ax3.plot(bm, 100 * b["ef"], color="tab:gray", ls=":", label="EF (%)")
    ax3.set_ylabel("EF (%)")
    axes[3].set_ylabel("LV volume (mL)")
    axes[3].legend(loc="upper left", fontsize=8)
    axes[4].plot(bm, b["cvp_mmhg"], label="CVP")
    axes[4].plot(bm, b["mpap_mmhg"], label="mean PAP")
    axes[4].set_ylabel("mmHg")
    axes[4].legend(loc="upper right", fontsize=8)
    axes[5].plot(bm, b["blood_volume_ml"], color="tab:brown")
    axes[5].set_ylabel("blood volume (mL)")
    axes[5].set_xlabel("time (min)")
    for a in axes:
        _mark_events(a, res)
        a.grid(alpha=0.3)
    return _save(fig, res, path)


def plot_pv_loops(res: ScenarioResult, path: str | Path) -> Path:
    """LV pressure-volume loops: the first beat, one before each action, and the last beat."""
    path = Path(path)
    ts = res.timeseries
    phase = ts["phase_cycles"].to_numpy()
    beat = np.floor(phase).astype(int)
    times = [0.0, *[float(t) - 2.0 for t in res.events.t_s], float(ts.t_s.iloc[-1]) - 2.0]
    fig, ax = plt.subplots(figsize=(6, 5))
    for t in sorted({max(t, 0.0) for t in times}):
        i = int(np.searchsorted(ts.t_s.to_numpy(), t))
        i = min(i, len(ts) - 1)
        k = beat[i] + 1
        sel = beat == k
        if sel.sum() < 5:
            sel = beat == beat[i]
        ax.plot(ts.v_lv_ml[sel], ts.p_lv_mmhg[sel], label=f"t = {t / 60:.1f} min")
    ax.set_xlabel("LV volume (mL)")
    ax.set_ylabel("LV pressure (mmHg)")
    ax.set_title(f"{res.scenario.name}: LV pressure-volume loops")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ward(res: ScenarioResult, path: str | Path) -> Path:
    """Ward-fidelity course over hours: pressures, HR, lactate, temperature and SpO2, drugs
    and fluids, and the inflammatory state; the scenario's actions are marked."""
    path = Path(path)
    ts = res.timeseries
    th = ts["t_s"].to_numpy() / 3600.0
    fig, axes = plt.subplots(6, 1, figsize=(11, 15), sharex=True)
    ax = axes[0]
    ax.fill_between(th, ts["dbp_mmhg"], ts["sbp_mmhg"], color="tab:red", alpha=0.2, label="DBP-SBP")
    ax.plot(th, ts["map_mmhg"], color="k", lw=1.4, label="MAP")
    ax.axhline(65.0, color="tab:red", ls=":", lw=1.0, label="MAP 65")
    ax.plot(th, ts["cvp_mmhg"], color="tab:blue", lw=1.0, label="CVP")
    ax.set_ylabel("pressure (mmHg)")
    ax.legend(loc="upper right", ncol=4, fontsize=8)
    axes[1].plot(th, ts["hr_bpm"], color="tab:purple", label="HR (/min)")
    axes[1].plot(th, ts["rr_per_min"], color="tab:cyan", label="RR (/min)")
    axes[1].plot(th, 10.0 * ts["co_l_min"], color="tab:green", label="CO x 10 (L/min)")
    axes[1].legend(loc="upper right", ncol=3, fontsize=8)
    axes[2].plot(th, ts["lactate_mmol_l"], color="tab:orange", label="lactate (mmol/L)")
    axes[2].axhline(4.0, color="tab:orange", ls=":", lw=1.0)
    axes[2].plot(th, ts["temp_c"] - 35.0, color="tab:red", label="temperature - 35 (C)")
    axes[2].legend(loc="upper right", ncol=2, fontsize=8)
    axes[3].plot(th, ts["spo2_pct"], color="tab:blue", label="SpO2 (%)")
    axes[3].set_ylabel("SpO2 (%)")
    ax3 = axes[3].twinx()
    ax3.plot(th, ts["fio2"], color="0.4", ls=":", label="FiO2")
    ax3.set_ylabel("FiO2")
    axes[4].plot(th, ts["ne_dose_ug_kg_min"], color="tab:pink", label="norepinephrine (ug/kg/min)")
    axes[4].plot(th, ts["abx_c_mg_l"] / 10.0, color="tab:green", label="meropenem / 10 (mg/L)")
    axes[4].legend(loc="upper right", ncol=2, fontsize=8)
    # Infusion rates hold over the step that ends at each record.
    given = np.cumsum(ts["infusion_ml_s"].to_numpy() * np.diff(ts["t_s"].to_numpy(), prepend=0.0))
    axes[5].plot(th, ts["blood_volume_ml"], color="tab:brown", label="blood volume (mL)")
    axes[5].plot(th, given, color="tab:blue", ls="--", label="fluid given (mL)")
    axes[5].legend(loc="upper left", fontsize=8)
    ax5 = axes[5].twinx()
    ax5.plot(th, ts["infl_n"], color="tab:red", lw=0.8, label="activated phagocytes N*")
    ax5.plot(th, ts["infl_p"] / 10.0, color="k", lw=0.8, label="pathogen / 10")
    ax5.plot(th, ts["infl_d"] / 10.0, color="tab:gray", lw=0.8, label="damage / 10")
    ax5.legend(loc="upper right", fontsize=8)
    axes[5].set_xlabel("time (h)")
    for a in axes:
        _mark_events(a, res, 3600.0)
        a.grid(alpha=0.3)
    return _save(fig, res, path)
