"""Risk prediction validated like a clinical model: sepsis and hemodynamic deterioration.

Data flow: canonical record -> :func:`load_cohort` / :func:`build_cohort` (hourly grid) ->
:func:`raw_features` (+ :func:`twin_features`) -> :class:`RiskModel` -> :func:`evaluate` /
:func:`run_study` -> :func:`write_report`; :class:`Registry` keeps versions with aliases and
:class:`Scorer` stamps every score with its model version; :func:`monitor` applies the
retraining policy.
"""

from vitaltwin.risk._cohort import (
    NAME_BY_LOINC,
    VARIABLE_NAMES,
    Cohort,
    CohortError,
    build_cohort,
    load_cohort,
)
from vitaltwin.risk._evaluate import Rows, calibration, evaluate, net_benefit
from vitaltwin.risk._features import raw_features
from vitaltwin.risk._model import (
    TASKS,
    FeatureReference,
    RiskModel,
    RiskModelError,
    deterioration_labels,
    labels_for,
    sepsis_labels,
)
from vitaltwin.risk._monitor import (
    MonitoringReport,
    RetrainingPolicy,
    may_promote,
    monitor,
    psi,
)
from vitaltwin.risk._registry import (
    CHALLENGER,
    CHAMPION,
    Registered,
    Registry,
    RegistryError,
    Scorer,
    data_hash,
)
from vitaltwin.risk._report import write_report
from vitaltwin.risk._study import (
    RiskStudy,
    RiskStudyConfig,
    champion_feature_set,
    criterion,
    run_study,
    split_patients,
    stay_lengths,
)
from vitaltwin.risk._twin_features import cached_twin_features, twin_features
from vitaltwin.risk._utility import Utility, normalized_utility, patient_utilities, utility

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "NAME_BY_LOINC",
    "TASKS",
    "VARIABLE_NAMES",
    "Cohort",
    "CohortError",
    "FeatureReference",
    "MonitoringReport",
    "Registered",
    "Registry",
    "RegistryError",
    "RetrainingPolicy",
    "RiskModel",
    "RiskModelError",
    "RiskStudy",
    "RiskStudyConfig",
    "Rows",
    "Scorer",
    "Utility",
    "build_cohort",
    "cached_twin_features",
    "calibration",
    "champion_feature_set",
    "criterion",
    "data_hash",
    "deterioration_labels",
    "evaluate",
    "labels_for",
    "load_cohort",
    "may_promote",
    "monitor",
    "net_benefit",
    "normalized_utility",
    "patient_utilities",
    "psi",
    "raw_features",
    "run_study",
    "sepsis_labels",
    "split_patients",
    "stay_lengths",
    "twin_features",
    "utility",
    "write_report",
]
