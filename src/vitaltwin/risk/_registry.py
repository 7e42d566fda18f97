"""Model registry and provenance on MLflow (a local SQLite store; no server).

Each registration is an MLflow run holding the data hash, the feature list, the
hyperparameters, the metrics and the report, with the saved :class:`RiskModel` as its artifact,
and a registered-model version pointing at it. Aliases name the roles: ``champion`` (the model
that scores patients) and ``challenger`` (a candidate). Promoting records the previous champion
so :meth:`Registry.rollback` can restore it. Every score carries the name and version of the
model that produced it (:class:`Scorer`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vitaltwin.risk._cohort import Cohort
from vitaltwin.risk._model import RiskModel

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_TAG = "previous_champion_version"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says which model and why."""


def data_hash(cohort: Cohort) -> str:
    """SHA-256 of the prediction grid and patient table (what a model was trained on)."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(cohort.grid, index=False).to_numpy().tobytes())
    h.update(
        pd.util.hash_pandas_object(cohort.patients.reset_index(), index=False).to_numpy().tobytes()
    )
    return h.hexdigest()


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str


class Registry:
    """Risk models under ``directory`` (``mlflow.db`` and the ``artifacts`` folder)."""

    def __init__(self, directory: Path) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{self.directory / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self._artifacts = (self.directory / "artifacts").as_uri()

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=self._artifacts))

    def register(
        self,
        name: str,
        model: RiskModel,
        *,
        data_sha256: str,
        metrics: dict[str, float],
        files: Sequence[Path] = (),
        tags: dict[str, str] | None = None,
        alias: str | None = CHALLENGER,
    ) -> Registered:
        """Log ``model`` with its provenance as a new version of ``name``; give it ``alias``
        (default ``challenger``; the first version of a name also becomes ``champion``)."""
        import tempfile

        from mlflow.exceptions import MlflowException

        run = self.client.create_run(
            self._experiment(name), tags={"task": model.task, **(tags or {})}
        )
        rid = run.info.run_id
        params = model.get_params()
        # the residual features are listed in the model's features.json; the count goes here
        self.client.log_param(rid, "n_residual_features", len(params.pop("residual_features")))
        for k, v in params.items():
            self.client.log_param(rid, k, v)
        self.client.log_param(rid, "data_sha256", data_sha256)
        self.client.log_param(rid, "n_features", len(model.feature_names_))
        self.client.log_param(rid, "threshold", model.threshold_)
        for k, v in metrics.items():
            if np.isfinite(v):
                self.client.log_metric(rid, k, float(v))
        with tempfile.TemporaryDirectory() as tmp:
            mdir = model.save(Path(tmp) / "model")
            (mdir / "features.json").write_text(json.dumps(model.feature_names_, indent=0))
            self.client.log_artifacts(rid, str(mdir), artifact_path="model")
        for f in files:
            self.client.log_artifact(rid, str(f), artifact_path="report")
        self.client.set_terminated(rid)
        try:
            self.client.create_registered_model(name)
            first = True
        except MlflowException:
            first = False
        mv = self.client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/model",
            run_id=rid,
            # on the version too: `versions` lists them, `risk monitor --held-out` reads the split
            tags={**(tags or {}), "data_sha256": data_sha256},
        )
        if first:
            self.client.set_registered_model_alias(name, CHAMPION, mv.version)
        if alias is not None and not (first and alias == CHALLENGER):
            self.client.set_registered_model_alias(name, alias, mv.version)
        return Registered(name, str(mv.version), rid)

    def version_of(self, name: str, alias: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as e:
            raise RegistryError(
                f"no model {name!r} with alias {alias!r} in {self.directory}"
            ) from e

    def load(self, name: str, alias: str = CHAMPION) -> Scorer:
        """The model with ``alias`` (or a version number given as a string of digits)."""
        import mlflow.artifacts

        version = alias if alias.isdigit() else self.version_of(name, alias)
        mv = self.client.get_model_version(name, version)
        local = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, tracking_uri=self.uri)
        return Scorer(RiskModel.load(Path(local)), name, str(version), alias)

    def promote(self, name: str, version: str | None = None) -> str:
        """Make ``version`` (default: the challenger) the champion; remember the old one."""
        from mlflow.exceptions import MlflowException

        new = version or self.version_of(name, CHALLENGER)
        old = self.version_of(name, CHAMPION)
        if new == old:
            return new
        self.client.set_model_version_tag(name, new, PREVIOUS_TAG, old)
        self.client.set_registered_model_alias(name, CHAMPION, new)
        with contextlib.suppress(MlflowException):  # no challenger alias to remove
            self.client.delete_registered_model_alias(name, CHALLENGER)
        return new

    def rollback(self, name: str) -> str:
        """Restore the champion that the current champion replaced."""
        cur = self.version_of(name, CHAMPION)
        prev = self.client.get_model_version(name, cur).tags.get(PREVIOUS_TAG)
        if prev is None:
            raise RegistryError(
                f"{name} v{cur} replaced no earlier champion: nothing to roll back to"
            )
        self.client.set_registered_model_alias(name, CHAMPION, prev)
        self.client.set_registered_model_alias(name, CHALLENGER, cur)
        return str(prev)

    def metrics(self, name: str, version: str) -> dict[str, float]:
        mv = self.client.get_model_version(name, version)
        if mv.run_id is None:
            raise RegistryError(f"{name} v{version} has no run (registered outside vitaltwin)")
        return dict(self.client.get_run(mv.run_id).data.metrics)

    def card(self, scorer: Scorer) -> dict[str, str]:
        """A model card of a loaded model: what it is, its intended use, the data it was
        trained on and its validation figures (the metrics registered with it)."""
        mv = self.client.get_model_version(scorer.name, scorer.version)
        card = {
            "model": f"{scorer.name} v{scorer.version} ({scorer.alias})",
            "task": scorer.model.task,
            "intended use": f"to draw an ICU clinician's attention to a patient at risk "
            f"({scorer.model.task}); decision support, not a diagnosis",
            "alert threshold": f"{float(scorer.model.threshold_):.3f}",
            "training data (SHA-256)": mv.tags.get("data_sha256", "not recorded"),
        }
        if mv.run_id is not None:
            for k, v in sorted(self.client.get_run(mv.run_id).data.metrics.items()):
                card[k] = f"{v:.3f}"
        return card

    def tag(self, name: str, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(name, version, key, value)

    def versions(self, name: str) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        for mv in self.client.search_model_versions(f"name='{name}'"):
            rows.append(
                {
                    "version": int(mv.version),
                    "aliases": ",".join(mv.aliases),
                    "run_id": mv.run_id,
                    "data_sha256": mv.tags.get("data_sha256", ""),
                    **{k: v for k, v in mv.tags.items() if k != "data_sha256"},
                }
            )
        return pd.DataFrame(rows).sort_values("version") if rows else pd.DataFrame()


@dataclass(frozen=True)
class Scorer:
    """A loaded model that stamps every score with its name and version."""

    model: RiskModel
    name: str
    version: str
    alias: str

    def score(
        self, cohort: Cohort, features: pd.DataFrame, explain: bool = False, chunk: int = 20_000
    ) -> pd.DataFrame:
        """One row per grid row: probability, alert, low-confidence flag, model name/version,
        and (``explain``) the five features contributing most to the score (JSON of
        ``[feature, signed SHAP contribution on the logit scale]``), computed ``chunk`` rows at
        a time (SHAP values of every feature per row would not fit in memory at once)."""
        p = self.model.predict_proba(features)
        extra = {}
        if explain:
            factors: list[str] = []
            for at in range(0, len(features), chunk):
                part = self.model.top_factors(features.iloc[at : at + chunk])
                factors += [json.dumps([[f, round(v, 4)] for f, v in row]) for row in part]
            extra["top_factors"] = factors
        return pd.DataFrame(
            {
                "patient_id": cohort.grid["patient_id"].to_numpy(),
                "hour": cohort.grid["hour"].to_numpy(),
                "task": self.model.task,
                "probability": p,
                "alert": p >= self.model.threshold_,
                "low_confidence": self.model.low_confidence(features),
                "model_name": self.name,
                "model_version": self.version,
                "model_alias": self.alias,
                **extra,
            }
        )
