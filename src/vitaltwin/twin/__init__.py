"""The patient twin: personalization, state estimation, forecasts, what-if (see the docs).

Generic over models: a twin runs any model declared with a :class:`vitaltwin.model.TwinSpec`
(the default is the ward model's, :data:`vitaltwin.physiology.WARD_TWIN`)."""

from vitaltwin.twin._calibration import OnlineBandCalibration, normal_of_quantiles
from vitaltwin.twin._charted import (
    ChartedTracking,
    DemographicsWarning,
    demographic_start,
    profile_from,
    track_charted,
)
from vitaltwin.twin._enkf import GATE_SD, Analysis, analyse
from vitaltwin.twin._ensemble import (
    Layout,
    advance,
    constrain,
    initial_members,
    layout_for,
    perturb,
    predict,
)
from vitaltwin.twin._forecast import QUANTILES, Trajectories, run_schedule
from vitaltwin.twin._personalize import (
    Personalization,
    collinearity,
    identifiability,
    personalize,
    sensitivity,
)
from vitaltwin.twin._shard import ShardUpdate, TwinShard, padded_size
from vitaltwin.twin._track import CycleArrays, cycle, run_cycle, track
from vitaltwin.twin._twin import CycleReport, PatientTwin, TwinError, model_version
from vitaltwin.twin._whatif import compare, optimize, whatif_of

__all__ = [
    "GATE_SD",
    "QUANTILES",
    "Analysis",
    "ChartedTracking",
    "CycleArrays",
    "CycleReport",
    "DemographicsWarning",
    "Layout",
    "OnlineBandCalibration",
    "PatientTwin",
    "Personalization",
    "ShardUpdate",
    "Trajectories",
    "TwinError",
    "TwinShard",
    "advance",
    "analyse",
    "collinearity",
    "compare",
    "constrain",
    "cycle",
    "demographic_start",
    "identifiability",
    "initial_members",
    "layout_for",
    "model_version",
    "normal_of_quantiles",
    "optimize",
    "padded_size",
    "personalize",
    "perturb",
    "predict",
    "profile_from",
    "run_cycle",
    "run_schedule",
    "sensitivity",
    "track",
    "track_charted",
    "whatif_of",
]
