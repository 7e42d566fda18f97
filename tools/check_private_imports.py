"""No module imports another package's private module (``vitaltwin.pkg._mod`` from outside
``vitaltwin.pkg``), and the examples and benchmarks import only public names. Run by
``make lint``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_of(relative: Path) -> str:
    """``vitaltwin.twin`` for ``src/vitaltwin/twin/_track.py``; ``""`` outside the library."""
    parts = relative.with_suffix("").parts
    if parts[:2] != ("src", "vitaltwin") or len(parts) < 4:
        return ""
    return ".".join(parts[1:3])


def _private(name: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in name.split(".")[1:])


def problems(path: Path) -> list[str]:
    """Imports of another package's private module in the file at ``path``."""
    rel = path.relative_to(ROOT)
    return problems_in(path.read_text(encoding="utf-8"), rel)


def problems_in(source: str, relative: Path) -> list[str]:
    """The same for ``source`` as if it were the file at ``relative`` (to the repository)."""
    home = _package_of(relative)
    out = []
    for node in ast.walk(ast.parse(source, str(relative))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("vitaltwin.") or not _private(name):
                continue
            owner = ".".join(name.split(".")[:2])
            if home != owner:
                out.append(f"{relative}:{node.lineno}: imports private {name}")
                break
    return out


def main() -> int:
    files = [*ROOT.glob("src/vitaltwin/**/*.py"), *ROOT.glob("examples/**/*.py")]
    files += ROOT.glob("bench/**/*.py")
    found = [p for f in sorted(files) for p in problems(f)]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} import(s) of another package's private module")
        return 1
    print(f"private imports: {len(files)} files checked, none across packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
