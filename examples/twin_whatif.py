"""A patient's twin from two hours of vitals, a forecast and two plans compared (clinicians)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from vitaltwin.physiology import PatientProfile, WardPlan
from vitaltwin.twin import PatientTwin, compare

START = datetime(2026, 3, 1, 8, tzinfo=UTC)


def vitals(hours: float) -> pd.DataFrame:
    """Five-minute HR, MAP and SpO2 of a patient whose pressure is slowly falling."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(int(hours * 12)):
        t = START + timedelta(minutes=5 * k)
        for loinc, value in (("8867-4", 98 + k * 0.3), ("8478-0", 72 - k * 0.2), ("59408-5", 95)):
            rows.append((t, loinc, value + rng.normal(0, 1)))
    return pd.DataFrame(rows, columns=["effective_time", "loinc", "value"])


def main() -> None:
    profile = PatientProfile(age_years=64, sex="male", weight_kg=82, height_cm=178)
    twin = PatientTwin("example", profile, start=START, n_members=16)
    reports = twin.assimilate(vitals(2.0))
    print(reports[-1].message())
    forecast = twin.forecast(hours=2)
    print(f"P(MAP < 65 for 30 min in 2 h): {forecast.probability('map_below_65_30min')[0]:.2f}")
    table, _ = compare(
        twin, [WardPlan(name="none"), WardPlan(name="500 mL", fluid_ml=500)], hours=2
    )
    print(table.to_string())


if __name__ == "__main__":
    main()
