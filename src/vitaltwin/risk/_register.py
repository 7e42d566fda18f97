"""Registering a study's final models: the library step the CLI (and later the service) call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vitaltwin.risk._registry import Registry
from vitaltwin.risk._study import RiskStudy, champion_feature_set, criterion
from vitaltwin.risk._tasks import risk_task


@dataclass(frozen=True)
class RegisteredModel:
    """A model version the study registered: aliases it holds (comma-separated), feature set."""

    name: str
    version: str
    alias: str
    feature_set: str


def register_study(
    registry: Registry,
    study: RiskStudy,
    data_sha256: str,
    files: list[Path],
    split: str,
) -> list[RegisteredModel]:
    """Register each task's champion model (its feature set chosen on the leave-site-out
    figures, see :func:`vitaltwin.risk.champion_feature_set`) with its cross-validated,
    leave-site-out and test metrics, the report ``files`` and provenance tags (feature set,
    source, ``split``)."""
    out = []
    for task in study.config.tasks:
        t = risk_task(task)
        cv = study.results[task].cv
        key = criterion(task)
        fs = champion_feature_set(study, task)
        test = study.results[task].test[fs]
        metrics = {
            f"cv_{key}": cv[fs].pooled[key],
            "cv_auroc": cv[fs].pooled["auroc"],
            "test_auroc": test["auroc"],
            "test_auprc": test["auprc"],
        }
        if t.utility:
            metrics |= {"test_utility": test["utility"], "cv_utility": cv[fs].pooled["utility"]}
        transfer = study.results[task].transfer
        if fs in transfer:  # how it did on sites it never saw
            out_of_site = transfer[fs].pooled
            metrics |= {f"lso_{key}": out_of_site[key], "lso_auroc": out_of_site["auroc"]}
        rv = registry.register(
            t.model_name,
            study.models[(task, fs)],
            data_sha256=data_sha256,
            metrics=metrics,
            files=files,
            tags={"feature_set": fs, "source": str(study.cohort_summary["source"]), "split": split},
        )
        alias = ",".join(registry.client.get_model_version(rv.name, rv.version).aliases)
        out.append(RegisteredModel(rv.name, str(rv.version), alias, fs))
    return out
