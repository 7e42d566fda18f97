"""Provenance that matters clinically: invasive vs cuff pressure, ECG vs pulse rate, kept from the
feed's labels and used by the twin (never averaged together)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from vitaltwin.interop.hl7v2 import convert_text
from vitaltwin.physiology import PatientProfile
from vitaltwin.twin import PatientTwin

MSH = "MSH|^~\\&|MON|ICU|VT|H|20261122083000+0000||ORU^R01|M1|P|2.5\r"
PID = "PID|1||PAT42^^^H^MR||Doe^Jane||19600101|F\r"


def obx(label: str, value: float, unit: str) -> str:
    return f"OBX|1|NM|{label}^{label}^LOCAL||{value}|{unit}|||||F|||20261122080100+0000\r"


def test_methods_are_kept_from_local_labels_and_loinc_codes_state_none() -> None:
    rec = convert_text(
        MSH + PID + obx("ABP-M", 70, "mmHg") + obx("NBP-M", 90, "mmHg") + obx("HR", 80, "/min")
        + obx("PULSE", 95, "/min")
        + "OBX|1|NM|8867-4^HR^LN||81|/min|||||F|||20261122080100+0000\r",
        "m",
    )  # fmt: skip
    obs = rec.observations
    got = sorted(zip(obs["value"].to_pylist(), obs["method"].to_pylist(), strict=True))
    assert got == [
        (70.0, "invasive-arterial"),
        (80.0, "ecg"),
        (81.0, None),
        (90.0, "non-invasive-cuff"),
        (95.0, "pulse-oximetry"),
    ]


def test_the_twin_uses_the_arterial_line_not_the_cuff_in_the_same_cycle() -> None:
    t0 = datetime(2026, 11, 22, 8, tzinfo=UTC)
    both = convert_text(MSH + PID + obx("ABP-M", 70, "mmHg") + obx("NBP-M", 90, "mmHg"), "m")
    line = convert_text(MSH + PID + obx("ABP-M", 70, "mmHg"), "m")
    a = PatientTwin("a", PatientProfile(), t0, n_members=8, seed=1)
    b = PatientTwin("b", PatientProfile(), t0, n_members=8, seed=1)
    a.assimilate(both.observations)
    b.assimilate(line.observations)
    np.testing.assert_array_equal(a.members, b.members)  # the cuff value changed nothing


def test_device_codes_ieee_11073_give_loinc_unit_and_method() -> None:
    mdc = (
        "OBX|1|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.13.1.3|71|266016^MDC_DIM_MMHG^MDC|||||R"
        "|||20261122080100+0000\r"
        "OBX|2|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC||88|266016^MDC_DIM_MMHG^MDC|||||F"
        "|||20261122080100+0000\r"
        "OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC||77|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||F"
        "|||20261122080100+0000\r"
    )
    rec = convert_text(MSH + PID + mdc, "monitor")
    rows = sorted(
        (r["loinc"], r["value"], r["unit"], r["method"], r["status"])
        for r in rec.observations.to_pylist()
    )
    assert rows == [
        ("8478-0", 71.0, "mm[Hg]", "invasive-arterial", "preliminary"),  # OBX-11 R
        ("8478-0", 88.0, "mm[Hg]", "non-invasive-cuff", "final"),
        ("8867-4", 77.0, "/min", "ecg", "final"),
    ]


def test_loinc_results_take_their_method_from_an_mdc_alternate_or_obx17_and_device_from_obx18() -> (
    None
):
    rec = convert_text(
        MSH + PID
        # PCD-01 style: LOINC primary, MDC alternate; OBX-18 the monitor's EUI-64
        + "OBX|1|NM|8478-0^Mean BP^LN^150037^MDC_PRESS_BLD_ART_ABP_MEAN^MDC||72|mm[Hg]|||||F"
        "|||20261122080100+0000||||0123456789ABCDEF^EUI-64\r"
        # OBX-17 states the method of a plain LOINC result
        + "OBX|2|NM|8867-4^Heart rate^LN||96|/min|||||F|||20261122080100+0000|||"
        "^MDC_PULS_OXIM_PULS_RATE^MDC\r"
        + "OBX|3|NM|8478-0^Mean BP^LN||91|mm[Hg]|||||F|||20261122080100+0000|||NBP-M\r",
        "m",
    )  # fmt: skip
    rows = sorted(
        zip(*(rec.observations[c].to_pylist() for c in ("value", "method", "device")), strict=True)
    )
    assert rows == [
        (72.0, "invasive-arterial", "0123456789ABCDEF^EUI-64"),
        (91.0, "non-invasive-cuff", None),
        (96.0, "pulse-oximetry", None),
    ]


def test_fhir_method_comes_from_mdc_codings_and_device_from_its_reference() -> None:
    from vitaltwin.interop.fhir import convert_resources

    def obs(code: list[dict[str, str]], value: float, **more: object) -> dict[str, object]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": code},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-22T08:01:00Z",
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "code": "mm[Hg]"},
            **more,
        }

    loinc = {"system": "http://loinc.org", "code": "8478-0"}
    mdc = "urn:iso:std:iso:11073:10101"
    rec = convert_resources(
        [
            ("a", obs([loinc, {"system": mdc, "code": "150037",
                               "display": "MDC_PRESS_BLD_ART_ABP_MEAN"}], 70,
                      device={"reference": "DeviceMetric/abp-1"}), None),
            ("b", obs([loinc], 90, method={"coding": [
                {"system": mdc, "display": "MDC_PRESS_BLD_NONINV_MEAN"}]}), None),
            ("c", obs([loinc], 80, method={"text": "oral"}), None),
        ],
        "f",
        datetime(2026, 11, 22, 9, tzinfo=UTC),
    )  # fmt: skip
    rows = sorted(
        zip(*(rec.observations[c].to_pylist() for c in ("value", "method", "device")), strict=True)
    )
    assert rows == [
        (70.0, "invasive-arterial", "DeviceMetric/abp-1"),
        (80.0, None, None),
        (90.0, "non-invasive-cuff", None),
    ]


def test_method_specific_loinc_codes_become_the_vital_sign_with_its_method() -> None:
    from vitaltwin.interop.fhir import convert_resources
    from vitaltwin.interop.streams import convert_records

    hl7 = convert_text(
        MSH + PID
        + "OBX|1|NM|76534-7^SBP by Noninvasive^LN||118|mm[Hg]|||||F|||20261122080100+0000\r",
        "m",
    )  # fmt: skip
    fhir = convert_resources(
        [("a", {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "76535-4"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-22T08:01:00Z",
                "valueQuantity": {"value": 64, "unit": "mm[Hg]", "code": "mm[Hg]"}}, None)],
        "f", datetime(2026, 11, 22, 9, tzinfo=UTC),
    )  # fmt: skip
    stream = convert_records(
        [{"patient_id": "p1", "time": "2026-11-22T08:01:00Z", "code": "76534-7", "value": 120,
          "unit": "mm[Hg]"}], "s", datetime(2026, 11, 22, 9, tzinfo=UTC),
    )  # fmt: skip
    got = [
        (r.observations["loinc"][0].as_py(), r.observations["method"][0].as_py())
        for r in (hl7, fhir, stream)
    ]
    assert got == [
        ("8480-6", "non-invasive-cuff"),
        ("8462-4", "non-invasive-cuff"),
        ("8480-6", "non-invasive-cuff"),
    ]
