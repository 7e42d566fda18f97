"""MkDocs hook: figures in the docs come from the JSON files the commands wrote.

A page writes ``{{ fig FILE KEY FORMAT }}``, e.g. ``{{ fig replay-2000.json table.twin_mae.HR
.3f }}``: the value at the dotted ``KEY`` of ``docs/figures/FILE``, formatted with ``FORMAT`` (a
Python format spec; ``,d`` for counts, ``.1%`` for fractions). A missing file or key fails the
build, so a figure can never silently go stale or be typed by hand. ``docs/figures/README.md``
says which command wrote each file.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

FIGURES = Path(__file__).resolve().parents[1] / "figures"
PATTERN = re.compile(r"\{\{\s*fig\s+(\S+)\s+(\S+)(?:\s+(\S+))?\s*\}\}")


@cache
def _load(name: str) -> Any:
    path = FIGURES / name
    if not path.is_file():
        raise ValueError(f"docs figure file {path} does not exist")
    return json.loads(path.read_text(encoding="utf-8"))


def figure(name: str, key: str, spec: str | None) -> str:
    """The formatted value at ``key`` of figure file ``name``."""
    value: Any = _load(name)
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise ValueError(f"docs figure {name}: no key {key!r} (stopped at {part!r})")
    if spec is None:
        return str(value)
    if spec.endswith("d"):
        value = round(value)
    return format(value, spec)


def render(markdown: str) -> str:
    """``markdown`` with every figure placeholder replaced."""
    return PATTERN.sub(lambda m: figure(m.group(1), m.group(2), m.group(3)), markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return render(markdown)
