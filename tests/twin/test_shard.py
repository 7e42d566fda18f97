"""The shard: many patients' twins assimilated in one batched call. A patient's twin does not
depend on who else is in the batch; a saved shard continues exactly; it keeps the single twin's
rules (late, out of range, direct method first, charted inputs) and tracks a patient as well as
the single twin does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vitaltwin.physiology import PatientProfile
from vitaltwin.physiology.ward_twin import VITAL_SIGN_DISCREPANCY
from vitaltwin.twin import PatientTwin, TwinError, TwinShard, padded_size

T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)
CODES = (("8867-4", 88.0), ("8478-0", 72.0), ("59408-5", 96.0))  # HR, MAP, SpO2


def vitals(pids: list[str], seconds: range, shift: float = 0.0) -> pd.DataFrame:
    rows = [
        (pid, T0 + timedelta(seconds=s + 0.2), code, v + shift + np.sin(s + k))
        for k, pid in enumerate(pids)
        for s in seconds
        for code, v in CODES
    ]
    return pd.DataFrame(rows, columns=["patient_id", "effective_time", "loinc", "value"])


def shard_of(pids: list[str]) -> TwinShard:
    shard = TwinShard(discrepancy=VITAL_SIGN_DISCREPANCY)
    for pid in pids:
        shard.add(pid, PatientProfile(), T0)
    return shard


def test_a_patient_does_not_depend_on_the_rest_of_the_batch() -> None:
    ward = [f"p{i}" for i in range(11)]  # padded to 16
    big, alone = shard_of(ward), shard_of(["p3"])
    for s in range(20):
        upd = big.assimilate(vitals(ward, range(s, s + 1)))
        assert upd.calls == 1 and len(upd.patients) == 11 and upd.values == 33
        alone.assimilate(vitals(ward, range(s, s + 1)).query("patient_id == 'p3'"))
    np.testing.assert_allclose(big.members[3], alone.members[0], rtol=0, atol=1e-8)
    assert big.time("p3") == alone.time("p3") == T0 + timedelta(seconds=19.2)
    assert padded_size(11) == 16 and padded_size(1) == 8 and padded_size(5000) == 1024


def test_a_saved_shard_continues_exactly(tmp_path: Path) -> None:
    ward = ["a", "b", "c"]
    one = shard_of(ward)
    one.assimilate(vitals(ward, range(0, 30)))
    path = one.save(tmp_path / "shard.npz")
    assert path.stat().st_mode & 0o777 == 0o600
    two = TwinShard.load(path)
    more = vitals(ward, range(30, 200))  # several one-minute cycles in one call
    u1, u2 = one.assimilate(more), two.assimilate(more)
    assert u1 == u2 and u1.calls == 3
    np.testing.assert_array_equal(one.members[:3], two.members[:3])
    assert one.summary("b") == two.summary("b")
    (tmp_path / "bad.npz").write_bytes(b"not a shard")
    with pytest.raises(TwinError, match="not a saved shard"):
        TwinShard.load(tmp_path / "bad.npz")


def test_the_single_twins_rules_hold() -> None:
    shard = shard_of(["p"])
    shard.assimilate(vitals(["p"], range(0, 5)))
    late = shard.assimilate(vitals(["p"], range(2, 3)))  # already passed: late
    assert late.late == 3 and late.values == 0 and shard.summary("p")["late"] == 3
    t = T0 + timedelta(seconds=10)
    rows = pd.DataFrame(
        {
            "patient_id": ["p"] * 5,
            "effective_time": [t] * 5,
            "loinc": ["8867-4", "8478-0", "8478-0", "59408-5", "19994-3"],
            "value": [400.0, 60.0, 95.0, 97.0, 0.6],  # HR 400: outside the physical range
            "method": [None, "invasive-arterial", "non-invasive-cuff", None, None],
        }
    )
    upd = shard.assimilate(rows)
    s = shard.summary("p")
    assert upd.rejected == 1 and s["rejected"] == 1
    assert s["values"]["MAP"] == 6  # the invasive value only, not the cuff's too
    assert shard.inputs[0, shard.model.input_index("fio2")] == 0.6  # FiO2 charted: an input
    gap = shard.assimilate(vitals(["p"], range(600, 601)))  # ten minutes later: the integrator
    assert gap.calls == 1 and shard.time("p") == T0 + timedelta(seconds=600.2)
    with pytest.raises(TwinError, match="not in the shard"):
        shard.assimilate(vitals(["q"], range(0, 1)))
    naive = vitals(["p"], range(700, 701)).assign(effective_time=datetime(2026, 11, 22, 9))
    with pytest.raises(TwinError, match="timezone-aware"):
        shard.assimilate(naive)


def test_the_shard_tracks_a_patient_as_the_single_twin_does() -> None:
    """Heart rate rising from 75 to 110 /min over ten minutes: the shard's posterior follows
    it as closely as the single twin's (their numerics differ: Euler short cycles in the
    shard, the model's integrator in the single twin)."""
    shard = shard_of(["p"])
    twin = PatientTwin("p", PatientProfile(), T0, n_members=32,
                       discrepancy=VITAL_SIGN_DISCREPANCY)  # fmt: skip
    for s in range(600):
        hr = 75.0 + 35.0 * s / 600
        row = pd.DataFrame({"patient_id": ["p"], "effective_time": [T0 + timedelta(seconds=s + 1)],
                            "loinc": ["8867-4"], "value": [hr]})  # fmt: skip
        shard.assimilate(row)
        twin.assimilate(row)
    single = float(twin.predicted()["mean"]["HR"])
    batched = float(shard.twin("p").predicted()["mean"]["HR"])
    assert abs(single - 110.0) < 3.0 and abs(batched - 110.0) < 3.0
    assert abs(batched - single) < 2.0
    forecast = shard.forecast(["p"], 1.0)
    assert forecast.values.shape[:2] == (1, 32)
