"""The MIMIC-IV reader: patients with their admissions and ICU stays, laboratory values mapped
to the vocabulary (ionized calcium and troponin T apart, censored results kept censored),
every input event as a medication with amount and rate in UCUM; every value stored or
quarantined with the reason."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vitaltwin.interop import input_files, read_chunks
from vitaltwin.interop.mimic import MimicError, convert_mimic, read_mimic
from vitaltwin.store import DuckDBStore

DEMO = Path(__file__).parents[3] / "shared" / "data" / "mimic-iv-demo"


def _write(d: Path, name: str, text: str) -> None:
    (d / name).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / f"{name}.csv.gz", "wt") as fh:
        fh.write(text)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    d = tmp_path / "mimic"
    _write(
        d, "hosp/patients", "subject_id,gender,anchor_age,anchor_year\n1,F,91,2150\n2,M,40,2140\n"
    )
    _write(d, "hosp/admissions", "subject_id,hadm_id,admittime,dischtime\n"
           "1,11,2150-03-01 08:00:00,2150-03-10 12:00:00\n"
           "2,22,2142-01-01 00:00:00,2142-01-05 00:00:00\n")  # fmt: skip
    _write(d, "icu/icustays", "subject_id,hadm_id,stay_id,first_careunit,intime,outtime\n"
           "1,11,111,MICU,2150-03-01 10:30:00,2150-03-03 10:30:00\n"
           "2,22,222,SICU,2142-01-02 00:00:00,2142-01-03 00:00:00\n")  # fmt: skip
    _write(d, "icu/d_items", "itemid,label\n221906,Norepinephrine\n225158,NaCl 0.9%\n")
    _write(d, "icu/inputevents",
           "subject_id,itemid,starttime,endtime,amount,amountuom,rate,rateuom\n"
           "1,221906,2150-03-01 11:00:00,2150-03-01 12:00:00,0.5,mg,0.1,mcg/kg/min\n"
           "1,225158,2150-03-01 11:30:00,2150-03-01 11:31:00,500,ml,,\n")  # fmt: skip
    _write(d, "hosp/labevents",
           "labevent_id,subject_id,itemid,charttime,value,valuenum,valueuom,comments\n"
           "1,1,50813,2150-03-01 11:00:00,3.1,3.1,mmol/L,\n"  # lactate
           "2,1,50808,2150-03-01 11:00:00,1.1,1.1,mmol/L,\n"  # ionized calcium
           "3,1,50893,2150-03-01 11:00:00,8.4,8.4,mg/dL,\n"  # total calcium
           "4,1,51003,2150-03-01 11:00:00,,,ng/mL,<0.01.  cTropnT > 0.10 ng/mL suggests MI.\n"
           "5,1,50971,2150-03-01 11:00:00,4.2,4.2,mEq/L,\n"  # potassium, mEq/L = mmol/L
           "6,1,50813,2150-03-01 12:00:00,___,,mmol/L,___\n"  # no value
           "7,1,50813,2150-03-01 13:00:00,90,90,mmol/L,\n"  # implausible
           "8,1,51275,2150-03-01 13:00:00,31,31,furlong,\n"  # unknown unit
           "9,2,51237,2142-01-02 01:00:00,1.1,1.1,,\n")  # INR: not read  # fmt: skip
    return d


def test_labs_codes_units_and_censoring(tiny: Path) -> None:
    rec = convert_mimic(tiny)
    obs = {o["position"]: o for o in rec.observations.to_pylist()}
    assert obs["labevents 1"]["loinc"] == "2524-7" and obs["labevents 1"]["value"] == 3.1
    assert obs["labevents 2"]["loinc"] == "1994-3"  # not total calcium
    assert obs["labevents 3"]["loinc"] == "17861-6"
    trop = obs["labevents 4"]
    assert (trop["loinc"], trop["comparator"], trop["value"]) == ("6598-7", "<", 0.01)
    assert (obs["labevents 5"]["unit"], obs["labevents 5"]["value"]) == ("mmol/L", 4.2)
    assert obs["labevents 1"]["effective_time"] == datetime(2150, 3, 1, 11, tzinfo=UTC)
    q = {r["position"]: r["reason"] for r in rec.quarantine.to_pylist()}
    assert q["labevents 6"] == "value is not a number"
    assert q["labevents 7"].startswith("outside plausible range")
    assert "furlong" in q["labevents 8"]
    assert rec.values_read == 8  # the INR is not a value the vocabulary knows


def test_patients_encounters_and_inputs(tiny: Path) -> None:
    rec = convert_mimic(tiny)
    assert rec.encounters is not None and rec.medications is not None
    p = {r["patient_id"]: r for r in rec.patients.to_pylist()}
    assert p["mimic-1"]["age_years"] == 90.0 and p["mimic-1"]["sex"] == "female"
    assert p["mimic-2"]["age_years"] == 42.0 and p["mimic-2"]["icu_unit"] == "SICU"
    kinds = sorted((e["encounter_id"], e["kind"]) for e in rec.encounters.to_pylist())
    assert kinds[:2] == [("mimic-hadm-11", "inpatient"), ("mimic-hadm-22", "inpatient")]
    assert ("mimic-stay-111", "ICU") in kinds
    meds = {m["drug"]: m for m in rec.medications.to_pylist()}
    ne = meds["norepinephrine"]
    assert (ne["rate"], ne["rate_unit"], ne["dose"], ne["dose_unit"]) == (
        0.1,
        "ug/kg/min",
        0.5,
        "mg",
    )
    bolus = meds["nacl 0.9%"]
    assert (bolus["dose"], bolus["dose_unit"], bolus["rate"]) == (500.0, "mL", None)


def test_a_folder_is_one_input(tiny: Path, tmp_path: Path) -> None:
    assert input_files([tiny]) == [tiny]
    with DuckDBStore(tmp_path / "store") as store:
        counts = [store.ingest_record(r) for r in read_chunks(tiny, rows=3)]
        assert sum(c.stored for c in counts) == 5 and sum(c.quarantined for c in counts) == 3
        assert store.count("medications") == 2 and store.count("encounters") == 4


def test_not_a_mimic_folder(tmp_path: Path) -> None:
    with pytest.raises(MimicError, match="not a MIMIC-IV folder"):
        next(read_mimic(tmp_path))


@pytest.mark.skipif(not DEMO.exists(), reason="MIMIC-IV demo not in ../shared/data")
def test_the_demo() -> None:
    """The demo's 100 patients and 140 ICU stays; norepinephrine infusions with their rates."""
    rec = convert_mimic(DEMO)
    assert rec.encounters is not None and rec.medications is not None
    assert rec.patients.num_rows == 100
    kinds = rec.encounters.column("kind").to_pylist()
    assert kinds.count("ICU") == 140
    meds = rec.medications.to_pandas()
    ne = meds[meds["drug"] == "norepinephrine"]
    assert len(ne) > 100 and set(ne["rate_unit"]) == {"ug/kg/min"}
    assert rec.values_read == rec.observations.num_rows + rec.quarantine.num_rows
    assert rec.observations.num_rows > 40_000
