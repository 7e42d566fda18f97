"""FHIR produced by vitaltwin validates under two model sets and reads back identically."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vitaltwin.interop.fhir_out import (
    FhirOutError,
    estimate_observation,
    observation_values,
    risk_assessment,
    twin_report,
    validate,
)

T = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)


def test_estimate_round_trips_through_json() -> None:
    obs = estimate_observation(
        "p1",
        "8478-0",
        "Mean blood pressure",
        63.5,
        "mm[Hg]",
        T,
        low=58.0,
        high=70.0,
        resource_id="est-1",
    )
    back = json.loads(json.dumps(obs))
    assert validate(back) == obs
    assert observation_values(back) == ("p1", "8478-0", T, 63.5, "mm[Hg]")


def test_risk_assessment_and_report_validate() -> None:
    ra = risk_assessment("p1", "MAP < 65 mmHg for 30 min", 0.27, T, 1.0, "0.1.0")
    assert ra["prediction"][0]["probabilityDecimal"] == 0.27
    rep = twin_report("p1", T, "Hypotension likely within the hour.", ["est-1"])
    assert rep["result"] == [{"reference": "Observation/est-1"}]


def test_invalid_output_is_refused() -> None:
    with pytest.raises(FhirOutError, match="outside"):
        risk_assessment("p1", "x", 1.5, T, 1.0, "0.1.0")
    with pytest.raises(FhirOutError, match="timezone-aware"):
        estimate_observation("p1", "8867-4", "HR", 80.0, "/min", datetime(2026, 1, 1))
    with pytest.raises(FhirOutError, match="fhirclient R4"):
        validate({"resourceType": "Observation", "status": "final"})  # no code
