"""The CLI opens stores with a clear error, never a traceback, and never takes a password."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from vitaltwin.cli import app
from vitaltwin.store import DuckDBStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "physionet"


def test_a_password_on_the_command_line_is_refused() -> None:
    for conninfo in ("host=127.0.0.1 user=postgres password=secret", "postgresql://u:pw@h/db"):
        out = CliRunner().invoke(app, ["export", "--postgres", conninfo])
        assert out.exit_code == 2, out.output
        assert "must not carry a password" in out.output and "PGPASSWORD" in out.output
        assert "Traceback" not in out.output


def test_a_store_in_use_is_named_with_what_to_do(tmp_path: Path) -> None:
    # the same process holds it here; another process gets the same message (see
    # test_quarantine_identity) with the holder's PID
    import subprocess
    import sys

    with DuckDBStore(tmp_path / "s"):
        out = subprocess.run(
            [sys.executable, "-m", "vitaltwin", "ingest", str(FIXTURES), "--store",
             str(tmp_path / "s")],
            capture_output=True,
            text=True,
        )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "open in another process" in out.stderr and "Traceback" not in out.stderr


def test_what_a_command_writes_is_the_owners_only(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app, ["ingest", str(FIXTURES), "--store", str(tmp_path / "s")], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    exported = CliRunner().invoke(
        app, ["export", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "x")]
    )
    assert exported.exit_code == 0, exported.output
    written = [p for p in (tmp_path / "x").rglob("*")] + [tmp_path / "x"]
    assert written and all((p.stat().st_mode & 0o077) == 0 for p in written)
