"""Load benchmark of the running service (`vitaltwin serve`) over loopback with the Redis bus.

Simulated bedside monitors send 6 vitals per bed every second (device time = wall time), as
unit gateways do: one HTTP request per second per 500 beds. The service stores them, the twins
assimilate them (all patients with new data in one batched call) and say so on the
live-updates WebSocket (``twins`` messages listing each patient's new twin time, i.e. the device
time of the newest value it assimilated). End-to-end latency is, per patient and second, the
time from that device time to the WebSocket message. The ward grows through the sizes (the beds
of a smaller size stay, with their twins, as more are added); at each size the monitors send
for a warm-up (the new beds' twins are admitted and their first forecasts made) and then for the
measured window, whose latency percentiles are recorded: a steady state, not the admission
transient. The largest ward whose p99 stays under 500 ms (and whose twins keep up: no backlog
at the end) is the figure. Beside it, in the
same run: the raw Redis Streams round trip (XADD then XREADGROUP of the same message), and the
per-stage latency percentiles of the service's own Prometheus histograms.

Needs Redis at ``VITALTWIN_BENCH_REDIS`` (default ``redis://127.0.0.1:6379/0``; the README says
how to install it). Environment: ``VITALTWIN_BENCH_BEDS`` (comma-separated ward sizes, default
250,500,1000,2000,3000,5000),
``VITALTWIN_BENCH_SECONDS`` (window per size, default 20), ``VITALTWIN_BENCH_WARMUP`` (seconds
sent before it, default 15), ``VITALTWIN_BENCH_GATEWAY`` (beds per request, default 500).
Traffic goes to 127.0.0.1 only; the service is stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import redis
from rich.console import Console

from _timing import save_figures, start_serve, table

console = Console()
REDIS = os.environ.get("VITALTWIN_BENCH_REDIS", "redis://127.0.0.1:6379/0")
JSON = {"content-type": "application/json"}
GATEWAY = int(os.environ.get("VITALTWIN_BENCH_GATEWAY", "500"))
VITALS = (
    ("HR", 80.0, "/min"),
    ("SPO2", 97.0, "%"),
    ("ABP-M", 75.0, "mm[Hg]"),
    ("ABP-S", 115.0, "mm[Hg]"),
    ("ABP-D", 60.0, "mm[Hg]"),
    ("RESP", 16.0, "/min"),
)


def redis_round_trip(n: int = 2000) -> dict[str, float]:
    """XADD then XREADGROUP of the same message, n times: the floor of the bus's latency."""
    r: Any = redis.Redis.from_url(REDIS)  # redis-py's annotations are partial
    stream = f"vt-bench:{uuid.uuid4().hex}"
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    lat = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            r.xadd(stream, {"i": i})
            got = r.xreadgroup("g", "c", {stream: ">"}, count=1, block=1000)
            r.xack(stream, "g", got[0][1][0][0])
            lat.append(time.perf_counter() - t0)
    finally:
        r.delete(stream)
    ms = np.asarray(lat) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def start_service(tmp: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    env = {
        "VITALTWIN_REGISTRY_DIR": str(tmp / "registry"),
        "VITALTWIN_RISK_TASK": "",
        "VITALTWIN_BUS_PREFIX": f"vt-bench:{uuid.uuid4().hex}",
        "VITALTWIN_PARTITIONS": "4",
        "VITALTWIN_EXPECTED_BEDS": "1024",
        # a ward in steady state: every patient past the twins' first hour, so they forecast
        "VITALTWIN_TWIN_SETTLE_S": "0",
    }
    return start_serve(tmp, REDIS, env, timeout_s=180)


async def run_ward(
    base: str, auth: dict[str, str], beds: int, seconds: int, warmup: int
) -> dict[str, Any]:
    """Send ``warmup + seconds`` of 1 Hz vitals for beds ``b0 .. b{beds-1}``; latency of the
    twins' updates of the last ``seconds``."""
    import websockets

    latencies: list[float] = []
    newest: dict[str, datetime] = {}
    ws_url = base.replace("http://", "ws://") + "/v1/live"
    async with (
        websockets.connect(ws_url, max_size=None, additional_headers=auth) as ws,
        httpx.AsyncClient(headers=auth) as client,
    ):
        measured_from = [datetime.max.replace(tzinfo=UTC)]  # device time the window starts

        async def listen() -> None:
            async for raw in ws:
                msg = orjson.loads(raw)
                if msg.get("type") == "twins":
                    now = datetime.now(UTC)
                    for u in msg["updates"]:
                        t = datetime.fromisoformat(u["time"])
                        newest[u["patient_id"]] = t
                        if t >= measured_from[0]:
                            latencies.append((now - t).total_seconds())

        listener = asyncio.create_task(listen())
        start = time.monotonic()
        sent_until = datetime.now(UTC)
        for s in range(warmup + seconds):
            await asyncio.sleep(max(0.0, start + s - time.monotonic()))
            now = datetime.now(UTC)
            if s == warmup:
                measured_from[0] = now
            posts = []
            for g0 in range(0, beds, GATEWAY):
                body = [
                    {"patient_id": f"b{b}", "time": now.isoformat(), "code": code,
                     "value": v + float(np.sin(s / 7.0 + b)), "unit": unit}
                    for b in range(g0, min(beds, g0 + GATEWAY))
                    for code, v, unit in VITALS
                ]  # fmt: skip
                posts.append(client.post(f"{base}/v1/observations", content=orjson.dumps(body),
                                         headers=JSON, timeout=30))  # fmt: skip
            for r in await asyncio.gather(*posts):
                r.raise_for_status()
            sent_until = now
        await asyncio.sleep(3.0)  # let the last second arrive
        listener.cancel()
    behind = sum(1 for b in range(beds) if newest.get(f"b{b}", datetime.min.replace(
        tzinfo=UTC)) < sent_until)  # fmt: skip
    ms = np.asarray(latencies) * 1000
    return {
        "beds": beds,
        "updates": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "beds_behind_at_end": behind,
    }


def stage_percentiles(base: str, auth: dict[str, str]) -> dict[str, dict[str, float]]:
    """p50 and p99 (ms) per stage from the service's Prometheus histograms (bucket bounds)."""
    text = httpx.get(f"{base}/metrics", headers=auth).text
    buckets: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        if line.startswith("vitaltwin_stage_seconds_bucket"):
            labels, value = line.split("} ")
            stage = labels.split('stage="')[1].split('"')[0]
            le = labels.split('le="')[1].split('"')[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.setdefault(stage, []).append((bound, float(value)))
    out = {}
    for stage, rows in buckets.items():
        rows.sort()
        total = rows[-1][1]
        if total == 0:
            continue

        def q(p: float, rows: list[tuple[float, float]] = rows, total: float = total) -> float:
            return next(b for b, c in rows if c >= p * total) * 1000

        out[stage] = {"count": total, "p50_ms_at_most": q(0.5), "p99_ms_at_most": q(0.99)}
    return out


def main() -> None:
    sizes = [
        int(x)
        for x in os.environ.get("VITALTWIN_BENCH_BEDS", "250,500,1000,2000,3000,5000").split(",")
    ]
    seconds = int(os.environ.get("VITALTWIN_BENCH_SECONDS", "20"))
    warmup = int(os.environ.get("VITALTWIN_BENCH_WARMUP", "15"))
    floor = redis_round_trip()
    console.print(f"Redis Streams round trip: p50 {floor['p50_ms']:.3f} ms, "
                  f"p99 {floor['p99_ms']:.3f} ms")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        proc, base, auth = start_service(Path(d))
        try:
            runs = []
            for beds in sizes:
                res = asyncio.run(run_ward(base, auth, beds, seconds, warmup))
                runs.append(res)
                console.print(
                    f"{beds} beds: p50 {res['p50_ms']:.0f} ms, p99 {res['p99_ms']:.0f} ms, "
                    f"{res['beds_behind_at_end']} behind"
                )
                if res["p99_ms"] > 2000 or res["beds_behind_at_end"] > 0:
                    break
            stages = stage_percentiles(base, auth)
        finally:
            t_stop = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            console.print(f"service stopped {time.monotonic() - t_stop:.1f} s after SIGTERM")
    ok = [r["beds"] for r in runs if r["p99_ms"] < 500 and r["beds_behind_at_end"] == 0]
    sustained = max(ok) if ok else 0
    tab = table("Service under load (1 Hz, 6 vitals per bed, loopback, Redis bus)", "beds",
                "twin updates", "p50 (ms)", "p99 (ms)", "beds behind", "p99 < 500 ms")  # fmt: skip
    for r in runs:
        tab.add_row(str(r["beds"]), f"{r['updates']:,}", f"{r['p50_ms']:.0f}",
                    f"{r['p99_ms']:.0f}", str(r["beds_behind_at_end"]),
                    "yes" if r["beds"] in ok else "no")  # fmt: skip
    console.print(tab)
    st = table("Per stage (service histograms; bucket bounds)", "stage", "count", "p50 <= ms",
               "p99 <= ms")  # fmt: skip
    for name, v in stages.items():
        st.add_row(name, f"{v['count']:,.0f}", f"{v['p50_ms_at_most']:g}",
                   f"{v['p99_ms_at_most']:g}")  # fmt: skip
    console.print(st)
    console.print(
        f"largest ward sustained with p99 < 500 ms: {sustained} beds (target >= 5,000; "
        f"baseline: Redis round trip p99 {floor['p99_ms']:.2f} ms)"
    )
    save_figures(
        "service",
        {"sustained_beds": sustained, "runs": runs, "stages": stages, "redis_round_trip": floor},
        console.print,
    )


if __name__ == "__main__":
    main()
