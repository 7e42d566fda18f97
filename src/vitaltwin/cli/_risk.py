"""``vitaltwin validate risk`` and ``vitaltwin risk ...``: commands over :mod:`vitaltwin.risk`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from vitaltwin.cli._progress import rich_progress
from vitaltwin.risk import risk_task
from vitaltwin.settings import load_settings

# as in vitaltwin.cli: wide tables when the output is not a terminal (logs, CI)
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True)
risk_app = typer.Typer(
    no_args_is_help=True, help="Risk models: score, monitor, promote, roll back."
)

QUICK = {
    "learning_rate": 0.1,
    "max_rounds": 300,
    "early_stopping_rounds": 30,
    "min_data_in_leaf": 200,
}


RegistryOption = Annotated[
    Path | None, typer.Option(help="MLflow registry folder (default: settings)")
]


def _registry_dir(registry: Path | None) -> Path:
    return registry or load_settings().registry_dir


def _scorer(registry: Path | None, task: str, alias: str) -> tuple[Any, Any]:
    """The registry and the registered model of ``task`` under ``alias``; a clear error (exit
    2) when there is none."""
    from vitaltwin.risk import Registry, RegistryError

    reg = Registry(_registry_dir(registry))
    try:
        return reg, reg.load(risk_task(task).model_name, alias)
    except (RegistryError, KeyError) as e:
        err_console.print(f"[red]{e}")
        raise typer.Exit(2) from e


def data_path(data: Path | None) -> Path:
    """``--data``, else the settings' PhysioNet set A; a clear error when neither is given."""
    if data is not None:
        return data
    configured = load_settings().physionet_set_a
    if configured is None:
        err_console.print(
            "[red]no data: pass --data, or set VITALTWIN_PHYSIONET_SET_A (environment or "
            "vitaltwin.env) to PhysioNet 2019 set A"
        )
        raise typer.Exit(2)
    return configured


SiteOption = Annotated[
    list[str] | None,
    typer.Option(
        "--site",
        help="only these sites' patients (ICU unit, 'unit not stated'; eICU: the hospital's "
        "region, 'region not stated')",
    ),
]
ExcludeSiteOption = Annotated[
    list[str] | None,
    typer.Option("--exclude-site", help="leave these sites' patients out (a site to adapt to)"),
]


def _sites(cohort: Any, keep: list[str] | None, drop: list[str] | None) -> Any:
    """The cohort's patients of the sites in ``keep`` (all when None) and not in ``drop``; a
    clear error naming the sites there are when none is left."""
    from vitaltwin.risk import sites_of

    if not keep and not drop:
        return cohort
    site = pd.Series(sites_of(cohort), index=cohort.grid["patient_id"]).groupby(level=0).first()
    chosen = site[(site.isin(keep) if keep else True) & ~site.isin(drop or [])]
    if chosen.empty:
        err_console.print(f"[red]no patients left: the sites are {sorted(site.unique())}")
        raise typer.Exit(2)
    return cohort.subset(chosen.index.to_numpy())


def _cohort(data: Path, patients: int, seed: int) -> Any:
    from vitaltwin.risk import CohortError, load_cohort

    try:
        cohort = load_cohort(data)
    except CohortError as e:
        err_console.print(f"[red]{e}")
        raise typer.Exit(2) from e
    if patients:
        ids = np.array(sorted(cohort.grid["patient_id"].unique()))
        pick = np.random.default_rng(seed).choice(ids, min(patients, ids.size), replace=False)
        cohort = cohort.subset(np.sort(pick))
    return cohort


def _features(model_features: list[str], cohort: Any, cache: Path, sha: str) -> pd.DataFrame:
    from vitaltwin.risk import cached_twin_features, raw_features

    X = raw_features(cohort)
    if any(c.startswith("twin_") for c in model_features):
        with rich_progress(err_console) as progress:
            tw = cached_twin_features(cohort, cache, data_sha256=sha, progress=progress)
        X = pd.concat([X, tw], axis=1)
    return X


def validate_risk(
    data: Annotated[
        Path | None,
        typer.Option(
            help="canonical export folder, eICU database folder (sites: its hospitals' "
            "regions) or any file vitaltwin reads (default: VITALTWIN_PHYSIONET_SET_A)"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("out/risk"),
    registry: RegistryOption = None,
    folds: Annotated[int, typer.Option(help="cross-validation folds")] = 5,
    test_fraction: Annotated[float, typer.Option(help="patients held out for the test")] = 0.2,
    twin: Annotated[bool, typer.Option(help="compute twin features (hybrid model)")] = True,
    patients: Annotated[int, typer.Option(help="random subset of patients (0: all)")] = 0,
    boot: Annotated[int, typer.Option(help="bootstrap resamples")] = 200,
    quick: Annotated[bool, typer.Option(help="small models (smoke tests)")] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(help="RiskModel hyperparameter NAME=VALUE, repeatable (after --quick)"),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--task", help="task to develop, repeatable (default: all)"),
    ] = None,
    register: Annotated[bool, typer.Option(help="register the final models")] = True,
    seed: Annotated[int, typer.Option(help="split seed")] = 2019,
    site: SiteOption = None,
    exclude_site: ExcludeSiteOption = None,
) -> None:
    """Develop and validate the sepsis and deterioration models (5-fold CV, leave-one-site-out,
    test split), write the HTML + JSON report, register the models in MLflow."""
    from vitaltwin.risk import (
        TASKS,
        Registry,
        RiskModel,
        RiskModelError,
        RiskStudyConfig,
        cached_twin_features,
        data_hash,
        missing_outcome,
        register_study,
        run_study,
        write_report,
    )

    if folds < 2 or not 0 < test_fraction < 0.9:
        err_console.print("[red]need --folds >= 2 and 0 < --test-fraction < 0.9")
        raise typer.Exit(2)
    try:
        overrides = RiskModel.parse_params(param or [])
    except RiskModelError as e:
        err_console.print(f"[red]{e}")
        raise typer.Exit(2) from e
    if unknown := sorted(set(only or []) - set(TASKS)):
        err_console.print(f"[red]unknown --task {unknown}; expected one of {list(TASKS)}")
        raise typer.Exit(2)
    tasks = tuple(t for t in TASKS if not only or t in only)
    data = data_path(data)
    cohort = _sites(_cohort(data, patients, seed), site, exclude_site)
    without = {t: why for t in tasks if (why := missing_outcome(cohort, t))}
    if without and (only or len(without) == len(tasks)):
        for why in without.values():
            err_console.print(f"[red]{why}")
        raise typer.Exit(2)
    for t, why in without.items():  # not asked for by name: developed where the data allow
        err_console.print(f"[yellow]{t} skipped: {why}")
    tasks = tuple(t for t in tasks if t not in without)
    sha = data_hash(cohort)
    console.print(
        f"{cohort.n_patients:,} patients, {len(cohort.grid):,} patient-hours from {data} "
        f"(grid sha256 {sha[:12]})"
    )
    cfg = RiskStudyConfig(
        folds=folds,
        test_fraction=test_fraction,
        seed=seed,
        n_boot=boot,
        tasks=tasks,
        twin=twin,
        model_params={**(QUICK if quick else {}), **overrides},
    )
    with rich_progress(err_console) as progress:
        tw = (
            cached_twin_features(cohort, out / "cache", cfg.twin_members, sha, progress=progress)
            if twin
            else None
        )
        study = run_study(cohort, cfg, tw, progress=progress)
    registered = []
    paths = write_report(study, out, sha)
    if register:
        registered = register_study(
            Registry(_registry_dir(registry)),
            study,
            sha,
            [paths["html"], paths["json"]],
            f"seed={seed} test_fraction={test_fraction} folds={folds}",
        )
        paths = write_report(study, out, sha, [asdict(r) for r in registered])
    _print_summary(study)
    for r in registered:
        console.print(f"registered {r.name} v{r.version} ({r.alias}; {r.feature_set} features)")
    console.print(f"report: {paths['html']}  JSON: {paths['json']}")


def _print_transfer(study: Any, task: str) -> None:
    """The leave-site-out figures beside the cross-validated ones, and the choice made on
    them."""
    from vitaltwin.risk import champion_feature_set, criterion

    r = study.results[task]
    if not r.transfer:
        return
    key = criterion(task)
    sites = ", ".join(s.site for s in next(iter(r.sites.values())))
    tab = Table(title=f"{task}: each site held out of training ({sites})")
    keys = [key] if key == "auroc" else [key, "auroc"]  # the criterion, then AUROC
    names = {k: "AUROC" if k == "auroc" else k for k in keys}
    columns = [f"{w} {names[k]}" for k in keys for w in ("CV", "leave-site-out")]
    for c in ("model", *columns, "calibration slope (out of site)",
              "hours flagged (AUROC flagged / not)"):  # fmt: skip
        tab.add_column(c)
    for name, v in r.transfer.items():
        cv, out = r.within_sites[name], v.pooled
        slope = out.get("calibration_slope")
        flags = (f"{out['flag_rate']:.3f} ({out['auroc_flagged']:.3f} / "
                 f"{out['auroc_not_flagged']:.3f})") if "flag_rate" in out else "-"  # fmt: skip
        figures = [f"{f[k]:.3f}" for k in keys for f in (cv, out)]
        tab.add_row(name, *figures, "-" if slope is None else f"{slope:.2f}", flags)
    console.print(tab)
    console.print(f"{task}: feature set chosen on the leave-site-out {key}: "
                  f"{champion_feature_set(study, task)}")  # fmt: skip


def _print_summary(study: Any) -> None:
    for task, r in study.results.items():
        sepsis = risk_task(task).utility
        tab = Table(title=f"{task}: cross-validation (pooled out-of-fold) and test split")
        cols = (
            ["model"]
            + (["CV utility", "test utility (95% CI)"] if sepsis else [])
            + [
                "CV AUROC",
                "test AUROC (95% CI)",
                "test AUPRC",
                "sens",
                "spec",
                "alerts/pt-day",
            ]
        )
        for c in cols:
            tab.add_column(c)
        for name, cv in r.cv.items():
            t = r.test[name]

            def ci(m: str, t: dict[str, Any] = t) -> str:
                c = t["ci95"].get(m)
                return f"{t[m]:.3f} ({c[0]:.3f}-{c[1]:.3f})" if c else f"{t[m]:.3f}"

            row = [name]
            if sepsis:
                row += [f"{cv.pooled['utility']:.3f}", ci("utility")]
            row += [
                f"{cv.pooled['auroc']:.3f}",
                ci("auroc"),
                f"{t['auprc']:.3f}",
                f"{t['sensitivity']:.3f}",
                f"{t['specificity']:.3f}",
                f"{t['alerts_per_patient_day']:.2f}",
            ]
            tab.add_row(*row)
        console.print(tab)
        _print_transfer(study, task)
    from vitaltwin.risk import twin_verdict

    console.print(twin_verdict(study))


@risk_app.command("score")
def risk_score(
    data: Annotated[Path, typer.Option(help="canonical export folder or PhysioNet Parquet")],
    out: Annotated[Path, typer.Option(help="scores Parquet")] = Path("out/risk/scores.parquet"),
    registry: RegistryOption = None,
    task: Annotated[str, typer.Option(help="sepsis | deterioration")] = "sepsis",
    alias: Annotated[str, typer.Option(help="alias or version number")] = "champion",
    explain: Annotated[
        bool, typer.Option(help="add each score's five top contributing factors (SHAP)")
    ] = False,
) -> None:
    """Score every patient-hour; each score carries the model name and version (and with
    --explain its top contributing factors)."""
    from vitaltwin.risk import data_hash

    _, scorer = _scorer(registry, task, alias)
    cohort = _cohort(data, 0, 0)
    X = _features(scorer.model.feature_names_, cohort, out.parent / "cache", data_hash(cohort))
    scores = scorer.score(cohort, X, explain=explain)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out)
    console.print(
        f"{len(scores):,} scores by {scorer.name} v{scorer.version} ({alias}): "
        f"{int(scores['alert'].sum()):,} alert hours, {int(scores['low_confidence'].sum()):,} "
        f"low-confidence -> {out}"
    )


@risk_app.command("adapt")
def risk_adapt(
    data: Annotated[Path, typer.Option(help="the new site's data (canonical export or file)")],
    site: SiteOption = None,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("out/risk/adapt"),
    registry: RegistryOption = None,
    task: Annotated[str, typer.Option(help="sepsis | deterioration")] = "sepsis",
    alias: Annotated[str, typer.Option(help="the model to adapt: alias or version")] = "champion",
    labels: Annotated[
        bool, typer.Option(help="use the site's outcomes (--no-labels: silent mode only)")
    ] = True,
    alert_rate: Annotated[
        float | None,
        typer.Option(help="target share of alerting hours (default: the model's development rate)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="split of the local patients")] = 0,
    patients: Annotated[int, typer.Option(help="random subset of patients (0: all)")] = 0,
) -> None:
    """Adapt a registered model to a new site: the threshold reset to the development alert
    rate (silent mode), and with the site's outcomes a recalibration, each compared on local
    patients held out of the adaptation. Registers the result as a challenger with its report
    (never the champion: promote it yourself after review)."""
    import json

    from vitaltwin.risk import AdaptationError, adapt, data_hash

    reg, scorer = _scorer(registry, task, alias)
    cohort = _sites(_cohort(data, 0, seed), site, None)
    if patients:
        ids = np.array(sorted(cohort.grid["patient_id"].unique()))
        pick = np.random.default_rng(seed).choice(ids, min(patients, ids.size), replace=False)
        cohort = cohort.subset(np.sort(pick))
    sha = data_hash(cohort)
    X = _features(scorer.model.feature_names_, cohort, out / "cache", sha)
    from vitaltwin.risk import labels_for

    y = labels_for(scorer.model.task, cohort)
    g = cohort.grid
    try:
        got = adapt(scorer.model, X, y, g["patient_id"].to_numpy(), g["hour"].to_numpy(),
                    alert_rate=alert_rate, labels=labels, seed=seed)  # fmt: skip
    except AdaptationError as e:
        err_console.print(f"[red]{e}")
        raise typer.Exit(2) from e
    out.mkdir(parents=True, exist_ok=True)
    where = ", ".join(site) if site else str(data)
    report = {"source": {"name": scorer.name, "version": scorer.version, "alias": alias},
              "site": where, "data_sha256": sha, **got.to_dict()}  # fmt: skip
    path = out / "adaptation.json"
    path.write_text(json.dumps(report, indent=1, default=float))
    key = risk_task(task).criterion
    chosen = got.candidates.get(got.chosen, {})
    metrics = {
        f"local_{k}": v for k, v in chosen.items() if k in (key, "auroc", "calibration_slope")
    }
    rv = reg.register(scorer.name, got.model, data_sha256=sha, metrics=metrics, files=[path],
                      tags={"adapted_from": scorer.version, "site": where,
                            "adaptation": got.chosen})  # fmt: skip
    console.print(f"{scorer.name} v{scorer.version} adapted to {where}: {got.chosen}")
    for line in got.changes:
        console.print(f"  {line}")
    console.print(f"registered {rv.name} v{rv.version} as a challenger (not promoted); "
                  f"report: {path}")  # fmt: skip


@risk_app.command("monitor")
def risk_monitor(
    data: Annotated[Path, typer.Option(help="canonical export folder or PhysioNet Parquet")],
    registry: RegistryOption = None,
    task: Annotated[str, typer.Option(help="sepsis | deterioration")] = "sepsis",
    alias: Annotated[str, typer.Option(help="alias or version number")] = "champion",
    windows: Annotated[int, typer.Option(help="time windows (by admission order)")] = 5,
    out: Annotated[Path, typer.Option(help="monitoring JSON")] = Path("out/risk/monitoring.json"),
    held_out: Annotated[
        bool, typer.Option(help="only the test patients of the model's own development split")
    ] = False,
) -> None:
    """Input drift (PSI), performance and calibration per window; apply the retraining policy
    and record the decision on the model version. Exit code 3 when retraining is required."""
    from vitaltwin.risk import Registry, data_hash, labels_for, monitor, split_patients

    reg = Registry(_registry_dir(registry))
    scorer = reg.load(risk_task(task).model_name, alias)
    cohort = _cohort(data, 0, 0)
    if held_out:
        mv = reg.client.get_model_version(scorer.name, scorer.version)
        split = dict(kv.split("=") for kv in mv.tags.get("split", "").split())
        if not split or mv.tags.get("data_sha256") != data_hash(cohort):
            err_console.print(
                f"[red]--held-out needs the data {scorer.name} v{scorer.version} was developed on "
                "(its data hash and split are recorded at registration)"
            )
            raise typer.Exit(2)
        test_ids, _ = split_patients(
            cohort, float(split["test_fraction"]), int(split["folds"]), int(split["seed"])
        )
        cohort = cohort.subset(test_ids)
    X = _features(scorer.model.feature_names_, cohort, out.parent / "cache", data_hash(cohort))
    y = labels_for(scorer.model.task, cohort)
    order = cohort.admission_order()
    window = (order.reindex(cohort.grid["patient_id"]).to_numpy() * windows // len(order)).astype(
        int
    )
    metrics = reg.metrics(scorer.name, scorer.version)
    ref = metrics.get("cv_auroc", scorer.model.validation_auroc_)
    pid = cohort.grid["patient_id"].to_numpy()
    rep = monitor(scorer.model, X, y, window, pid, ref, scorer.version,
                  reference_utility=metrics.get("cv_utility"))  # fmt: skip
    tab = Table(title=f"{scorer.name} v{scorer.version}: monitoring by window")
    cols = ("window", "hours", "positives", "AUROC (95% CI)", "cal. slope (95% CI)")
    for c in (*cols, "alert rate", "hours flagged", "population", "performance", "actions"):
        tab.add_column(c)
    for w in rep.windows:
        tab.add_row(
            w.window,
            str(w.rows),
            str(w.positives),
            f"{w.auroc:.3f} ({w.auroc_ci95[0]:.3f}-{w.auroc_ci95[1]:.3f})",
            f"{w.calibration_slope:.2f} ({w.slope_ci95[0]:.2f}-{w.slope_ci95[1]:.2f})",
            f"{w.alert_rate:.3f}",
            f"{w.flag_rate:.1%}",
            w.population.split(":")[0],
            w.performance.split(":")[0],
            "; ".join(w.actions + w.notes) or "-",
        )
    console.print(tab)
    performance = "dropped" if rep.performance_dropped else "holds or not judged"
    population = "changed" if rep.population_changed else "stable"
    console.print(f"population {population}; performance {performance}")
    reg.tag(scorer.name, scorer.version, "monitoring_decision", rep.decision)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep.to_dict(), indent=1, default=str))
    console.print(f"decision: {rep.decision} (recorded on v{scorer.version}) -> {out}")
    if rep.decision == "retrain":
        raise typer.Exit(3)


@risk_app.command("promote")
def risk_promote(
    task: Annotated[str, typer.Option(help="sepsis | deterioration")] = "sepsis",
    version: Annotated[str, typer.Option(help="version (default: the challenger)")] = "",
    registry: RegistryOption = None,
) -> None:
    """Make the challenger (or a version) the champion; the old champion is remembered."""
    from vitaltwin.risk import Registry

    v = Registry(_registry_dir(registry)).promote(risk_task(task).model_name, version or None)
    console.print(f"{risk_task(task).model_name}: champion is now v{v}")


@risk_app.command("rollback")
def risk_rollback(
    task: Annotated[str, typer.Option(help="sepsis | deterioration")] = "sepsis",
    registry: RegistryOption = None,
) -> None:
    """Restore the champion the current one replaced."""
    from vitaltwin.risk import Registry, RegistryError

    try:
        v = Registry(_registry_dir(registry)).rollback(risk_task(task).model_name)
    except RegistryError as e:
        err_console.print(f"[red]{e}")
        raise typer.Exit(2) from e
    console.print(f"{risk_task(task).model_name}: champion rolled back to v{v}")


@risk_app.command("versions")
def risk_versions(
    task: Annotated[str, typer.Option(help="sepsis | deterioration")] = "sepsis",
    registry: RegistryOption = None,
) -> None:
    """List registered versions with their aliases and provenance tags."""
    from vitaltwin.risk import Registry

    console.print(
        Registry(_registry_dir(registry))
        .versions(risk_task(task).model_name)
        .to_string(index=False)
    )
