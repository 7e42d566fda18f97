"""The docs' figures come from the files the commands wrote (docs/hooks/figures.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("figures_hook", DOCS / "hooks" / "figures.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_placeholders_render_from_the_json_and_fail_loudly() -> None:
    hook = _hook()
    text = (
        "MAE {{ fig replay-2000.json table.twin_mae.MAP .3f }} over "
        "{{ fig replay-2000.json patients ,d }}"
    )
    out = hook.render(text)
    assert re.fullmatch(r"MAE \d+\.\d{3} over 2,000", out), out
    with pytest.raises(ValueError, match="no key"):
        hook.render("{{ fig replay-2000.json table.twin_mae.Pulse .3f }}")
    with pytest.raises(ValueError, match="does not exist"):
        hook.render("{{ fig nowhere.json x }}")


def test_every_placeholder_in_the_docs_resolves() -> None:
    hook = _hook()
    for page in DOCS.glob("*.md"):
        rendered = hook.render(page.read_text(encoding="utf-8"))
        assert "{{ fig" not in rendered, page.name
