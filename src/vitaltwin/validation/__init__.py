"""Studies and reports: the verification table, the phantom study, the PhysioNet replay."""

from vitaltwin.validation._checks import DynamicCheck, RestingCheck, grade_error
from vitaltwin.validation.phantom import PhantomConfig, run_phantom
from vitaltwin.validation.replay import ReplayConfig, run_replay
from vitaltwin.validation.verification import VerificationReport, verify

__all__ = [
    "DynamicCheck",
    "PhantomConfig",
    "ReplayConfig",
    "RestingCheck",
    "VerificationReport",
    "grade_error",
    "run_phantom",
    "run_replay",
    "verify",
]
