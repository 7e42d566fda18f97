"""Shared by the benchmark scripts: the best wall time of a few repeats, and the figures file
each script writes (``out/bench/<name>.json``) so that the docs can show them
(``docs/figures/bench-*.json``, through ``docs/hooks/figures.py``)."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

OUT = Path(os.environ.get("VITALTWIN_BENCH_OUT", "out/bench"))


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Shortest wall time of ``repeats`` calls (s): the least disturbed by other load."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def table(title: str, *columns: str) -> Table:
    """A results table with these column headers."""
    tab = Table(title=title)
    for col in columns:
        tab.add_column(col)
    return tab


def start_serve(
    tmp: Path, bus: str, env: dict[str, str], timeout_s: float = 300.0
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """``vitaltwin serve`` in its own process on a free loopback port (store and security
    folder in ``tmp``, the bus ``bus``, ``env`` added to the environment); returns it, its base
    URL and the headers of a backend client allowed everything (a token signed with the
    service's own key) once ``/health/ready`` answers (SystemExit if it never does)."""
    import httpx

    from vitaltwin.governance import FileKeys, TokenService, identity_for, signing_key

    keys = FileKeys(tmp / "security" / "keys", create=True)
    tokens = TokenService(signing_key(keys, "token-signing"), access_ttl_s=6 * 3600)
    bench = identity_for("bench-gateway", "system", scopes=("system/*.cruds",))
    headers = {"authorization": f"Bearer {tokens.issue(bench, refresh=False).access_token}"}
    env = {"VITALTWIN_SECURITY_DIR": str(tmp / "security"), **env}

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "vitaltwin", "serve", "--port", str(port),
           "--store", str(tmp / "store"), "--bus", bus]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/health/ready").status_code == 200:
                return proc, base, headers
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the service did not become ready")
        time.sleep(0.5)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def save_figures(name: str, figures: dict[str, Any], printer: Callable[[str], object]) -> Path:
    """Write ``figures`` with the machine, the time and the peak memory to
    ``out/bench/<name>.json``, print the peak memory and the path, and return the path."""
    import jax

    path = OUT / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jax_devices": len(jax.devices()),
        },
        "peak_rss_mib": round(peak_rss_mib(), 1),
        **figures,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    printer(f"peak memory (RSS) {doc['peak_rss_mib']:,.0f} MiB; figures: {path}")
    return path
