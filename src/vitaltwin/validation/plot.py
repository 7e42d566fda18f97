"""Figures for the twin's validation: error of the twin against its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def plot_errors(table: pd.DataFrame, columns: dict[str, str], title: str, path: Path) -> Path:
    """Grouped bars, one group per observable (the table's index), one bar per column, each
    observable's errors relative to the first column's (so units do not matter)."""
    cols = list(columns)
    rel = table[cols].div(table[cols[0]], axis=0)
    x = np.arange(len(rel))
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rel) + 2), 3.6))
    for k, c in enumerate(cols):
        ax.bar(x + k * width, rel[c], width, label=columns[c])
    ax.set_xticks(x + width * (len(cols) - 1) / 2, [str(i) for i in rel.index])
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_ylabel(f"error relative to {columns[cols[0]]}")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_alert_timeline(
    patients: pd.DataFrame, alerts: pd.DataFrame, title: str, path: Path, max_rows: int = 60
) -> Path:
    """One row per patient with an event or an alert (at most ``max_rows``): the hidden insult
    (grey), the event's onset (black diamond) and every alert (a marker per rule), in hours from
    the start."""
    shown = patients["event_onset"].notna() | patients["patient_id"].isin(alerts["patient_id"])
    patients = patients[shown].head(max_rows)
    alerts = alerts[alerts["patient_id"].isin(patients["patient_id"])]
    t0 = min(
        [t for t in (*patients["insult"].dropna(), *patients["event_onset"].dropna(),
                     *alerts["time"]) if t is not None] or [pd.Timestamp.now(tz="UTC")]
    )  # fmt: skip
    start = alerts["time"].min() if len(alerts) else t0
    start = min(start, t0)

    def hours(t: Any) -> float:
        return float((pd.Timestamp(t) - pd.Timestamp(start)).total_seconds() / 3600)

    rows = {pid: k for k, pid in enumerate(patients["patient_id"])}
    fig, ax = plt.subplots(figsize=(8.0, 0.18 * len(rows) + 1.6))
    for _, p in patients.iterrows():
        y = rows[p["patient_id"]]
        if p["insult"] is not None and not pd.isna(p["insult"]):
            ax.plot(hours(p["insult"]), y, "|", color="grey", ms=9)
        if p["event_onset"] is not None and not pd.isna(p["event_onset"]):
            ax.plot(hours(p["event_onset"]), y, "D", color="black", ms=5)
    markers = dict(zip(sorted(alerts["rule"].unique()), "o^sv", strict=False))
    for rule, m in markers.items():
        a = alerts[alerts["rule"] == rule]
        ax.plot([hours(t) for t in a["time"]], [rows[p] for p in a["patient_id"]], m,
                ms=4, alpha=0.8, label=f"alert: {rule}")  # fmt: skip
    ax.plot([], [], "|", color="grey", label="insult (hidden sepsis or bleeding; set A: sepsis)")
    ax.plot([], [], "D", color="black", ms=5, label="event onset")
    labels = [f"{p} ({k})" for p, k in zip(patients["patient_id"], patients["kind"], strict=True)]
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("hours")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
