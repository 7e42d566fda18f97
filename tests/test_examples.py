"""The runnable examples in examples/ run (they import only public names: make lint checks)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "name",
    [
        "ingest_and_read.py",
        pytest.param("ward_forecast.py", marks=pytest.mark.slow),
        pytest.param("twin_whatif.py", marks=pytest.mark.slow),
    ],
)
def test_example_runs(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", [name])  # as run from the shell, without arguments
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{name} printed nothing"
