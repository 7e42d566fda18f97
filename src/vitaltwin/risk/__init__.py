"""Risk prediction validated like a clinical model: sepsis and hemodynamic deterioration.

Data flow: canonical record -> :func:`load_cohort` / :func:`build_cohort` (hourly grid) ->
:func:`raw_features` (+ :func:`twin_features`) -> :class:`RiskModel` -> :func:`evaluate` /
:func:`run_study` -> :func:`write_report`; :class:`Registry` keeps versions with aliases and
:class:`Scorer` stamps every score with its model version; :func:`monitor` applies the
retraining policy; :class:`ForecastMonitor` applies it to a twin's event forecasts in service,
against the outcomes the monitors later show.
"""

from vitaltwin.risk._adapt import (
    Adaptation,
    AdaptationError,
    adapt,
    learning_curve,
    operating_point,
    silent_threshold,
)
from vitaltwin.risk._cohort import (
    NAME_BY_LOINC,
    VARIABLE_NAMES,
    Cohort,
    CohortError,
    build_cohort,
    cohort_from_record,
    cohort_from_store,
    eicu_cohort,
    load_cohort,
)
from vitaltwin.risk._evaluate import Rows, calibration, evaluate, net_benefit
from vitaltwin.risk._features import raw_features
from vitaltwin.risk._forecast_monitor import (
    EventWindow,
    ForecastMonitor,
    ForecastMonitoringReport,
    outcome,
)
from vitaltwin.risk._model import FeatureReference, RiskModel, RiskModelError
from vitaltwin.risk._monitor import (
    MonitoringReport,
    RetrainingPolicy,
    may_promote,
    monitor,
    psi,
)
from vitaltwin.risk._online import HourScore, OnlineScorer
from vitaltwin.risk._register import RegisteredModel, register_study
from vitaltwin.risk._registry import (
    CHALLENGER,
    CHAMPION,
    Registered,
    Registry,
    RegistryError,
    Scorer,
    data_hash,
)
from vitaltwin.risk._report import twin_verdict, write_report
from vitaltwin.risk._shift import ShiftReference
from vitaltwin.risk._study import (
    CvResult,
    FoldResult,
    RiskStudy,
    RiskStudyConfig,
    RobustnessResult,
    SiteResult,
    TaskResults,
    champion_feature_set,
    criterion,
    missing_outcome,
    process_features,
    run_study,
    selection_basis,
    site_shift,
    sites_of,
    split_patients,
    stay_lengths,
)
from vitaltwin.risk._tasks import (
    DETERIORATION,
    RISK_TASKS,
    SEPSIS,
    TASKS,
    RiskTask,
    Task,
    UnknownTaskError,
    deterioration_labels,
    labels_for,
    risk_task,
    sepsis_labels,
)
from vitaltwin.risk._twin_features import cached_twin_features, twin_features
from vitaltwin.risk._utility import Utility, normalized_utility, patient_utilities, utility

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DETERIORATION",
    "NAME_BY_LOINC",
    "RISK_TASKS",
    "SEPSIS",
    "TASKS",
    "VARIABLE_NAMES",
    "Adaptation",
    "AdaptationError",
    "Cohort",
    "CohortError",
    "CvResult",
    "EventWindow",
    "FeatureReference",
    "FoldResult",
    "ForecastMonitor",
    "ForecastMonitoringReport",
    "HourScore",
    "MonitoringReport",
    "OnlineScorer",
    "Registered",
    "RegisteredModel",
    "Registry",
    "RegistryError",
    "RetrainingPolicy",
    "RiskModel",
    "RiskModelError",
    "RiskStudy",
    "RiskStudyConfig",
    "RiskTask",
    "RobustnessResult",
    "Rows",
    "Scorer",
    "ShiftReference",
    "SiteResult",
    "Task",
    "TaskResults",
    "UnknownTaskError",
    "Utility",
    "adapt",
    "build_cohort",
    "cached_twin_features",
    "calibration",
    "champion_feature_set",
    "cohort_from_record",
    "cohort_from_store",
    "criterion",
    "data_hash",
    "deterioration_labels",
    "eicu_cohort",
    "evaluate",
    "labels_for",
    "learning_curve",
    "load_cohort",
    "may_promote",
    "missing_outcome",
    "monitor",
    "net_benefit",
    "normalized_utility",
    "operating_point",
    "outcome",
    "patient_utilities",
    "process_features",
    "psi",
    "raw_features",
    "register_study",
    "risk_task",
    "run_study",
    "selection_basis",
    "sepsis_labels",
    "silent_threshold",
    "site_shift",
    "sites_of",
    "split_patients",
    "stay_lengths",
    "twin_features",
    "twin_verdict",
    "utility",
    "write_report",
]
