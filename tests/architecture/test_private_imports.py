"""The private-module rule of `make lint` catches what it should (tools/check_private_imports)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check", ROOT / "tools/check_private_imports.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_a_private_import_across_packages_is_reported() -> None:
    check = _checker()
    where = Path("src/vitaltwin/risk/_new.py")
    assert check.problems_in("from vitaltwin.twin._track import track\n", where) == [
        "src/vitaltwin/risk/_new.py:1: imports private vitaltwin.twin._track"
    ]
    assert check.problems_in("import vitaltwin.twin._track\n", where) != []
    # inside its own package, and public names elsewhere, are fine
    fine = "from vitaltwin.risk._utility import utility\nfrom vitaltwin.twin import track\n"
    assert check.problems_in(fine, where) == []
    # the examples may not import private modules at all
    assert check.problems_in("from vitaltwin.risk._utility import utility\n", Path("examples/x.py"))


def test_the_tree_has_no_private_import_across_packages() -> None:
    check = _checker()
    files = [*ROOT.glob("src/vitaltwin/**/*.py"), *ROOT.glob("examples/*.py")]
    assert [p for f in files for p in check.problems(f)] == []
