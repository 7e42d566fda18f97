"""FHIR R4 out: the twin's estimates as Observation, risk scores as RiskAssessment, a twin
report as DiagnosticReport.

Each resource is built as R4 JSON and checked twice before it is returned: by fhirclient's R4
(4.0.1) models, and by ``fhir.resources``' R4B models as an independent second implementation
(R4B shares R4's Observation, RiskAssessment and DiagnosticReport structure). A resource that
fails either check raises :class:`FhirOutError`. :func:`observation_values` reads vitaltwin's
own Observations back into canonical rows, so a round trip can be checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport as R4BDiagnosticReport
from fhir.resources.R4B.observation import Observation as R4BObservation
from fhir.resources.R4B.riskassessment import RiskAssessment as R4BRiskAssessment
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from vitaltwin.interop.fhir_export import LOINC, UCUM, VITAL_SIGNS

_R4B: dict[str, Any] = {
    "Observation": R4BObservation,
    "RiskAssessment": R4BRiskAssessment,
    "DiagnosticReport": R4BDiagnosticReport,
}


class FhirOutError(ValueError):
    """vitaltwin produced a resource that a FHIR model set rejects (a bug, never data)."""


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise FhirOutError("times must be timezone-aware (UTC)")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Check ``resource`` under fhirclient R4 and fhir.resources R4B; return it unchanged."""
    rtype = resource["resourceType"]
    try:
        FHIRElementFactory.instantiate(rtype, resource)
    except Exception as exc:
        raise FhirOutError(f"{rtype} invalid under fhirclient R4: {exc}") from None
    try:
        _R4B[rtype].model_validate(resource)
    except Exception as exc:
        raise FhirOutError(f"{rtype} invalid under fhir.resources R4B: {exc}") from None
    return resource


def estimate_observation(
    patient_id: str,
    loinc: str,
    display: str,
    value: float,
    unit: str,
    time: datetime,
    low: float | None = None,
    high: float | None = None,
    resource_id: str | None = None,
) -> dict[str, Any]:
    """A twin estimate as an Observation (method: model estimate), optionally with a band."""
    return observation(
        patient_id,
        loinc,
        display,
        value,
        unit,
        time,
        low,
        high,
        resource_id,
        method="vitaltwin digital-twin model estimate",
    )


def observation(
    patient_id: str,
    loinc: str,
    display: str,
    value: float,
    unit: str,
    time: datetime,
    low: float | None = None,
    high: float | None = None,
    resource_id: str | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """A numeric Observation (a stored measurement, or with ``method`` a model estimate)."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs" if loinc in VITAL_SIGNS else "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": _iso(time),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
    if method is not None:
        obs["method"] = {"text": method}
    if resource_id is not None:
        obs["id"] = resource_id
    if low is not None and high is not None:
        obs["referenceRange"] = [
            {
                "low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                "high": {"value": high, "unit": unit, "system": UCUM, "code": unit},
                "text": "model uncertainty band",
            }
        ]
    return validate(obs)


def risk_assessment(
    patient_id: str,
    outcome: str,
    probability: float,
    time: datetime,
    horizon_h: float,
    model_version: str,
) -> dict[str, Any]:
    """A risk score as a RiskAssessment with one prediction over a horizon."""
    if not 0.0 <= probability <= 1.0:
        raise FhirOutError(f"probability {probability} outside [0, 1]")
    return validate(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": f"Patient/{patient_id}"},
            "occurrenceDateTime": _iso(time),
            "method": {"text": f"vitaltwin {model_version}"},
            "prediction": [
                {
                    "outcome": {"text": outcome},
                    "probabilityDecimal": probability,
                    "whenRange": {
                        "low": {"value": 0, "unit": "h", "system": UCUM, "code": "h"},
                        "high": {"value": horizon_h, "unit": "h", "system": UCUM, "code": "h"},
                    },
                }
            ],
        }
    )


def twin_report(
    patient_id: str, time: datetime, conclusion: str, observation_ids: Sequence[str]
) -> dict[str, Any]:
    """A twin report as a DiagnosticReport referencing its Observations."""
    return validate(
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "vitaltwin digital-twin report"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": _iso(time),
            "issued": _iso(time),
            "result": [{"reference": f"Observation/{i}"} for i in observation_ids],
            "conclusion": conclusion,
        }
    )


def observation_values(resource: dict[str, Any]) -> tuple[str, str, datetime, float, str]:
    """(patient id, LOINC, time, value, unit) of an Observation vitaltwin wrote."""
    q = resource["valueQuantity"]
    t = datetime.fromisoformat(resource["effectiveDateTime"].replace("Z", "+00:00"))
    return (
        resource["subject"]["reference"].split("/")[-1],
        resource["code"]["coding"][0]["code"],
        t,
        float(q["value"]),
        str(q["code"]),
    )
