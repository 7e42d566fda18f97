"""Calibrate the circulation's resting parameters to the reference adult.

Starting from the literature values (Smith et al. 2004, Ursino 1998), adjust a few parameters
by nonlinear least squares (scipy) so the open-loop periodic steady state matches the resting
reference values of ``vitaltwin.validation.reference`` (relative errors). Prints the calibrated
values, which are then written into ``physiology/circulation.py`` as defaults. Then
``--set-point`` finds the baroreflex set point at which the closed loop rests where the open
loop does. Run: ``.venv/bin/python tools/calibrate_reference.py [--set-point]``.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import brentq, least_squares

from vitaltwin.physiology import cardiovascular_model
from vitaltwin.simulate import simulate, steady_state
from vitaltwin.validation.reference import RESTING_ADULT

FREE = (
    "e_es_lv_mmhg_ml",
    "lambda_lv_per_ml",
    "c_sa_ml_mmhg",
    "r_sys_mmhg_s_ml",
    "vu_sv_ml",
    "r_pul_mmhg_s_ml",
    "p0_rv_mmhg",
)


def baroreflex_set_point() -> float:
    """The set point P_n at which the closed loop rests where the open loop does.

    Ursino's afferent filter passes the pulsatile pressure (gain tau_z / tau_p ~ 3 at heart
    rate) into a saturating sigmoid, so the mean drive at rest differs from the drive at the
    mean pressure. P_n is chosen so the sympathetic effectors rest at zero deviation.
    """
    model = cardiovascular_model(baroreflex=True)
    i_pn = model.param_index("baro_p_n_mmhg")
    i_r = model.state_index("baro_rel_r_sys")

    def resting_deviation(p_n: float) -> float:
        p = model.default_params()
        p[i_pn] = p_n
        ss = steady_state(model, p, tol=1e-6)
        print(f"  P_n = {p_n:.3f} mmHg: resting SVR deviation {ss.x[i_r]:+.2e}", flush=True)
        return float(ss.x[i_r])

    return float(brentq(resting_deviation, 80.0, 130.0, xtol=1e-3))


def main() -> None:
    if "--set-point" in sys.argv:
        print(f"baro_p_n_mmhg = {baroreflex_set_point():.4g}")
        return
    model = cardiovascular_model(baroreflex=False)
    base = model.default_params()
    idx = [model.param_index(n) for n in FREE]
    x0 = model.default_state()
    targets = [r for r in RESTING_ADULT if r.metric != "hr_bpm"]

    def residual(logq: np.ndarray) -> np.ndarray:
        p = base.copy()
        p[idx] = np.exp(logq)
        traj = simulate(model, x0, p, duration_s=60.0, record_every=1)
        last = traj.beats().iloc[-3:].mean()
        res = np.array([(last[r.metric] - r.expected) / r.expected for r in targets])
        res = np.where(np.isfinite(res), res, 10.0)
        print(f"  cost {0.5 * float(res @ res):.3e}", flush=True)
        return res

    q0 = np.log(base[idx])
    lower = np.log([model.parameter(n).lower for n in FREE])
    upper = np.log([model.parameter(n).upper for n in FREE])
    sol = least_squares(
        residual, q0, bounds=(lower, upper), diff_step=1e-3, xtol=1e-8, max_nfev=25, verbose=1
    )
    res = residual(sol.x)
    for name, value in zip(FREE, np.exp(sol.x), strict=True):
        print(f"{name} = {value:.4g}")
    for r, e in zip(targets, res, strict=True):
        print(f"{r.metric}: expected {r.expected}, error {100 * e:+.2f} %")


if __name__ == "__main__":
    main()
