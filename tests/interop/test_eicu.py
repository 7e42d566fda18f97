"""The eICU reader: stays as patients with their hospital, cuff pressure with its method,
infusion rates as medications (each until the next rate), fluid boluses; times placed on a
documented anchor; every value stored or quarantined with the reason."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vitaltwin.interop import input_files, read_chunks
from vitaltwin.interop.eicu import (
    DEFAULT_ANCHOR,
    EicuError,
    convert_eicu,
    read_eicu,
    stay_sites,
)
from vitaltwin.store import DuckDBStore

DEMO = Path(__file__).parents[3] / "shared" / "data" / "eicu-demo"


def _write(d: Path, name: str, text: str) -> None:
    with gzip.open(d / f"{name}.csv.gz", "wt") as fh:
        fh.write(text)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    d = tmp_path / "eicu"
    d.mkdir()
    _write(d, "patient",
           "patientunitstayid,gender,age,hospitalid,unittype,hospitaladmittime24,"
           "hospitaladmitoffset,unitdischargeoffset,admissionweight\n"
           "1,Female,> 89,73,MICU,23:36:00,-120,600,61.5\n"
           "2,Unknown,,73,SICU,08:00:00,0,300,\n")  # fmt: skip
    _write(d, "vitalAperiodic",
           "vitalaperiodicid,patientunitstayid,observationoffset,noninvasivesystolic,"
           "noninvasivediastolic,noninvasivemean\n"
           "10,1,30,120,60,80\n"
           "11,1,60,400,,5\n"  # systolic and mean implausible, diastolic missing
           "12,2,15,110,70,83\n"
           "13,9,15,110,70,83\n")  # a stay not in patient: not read  # fmt: skip
    _write(d, "infusionDrug",
           "infusiondrugid,patientunitstayid,infusionoffset,drugname,drugrate\n"
           "20,1,40,Norepinephrine (mcg/min),5\n"
           "21,1,100,Norepinephrine (mcg/min),8\n"
           "22,1,70,\"Heparin 25,000 units (ml/hr)\",12\n"
           "23,1,90,Norepinephrine (mcg/min),ERROR\n"
           "24,2,10,Propofol (furlongs/hr),3\n")  # fmt: skip
    _write(d, "treatment",
           "treatmentid,patientunitstayid,treatmentoffset,treatmentstring\n"
           "30,1,50,cardiovascular|intravenous fluid|normal saline administration|"
           "fluid bolus (250-1000mls)\n"
           "31,1,55,cardiovascular|consultations|Cardiology consultation\n")  # fmt: skip
    return d


def test_stays_times_and_methods(tiny: Path) -> None:
    rec = convert_eicu(tiny)
    assert rec.encounters is not None
    p = {r["patient_id"]: r for r in rec.patients.to_pylist()}
    assert set(p) == {"eicu-1", "eicu-2"}
    # hospital admission on the anchor's date at its real time of day; the unit 120 min later
    hospital = DEFAULT_ANCHOR + timedelta(hours=23, minutes=36)
    assert p["eicu-1"]["hospital_admission_time"] == hospital
    assert p["eicu-1"]["icu_admission_time"] == hospital + timedelta(minutes=120)
    assert p["eicu-1"]["age_years"] == 90.0 and p["eicu-1"]["sex"] == "female"
    assert p["eicu-2"]["age_years"] is None and p["eicu-2"]["sex"] is None
    enc = {e["patient_id"]: e for e in rec.encounters.to_pylist()}
    assert enc["eicu-1"]["location"] == "hospital 73, MICU"
    assert enc["eicu-1"]["end_time"] - enc["eicu-1"]["start_time"] == timedelta(minutes=600)
    obs = rec.observations.to_pylist()
    weight = [o for o in obs if o["loinc"] == "29463-7"]
    assert [(o["patient_id"], o["value"], o["unit"]) for o in weight] == [("eicu-1", 61.5, "kg")]
    assert weight[0]["effective_time"] == p["eicu-1"]["icu_admission_time"]
    obs = [o for o in obs if o["loinc"] != "29463-7"]
    assert {o["method"] for o in obs} == {"non-invasive-cuff"}
    first = [o for o in obs if o["patient_id"] == "eicu-1" and o["loinc"] == "8478-0"]
    assert [o["value"] for o in first] == [80.0]
    assert first[0]["effective_time"] == p["eicu-1"]["icu_admission_time"] + timedelta(minutes=30)
    q = {(r["field"], r["reason"].split(" [")[0]) for r in rec.quarantine.to_pylist()}
    assert ("noninvasivesystolic", "outside plausible range") in q
    assert ("noninvasivemean", "outside plausible range") in q
    assert ("drugrate", "rate is not a number") in q
    assert any("furlongs/hr" in r for _, r in q)
    assert rec.values_read == rec.observations.num_rows + rec.quarantine.num_rows == 11


def test_rates_last_until_the_next_and_boluses(tiny: Path) -> None:
    rec = convert_eicu(tiny)
    assert rec.medications is not None
    meds = [m for m in rec.medications.to_pylist() if m["patient_id"] == "eicu-1"]
    ne = sorted((m for m in meds if m["drug"] == "norepinephrine"), key=lambda m: m["start_time"])
    assert [(m["rate"], m["rate_unit"]) for m in ne] == [(5.0, "ug/min"), (8.0, "ug/min")]
    assert ne[0]["end_time"] == ne[1]["start_time"] and ne[1]["end_time"] is None
    heparin = [m for m in meds if m["drug"] == "heparin 25,000 units"]
    assert heparin and heparin[0]["rate_unit"] == "mL/h"
    bolus = [m for m in meds if m["drug"].startswith("fluid bolus")]
    assert len(bolus) == 1 and bolus[0]["dose"] is None
    assert not [m for m in meds if "consultation" in m["drug"]]


def test_a_folder_is_one_input_and_stores_whole(tiny: Path, tmp_path: Path) -> None:
    assert input_files([tiny]) == [tiny]
    with DuckDBStore(tmp_path / "store") as store:
        counts = [store.ingest_record(r) for r in read_chunks(tiny, rows=2)]
        assert sum(c.stored for c in counts) == 7  # 3 pressures of each stay, 1 weight
        assert sum(c.quarantined for c in counts) == 4  # 2 pressures, 2 rates
        assert store.count("medications") == 4 and store.count("patients") == 2


def test_each_stay_is_placed_in_its_hospital_and_region(tiny: Path) -> None:
    """Without a hospital table only the hospital is known; with one, its region, teaching
    status and size come too, and a region left empty stays None (not a made-up region)."""
    bare = stay_sites(tiny)
    assert bare.loc["eicu-1", "hospital"] == "hospital 73" and bare["region"].isna().all()
    _write(tiny, "patient",
           "patientunitstayid,gender,age,hospitalid,unittype,hospitaladmittime24,"
           "hospitaladmitoffset,unitdischargeoffset\n"
           "1,Female,70,73,MICU,23:36:00,-120,600\n"
           "2,Male,60,74,SICU,08:00:00,0,300\n"
           "3,Male,50,75,SICU,08:00:00,0,300\n")  # fmt: skip
    _write(tiny, "hospital",
           "hospitalid,numbedscategory,teachingstatus,region\n"
           "73,<100,FALSE,Midwest\n74,>= 500,TRUE,\n")  # fmt: skip
    where = stay_sites(tiny)
    assert where.to_dict("index") == {
        "eicu-1": {"hospital": "hospital 73", "region": "Midwest", "teaching": False,
                   "beds": "<100"},
        "eicu-2": {"hospital": "hospital 74", "region": None, "teaching": True,
                   "beds": ">= 500"},
        "eicu-3": {"hospital": "hospital 75", "region": None, "teaching": None, "beds": None},
    }  # fmt: skip
    with pytest.raises(EicuError, match="no table patient"):
        stay_sites(tiny.parent)


def test_not_an_eicu_folder(tmp_path: Path) -> None:
    with pytest.raises(EicuError, match="not an eICU folder"):
        next(read_eicu(tmp_path))


@pytest.mark.skipif(not DEMO.exists(), reason="eICU demo not in ../shared/data")
def test_the_demo(tmp_path: Path) -> None:
    """The demo's 2,520 stays from 186 hospitals; norepinephrine rates in about 175 stays."""
    rec = convert_eicu(DEMO)
    assert rec.encounters is not None and rec.medications is not None
    assert rec.patients.num_rows == rec.encounters.num_rows == 2520
    sites = {e.split(",")[0] for e in rec.encounters.column("location").to_pylist()}
    assert len(sites) == 186
    meds = rec.medications.to_pandas()
    ne = meds[meds["drug"] == "norepinephrine"]
    changed = ne.groupby("patient_id")["rate"].nunique()
    assert 160 <= int((changed > 1).sum()) <= 190
    assert rec.values_read == rec.observations.num_rows + rec.quarantine.num_rows
    assert rec.observations.num_rows > 700_000
    t = rec.observations.column("effective_time").to_pylist()[:100]
    assert all(x.tzinfo is not None and x >= datetime(1999, 12, 1, tzinfo=UTC) for x in t)
