"""Figures for the twin's validation: error of the twin against its baselines."""

from __future__ import annotations

from pathlib import Path

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
