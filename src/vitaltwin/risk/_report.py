"""The risk evaluation report: one self-contained HTML file (plots inlined) and its JSON.

Its sections follow TRIPOD+AI (Collins GS et al., BMJ 385:e078378, 2024): source of data,
participants, outcome, predictors, sample size, missing data, analysis, model performance,
fairness, robustness, limitations and model availability (the registry version).
"""

from __future__ import annotations

import base64
import io
import json
import math
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from jinja2 import Environment
from sklearn.metrics import precision_recall_curve, roc_curve

from vitaltwin.risk._study import (
    BASELINES,
    MATERIAL,
    RiskStudy,
    champion_feature_set,
    criterion,
    selection_basis,
    twin_gain,
)

DEFINITIONS = {
    "sepsis": (
        "PhysioNet 2019 label: 1 from 6 h before the Sepsis-3 onset (suspected infection and an "
        "acute SOFA rise of >= 2) onward; onset = first positive hour + 6 h (Reyna et al. 2020)."
    ),
    "deterioration": (
        "Sustained hypotension starting within the next 6 h: charted MAP < 65 mmHg in two "
        "consecutive hours. Only hours whose last charted MAP is >= 65 mmHg are predicted."
    ),
}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(v: Any, ci: list[float] | None = None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    return s + (f" ({ci[0]:.{digits}f}–{ci[1]:.{digits}f})" if ci else "")


def _plots(study: RiskStudy, task: str) -> dict[str, str]:
    sc = study.test_scores[task]
    res = study.results[task].test
    y = sc["y"].to_numpy()
    fsets = [c[: -len("_probability")] for c in sc.columns if c.endswith("_probability")]
    out: dict[str, str] = {}
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.2))
    for name in fsets + list(BASELINES):
        s = sc[f"{name}_probability" if name in fsets else name].to_numpy()
        fpr, tpr, _ = roc_curve(y, s)
        pr, rc, _ = precision_recall_curve(y, s)
        ax[0].plot(fpr, tpr, label=f"{name} ({res[name]['auroc']:.3f})")
        ax[1].plot(rc, pr, label=f"{name} ({res[name]['auprc']:.3f})")
    ax[0].plot([0, 1], [0, 1], "k:", lw=0.8)
    ax[0].set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (test split, hourly)")
    ax[1].set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)")
    for a in ax:
        a.legend(fontsize=8)
    out["discrimination"] = _png(fig)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.2))
    for name in fsets:
        rel = res[name]["reliability"]
        ax[0].plot(rel["mean_predicted"], rel["observed"], "o-", label=name)
        dc = res[name]["decision_curve"]
        ax[1].plot(dc["threshold"], dc["net_benefit"], label=name)
    if fsets:
        dc = res[fsets[0]]["decision_curve"]
        ax[1].plot(dc["threshold"], dc["treat_all"], "k--", label="alert on all")
        ax[1].axhline(0, color="k", lw=0.8, label="alert on none")
        top = max(max(res[f]["decision_curve"]["net_benefit"]) for f in fsets)
        ax[1].set_ylim(-0.02, top * 1.2 + 1e-3)
    lim = (
        max(
            max(res[f]["reliability"]["mean_predicted"] + res[f]["reliability"]["observed"])
            for f in fsets
        )
        if fsets
        else 1
    )
    ax[0].plot([0, lim], [0, lim], "k:", lw=0.8)
    ax[0].set(
        xlabel="mean predicted risk", ylabel="observed frequency", title="Reliability (deciles)"
    )
    ax[1].set(xlabel="threshold probability", ylabel="net benefit", title="Decision curve")
    for a in ax:
        a.legend(fontsize=8)
    out["calibration"] = _png(fig)
    return out


def _template() -> str:
    """The report's Jinja2 template (package data)."""
    return (resources.files("vitaltwin.risk") / "report.html.j2").read_text()


def twin_verdict(study: RiskStudy) -> str:
    parts = []
    for t, r in study.results.items():
        gain = twin_gain(study, t)
        if gain is None:
            parts.append(f"{t}: no twin features computed in this run (raw only).")
            continue
        basis, figures = selection_basis(study, t)
        a, b = figures["raw"].pooled, figures["hybrid"].pooled
        key = criterion(t)
        verdict = (
            "helps"
            if gain > MATERIAL
            else ("does not help" if gain < -MATERIAL else "makes no material difference")
        )
        rounds = r.test["hybrid"]["residual_iterations"]
        parts.append(
            f"{t}: {basis} {key} raw {a[key]:.3f} vs hybrid {b[key]:.3f} "
            f"(AUROC {a['auroc']:.3f} vs {b['auroc']:.3f}; the twin stage of the final hybrid "
            f"kept {rounds[0]} boosting rounds): the twin {verdict}."
        )
    return " ".join(parts)


def write_report(
    study: RiskStudy,
    out_dir: Path,
    data_sha256: str,
    registered: list[dict[str, str]] | None = None,
) -> dict[str, Path]:
    """``risk_report.html`` and ``risk_report.json`` in ``out_dir``."""
    from vitaltwin import __version__

    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(study.results)
    feature_sets = [k for k in study.results[tasks[0]].test if k not in BASELINES]
    missing = sorted(study.cohort_summary["missing_fraction"].items(), key=lambda kv: kv[1])
    model_params = next(iter(study.models.values())).get_params()
    env = Environment(autoescape=True)
    env.globals["f"] = _fmt
    html = env.from_string(_template()).render(
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        s=study.cohort_summary,
        cfg=study.config,
        params=json.dumps(model_params),
        model=model_params,
        data_sha256=data_sha256,
        tasks=tasks,
        results=study.results,
        definitions=DEFINITIONS,
        plots={t: _plots(study, t) for t in tasks},
        feature_sets=feature_sets,
        missing=missing,
        twin_verdict=twin_verdict(study),
        registered=registered or [],
        criteria={t: criterion(t) for t in tasks},
        champions={t: champion_feature_set(study, t) for t in tasks},
        material=MATERIAL,
    )
    html_path = out_dir / "risk_report.html"
    html_path.write_text(html)
    payload = {
        "generated": datetime.now(UTC).isoformat(),
        "data_sha256": data_sha256,
        "config": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(study.config).items()
        },
        "cohort": study.cohort_summary,
        "results": {t: r.to_dict() for t, r in study.results.items()},
        "twin_verdict": twin_verdict(study),
        "registered": registered or [],
    }
    json_path = out_dir / "risk_report.json"
    json_path.write_text(json.dumps(payload, indent=1, default=_json_default))
    return {"html": html_path, "json": json_path}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o)}")
