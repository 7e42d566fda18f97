"""Command-line interface: a thin layer over the library.

vitaltwin scenario list
vitaltwin scenario run FILE|NAME [--out DIR]
vitaltwin verify [--json PATH]
vitaltwin demo [--out DIR]
vitaltwin surrogate train [--n-train N] [--n-test N] [--out FILE]
vitaltwin surrogate report [--json PATH]
vitaltwin ingest PATH... [--store DIR]   (PhysioNet 2019 PSV files, folders or Parquet)
vitaltwin validate phantom [--patients N] [--hours H] [--members N] [--out DIR]
vitaltwin validate replay [--data PARQUET] [--patients N] [--out DIR]
vitaltwin validate treatment --eicu DIR [--stays N] [--out DIR]
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from vitaltwin import __version__
from vitaltwin.cli._progress import rich_progress
from vitaltwin.cli._risk import data_path, risk_app, validate_risk
from vitaltwin.cli._security import (
    audit_app,
    clients_app,
    devices_app,
    keys_of,
    research_key,
    users_app,
)
from vitaltwin.settings import load_settings
from vitaltwin.simulate.scenario import (
    ScenarioError,
    ScenarioResult,
    example_scenarios,
    load_scenario,
    run_scenario,
)
from vitaltwin.store import Store
from vitaltwin.validation.verification import VerificationReport
from vitaltwin.validation.verification import verify as run_verify

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(add_completion=False, no_args_is_help=True, help="vitaltwin: patient twins.")
scenario_app = typer.Typer(no_args_is_help=True, help="Run and list scenarios.")
app.add_typer(scenario_app, name="scenario")
surrogate_app = typer.Typer(
    no_args_is_help=True, help="Train and check the haemodynamic surrogate."
)
app.add_typer(surrogate_app, name="surrogate")
validate_app = typer.Typer(
    no_args_is_help=True, help="Validate the twin (phantom, real data) and the risk models."
)
app.add_typer(validate_app, name="validate")
# Tables are wide: when the output is not a terminal (logs, CI), do not wrap at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True)

_GRADE_STYLE = {"green": "green", "yellow": "yellow", "red": "bold red"}


def _resolve(spec: str) -> Path:
    path = Path(spec)
    if path.exists():
        return path
    ex = example_scenarios()
    if spec in ex:
        return ex[spec]
    raise ScenarioError(
        f"no scenario file {spec!r} and no example of that name (examples: {', '.join(ex)})"
    )


def _run_with_progress(path: Path) -> ScenarioResult:
    scenario = load_scenario(path)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>7.0f}/{task.total:.0f} s simulated"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(scenario.name, total=scenario.duration_s)
        return run_scenario(scenario, progress=lambda s: bar.advance(task, s))


def write_result(res: ScenarioResult, out: Path) -> dict[str, Path]:
    """Write the time series and beats (Parquet), the events, a summary and two PNG plots."""
    from vitaltwin.simulate.plot import plot_pv_loops, plot_scenario, plot_ward

    out.mkdir(parents=True, exist_ok=True)
    ward = res.scenario.fidelity == "ward"
    files = {
        "timeseries": out / "timeseries.parquet",
        ("trend" if ward else "beats"): out / ("trend.parquet" if ward else "beats.parquet"),
        "plot": out / "plot.png",
        "summary": out / "summary.json",
    }
    res.timeseries.to_parquet(files["timeseries"], index=False)
    res.beats.to_parquet(files["trend" if ward else "beats"], index=False)
    if ward:
        plot_ward(res, files["plot"])
    else:
        files["pv_loops"] = out / "pv_loops.png"
        plot_scenario(res, files["plot"])
        plot_pv_loops(res, files["pv_loops"])
    first, last = res.beats.iloc[:5].mean(), res.beats.iloc[-5:].mean()
    summary = {
        "scenario": res.scenario.model_dump(),
        "steady_state_converged": res.steady_state_converged,
        "events": res.events.to_dict(orient="records"),
        "start": first.to_dict(),
        "end": last.to_dict(),
    }
    files["summary"].write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")
    return files


@scenario_app.command("list")
def scenario_list() -> None:
    """List the example scenarios shipped with vitaltwin."""
    for name, path in example_scenarios().items():
        desc = json.loads(path.read_text(encoding="utf-8")).get("description", "")
        console.print(f"[bold]{name}[/]  {desc}\n  {path}")


@scenario_app.command("run")
def scenario_run(
    scenario: Annotated[str, typer.Argument(help="scenario JSON file, or an example's name")],
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/scenarios"),
) -> None:
    """Run a scenario: writes time series (Parquet) and plots (PNG) under OUT/NAME."""
    try:
        path = _resolve(scenario)
        res = _run_with_progress(path)
    except ScenarioError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    files = write_result(res, out / res.scenario.name)
    end = res.beats.iloc[-5:].mean()
    if res.scenario.fidelity == "ward":
        console.print(
            f"[bold]{res.scenario.name}[/] end: MAP {end.map_mmhg:.0f} mmHg, HR "
            f"{end.hr_bpm:.0f}/min, lactate {end.lactate_mmol_l:.1f} mmol/L, temperature "
            f"{end.temp_c:.1f} C, SpO2 {end.spo2_pct:.0f} %"
        )
    else:
        console.print(
            f"[bold]{res.scenario.name}[/] end: MAP {end.map_mmhg:.0f} mmHg, HR "
            f"{end.hr_bpm:.0f}/min, CO {end.co_l_min:.2f} L/min, EF {100 * end.ef:.0f} %"
        )
    for kind, f in files.items():
        console.print(f"  {kind:<10} {f}")


def _print_report(report: VerificationReport) -> None:
    t = Table(title="Resting healthy adult (reference patient)", show_lines=False)
    for col in ("quantity", "expected", "computed", "error %", "grade", "source"):
        t.add_column(col, overflow="fold")
    for c in report.resting:
        t.add_row(
            f"{c.label} ({c.unit})",
            f"{c.expected:g}",
            f"{c.computed:.4g}",
            f"{c.error_pct:+.2f}",
            f"[{_GRADE_STYLE[c.grade]}]{c.grade}[/]",
            c.source[:70] + ("…" if len(c.source) > 70 else ""),
        )
    console.print(t)
    d = Table(title="Dynamic responses")
    for col in ("scenario", "quantity", "comparison", "expected", "computed", "grade"):
        d.add_column(col, overflow="fold")
    for dc in report.dynamic:
        d.add_row(
            dc.scenario,
            dc.quantity,
            dc.comparison,
            f"{dc.expected_direction} [{dc.expected_low:g}, {dc.expected_high:g}] {dc.unit}",
            f"{dc.computed:+.3g} {dc.unit}",
            f"[{_GRADE_STYLE[dc.grade]}]{dc.grade}[/]",
        )
    console.print(d)


@app.command()
def verify(
    json_path: Annotated[Path, typer.Option("--json", help="where to write the JSON table")] = Path(
        "out/verification.json"
    ),
) -> None:
    """Verification table: expected vs computed with % error and grade, sources in the JSON."""
    if not _verify_and_report(json_path):
        raise typer.Exit(1)


def _verify_and_report(json_path: Path, results: dict[str, ScenarioResult] | None = None) -> bool:
    """Print the verification table and write its JSON; True when every check is green."""
    with console.status("verifying") as status:
        report = run_verify(progress=lambda m: status.update(f"verifying: {m}"), results=results)
    _print_report(report)
    console.print(f"JSON: {report.write_json(json_path)}")
    if not report.all_green:
        console.print("[bold red]not every check is green[/]")
    return report.all_green


@app.command()
def examples(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/examples"),
) -> None:
    """Run every example scenario and the verification table; print where the plots are."""
    plots = []
    results = {}
    for name, path in example_scenarios().items():
        results[name] = _run_with_progress(path)
        files = write_result(results[name], out / name)
        plots += [files[k] for k in ("plot", "pv_loops") if k in files]
    all_green = _verify_and_report(out / "verification.json", results)
    console.print("\n[bold]Plots:[/]")
    for p in plots:
        console.print(f"  {p.resolve()}")
    if not all_green:
        raise typer.Exit(1)


@app.command()
def demo(
    beds: Annotated[int, typer.Option(help="virtual patients (1-500)")] = 24,
    speed: Annotated[
        float, typer.Option(help="simulated seconds per wall second until the course is now")
    ] = 60.0,
    hours: Annotated[
        float, typer.Option(help="the course starts this many hours before now (0-72)")
    ] = 12.0,
    seed: Annotated[int, typer.Option(help="random seed of the virtual ward")] = 2026,
    replay: Annotated[
        Path | None,
        typer.Option(help="stream real PhysioNet set-A stays (Parquet) instead of virtual ones"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    store: Annotated[
        Path | None, typer.Option(help="store directory (default: a new temporary one)")
    ] = None,
) -> None:
    """The live demo ward: the service on embedded defaults (DuckDB, in-process bus) with its
    dashboard, fed by virtual patients (some develop sepsis or bleed at hidden times) or real
    set-A stays; prints the ward's URL and the demo's users (a nurse per unit, charge nurse,
    clinician, data scientist, auditor, administrator) with fresh passwords. Sign-in, access
    rules and the audit trail are on, as in `vitaltwin serve`. Ctrl-C stops it."""
    import tempfile
    import threading

    import httpx
    import uvicorn

    from vitaltwin.dashboard import DemoConfig, WardFeed, demo_accounts, install
    from vitaltwin.governance import FileKeys, encrypt_store
    from vitaltwin.service.access import open_security
    from vitaltwin.service.app import create_app
    from vitaltwin.service.bus import MemoryBus
    from vitaltwin.store import DuckDBStore

    try:
        cfg = DemoConfig(beds=beds, speed=speed, hours=hours, seed=seed, replay=replay)
    except ValueError as exc:
        err_console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    if replay is not None and not replay.exists():
        err_console.print(f"[red]{replay}: no such file")
        raise typer.Exit(2)
    url = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory(prefix="vitaltwin-demo-") as tmp:
        bus = MemoryBus()
        security = open_security(Path(tmp) / "security")
        assert security.directory is not None
        accounts = demo_accounts(security.directory, cfg)
        with DuckDBStore(store or Path(tmp) / "store") as st:
            encrypt_store(st, FileKeys(Path(tmp) / "security" / "keys", create=True))
            api = install(create_app(st, bus, security=security, with_twins=True, shadow=False,
                                     expected_beds=cfg.beds))  # fmt: skip
            feed = WardFeed(url, cfg, api_key=accounts.pop("gateway")[1])

            def feed_when_ready() -> None:  # the twins compile first (readiness says when)
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                            feed.start_thread()
                            console.print(f"[green]ward live:[/] {url}/ward "
                                          f"({cfg.beds} beds, x{cfg.speed:g})")  # fmt: skip
                            return
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.5)
                err_console.print("[red]the service did not become ready in 10 min")

            threading.Thread(target=feed_when_ready, daemon=True).start()
            what = f"set A stays from {replay}" if replay else "virtual patients"
            console.print(f"vitaltwin demo ward: {cfg.beds} beds of {what}, time x{cfg.speed:g}")
            users = Table(title="Sign in as (demo accounts, new passwords each run)")
            for col in ("user", "role", "password"):
                users.add_column(col)
            for name, (role, password) in accounts.items():
                users.add_row(name, role.replace("_", " "), password)
            console.print(users)
            console.print(f"[bold]Open {url}/ward[/] (the twins compile for up to a minute "
                          "first; API: /docs)")  # fmt: skip
            uvicorn.run(api, host=host, port=port, log_level="warning",
                        timeout_graceful_shutdown=5)  # fmt: skip
            feed.stop()
        bus.close()
        if security.audit is not None:
            security.audit.close()


def _print_surrogate_report(report: dict[str, object]) -> None:
    tab = Table(title="Haemodynamic surrogate on held-out beat-model steady states")
    for col in ("output", "relative RMS error", "max error", "target"):
        tab.add_column(col)
    rows = report["held_out"]
    assert isinstance(rows, list)
    for r in rows:
        target = r["target_pct"]
        ok = target is None or r["rel_rms_pct"] < target
        style = "green" if ok else "bold red"
        tab.add_row(
            r["output"],
            f"[{style}]{r['rel_rms_pct']:.2f} %[/]",
            f"{r['rel_max_pct']:.1f} %",
            "-" if target is None else f"< {target:g} %",
        )
    console.print(tab)
    speed = report.get("speedup")
    if isinstance(speed, dict):
        console.print(
            f"one patient-hour: beat model {speed['beat_s_per_hour']:.2f} s, ward model "
            f"{speed['ward_s_per_hour'] * 1e3:.2f} ms -> speed-up {speed['speedup']:,.0f}x "
            "(target >= 1,000x)"
        )


@surrogate_app.command("train")
def surrogate_train(
    n_train: Annotated[int, typer.Option(help="training design points")] = 2048,
    n_test: Annotated[int, typer.Option(help="held-out design points")] = 512,
    seed: Annotated[int, typer.Option(help="Sobol scrambling seed")] = 1,
    hidden: Annotated[int, typer.Option(help="units in each of the two hidden layers")] = 32,
    out: Annotated[
        Path | None, typer.Option(help="weights file (default: the shipped one)")
    ] = None,
) -> None:
    """Regenerate the beat-model design, train the surrogate, and report its accuracy."""
    from vitaltwin.physiology.hemodynamic_network import shipped_weights_path
    from vitaltwin.surrogate.hemodynamics import train
    from vitaltwin.surrogate.speed import measure_speedup

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.total:.0f} steady states"),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def tick(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        sur, _, _ = train(n_train=n_train, n_test=n_test, seed=seed, hidden=hidden, progress=tick)
    speed = measure_speedup(sur)
    sur.report["speedup"] = speed
    target = out or shipped_weights_path()
    sur.save(target)
    _print_surrogate_report(sur.report)
    console.print(f"weights and report: {target}")


@surrogate_app.command("report")
def surrogate_report(
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the report")] = None,
) -> None:
    """Print the shipped surrogate's held-out accuracy and measure the speed-up now."""
    from vitaltwin.physiology import HemodynamicSurrogate
    from vitaltwin.surrogate.speed import measure_speedup

    sur = HemodynamicSurrogate.load()
    report = dict(sur.report)
    report["speedup"] = measure_speedup(sur)
    _print_surrogate_report(report)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
        console.print(f"JSON: {json_path}")


PostgresOption = Annotated[
    str | None,
    typer.Option(
        help=(
            "PostgreSQL conninfo, used instead of DuckDB (no password: PGPASSWORD, ~/.pgpass "
            "or a service file give it)"
        )
    ),
]
SenderZoneOption = Annotated[
    str, typer.Option(help="zone of HL7 times without an offset when MSH-7 has none")
]


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="files or folders: PSV, Parquet, FHIR, HL7, eICU")
    ],
    store: Annotated[
        Path | None, typer.Option(help="store directory (DuckDB; default: settings)")
    ] = None,
    postgres: PostgresOption = None,
    codes: Annotated[
        Path | None, typer.Option(help="HL7 v2 local-code table (CSV: local_code,loinc)")
    ] = None,
    sender_tz: SenderZoneOption = "UTC",
) -> None:
    """Ingest PhysioNet 2019 (PSV, Parquet), FHIR R4 (JSON, Bundle, NDJSON), HL7 v2 (.hl7),
    device streams (CSV, JSON lines) and eICU databases (a folder of its tables).

    Prints stored, quarantined and duplicate counts; a file that cannot be read at all is
    reported with the reason and the others are still ingested (exit status 1).
    """
    from vitaltwin.interop import ReadError, ReadOptions, input_files, read_chunks
    from vitaltwin.interop.hl7v2 import load_code_table
    from vitaltwin.store import IngestCounts

    try:
        files = input_files(paths)
        options = ReadOptions(
            local_codes=None if codes is None else load_code_table(codes),
            sender_tz=_zone(sender_tz),
        )
    except ReadError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None

    total = IngestCounts(0, 0, 0, 0)
    rejected = 0
    with (
        _open_store(store, postgres) as st,
        Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} files"),
            TimeElapsedColumn(),
            console=err_console,
        ) as bar,
    ):
        task = bar.add_task("ingest", total=len(files))
        for f in files:
            parts = 0
            try:  # a part at a time: memory stays bounded whatever the file's size
                for record in read_chunks(f, options):
                    total += st.ingest_record(record)
                    parts += 1
            except ReadError as exc:
                kept = f" (after {parts} part(s) were stored)" if parts else ""
                err_console.print(f"[bold red]rejected:[/] {exc}{kept}")
                rejected += 1
            bar.advance(task)
    console.print(
        f"{len(files) - rejected} files read, {rejected} rejected; {total.read:,} records: "
        f"stored {total.stored:,}, quarantined {total.quarantined:,}, duplicates "
        f"{total.duplicates:,} (store: {st.describe()})"
    )
    if rejected:
        raise typer.Exit(1)


def _zone(name: str) -> tzinfo:
    """A time zone from its IANA name (``Europe/Paris``) or ``UTC``; exit 2 when unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        err_console.print(f"[bold red]error:[/] --sender-tz {name!r} is not a time zone name")
        raise typer.Exit(2) from None


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_or_loopback(host: str, cert: Path | None, key: Path | None, what: str) -> None:
    """Refuse to listen beyond this machine without TLS; check the pair is there."""
    if (cert is None) != (key is None):
        err_console.print(f"[bold red]error:[/] {what}: TLS needs both a certificate and a key")
        raise typer.Exit(2)
    if cert is None and not _loopback(host):
        err_console.print(
            f"[bold red]error:[/] {what} on {host} without TLS: patient data would cross the "
            "network in clear. Give a certificate and key (VITALTWIN_TLS_CERT, "
            "VITALTWIN_TLS_KEY; `vitaltwin tls` makes a development pair) or bind "
            "127.0.0.1 behind a TLS proxy."
        )
        raise typer.Exit(2)
    for path in (cert, key):
        if path is not None and not path.is_file():
            err_console.print(f"[bold red]error:[/] {what}: no file {path}")
            raise typer.Exit(2)


@app.command("tls")
def tls_dev_cert(
    out: Annotated[Path, typer.Option(help="folder for dev-cert.pem and dev-key.pem")] = Path(
        "out/tls"
    ),
    name: Annotated[
        list[str] | None,
        typer.Option(help="host names or addresses (default: localhost, 127.0.0.1)"),
    ] = None,
) -> None:
    """Make a self-signed TLS certificate and key (owner-only) for development and tests; a
    hospital uses certificates from its own authority."""
    from vitaltwin.governance import development_certificate

    cert, key = development_certificate(out, tuple(name or ("localhost", "127.0.0.1")))
    console.print(f"certificate {cert}")
    console.print(f"key {key}")
    console.print(f"use: VITALTWIN_TLS_CERT={cert} VITALTWIN_TLS_KEY={key} vitaltwin serve")


@app.command()
def listen(
    port: Annotated[int, typer.Option(help="TCP port for MLLP")] = 2575,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    store: Annotated[
        Path | None, typer.Option(help="store directory (DuckDB; default: settings)")
    ] = None,
    postgres: PostgresOption = None,
    max_bytes: Annotated[int, typer.Option(help="largest message accepted (bytes)")] = 1 << 20,
    read_timeout: Annotated[
        float, typer.Option(help="seconds to wait for a frame's next bytes")
    ] = 30.0,
    max_connections: Annotated[int, typer.Option(help="connections served at once")] = 32,
    sender_tz: SenderZoneOption = "UTC",
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate (default: settings' tls_cert)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS key (default: settings)")] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(help="require client certificates signed by this authority (mutual TLS)"),
    ] = None,
) -> None:
    """Receive HL7 v2 over MLLP: store each message and answer AA, AE (stored, some values
    quarantined) or AR (rejected), with the reasons in ERR segments. Over TLS when a
    certificate is given (required beyond this machine), with client certificates when
    --client-ca is. Every message is an entry of the listener's own audit trail
    (``security_dir/audit-mllp.jsonl``: the sender, by its client certificate under mutual
    TLS; the patients; the answer). SIGTERM or Ctrl-C stops cleanly."""
    import asyncio
    import signal

    from vitaltwin.governance import AuditTrail, server_context, signing_key
    from vitaltwin.service.access import AUDIT_KEY
    from vitaltwin.service.mllp import MLLP_AUDIT_FILE, MllpServer

    settings = load_settings()
    cert, key = tls_cert or settings.tls_cert, tls_key or settings.tls_key
    ca = client_ca or settings.tls_client_ca
    _tls_or_loopback(host, cert, key, "MLLP")
    ssl_ctx = server_context(cert, key, ca) if cert is not None and key is not None else None
    zone = _zone(sender_tz)

    trail = AuditTrail(settings.security_dir / MLLP_AUDIT_FILE, signing_key(keys_of(), AUDIT_KEY))

    async def checkpoints() -> None:  # sign the trail's head every 30 s when anything was added
        while True:
            await asyncio.sleep(30)
            trail.checkpoint()

    async def run() -> None:
        with _open_store(store, postgres, encrypt=True) as st:
            signer = asyncio.create_task(checkpoints())
            srv = MllpServer(
                st,
                on_ingest=lambda c: console.print(
                    f"stored {c.stored}, quarantined {c.quarantined}, duplicates {c.duplicates}"
                ),
                max_bytes=max_bytes,
                read_timeout_s=read_timeout,
                max_connections=max_connections,
                sender_tz=zone,
                audit=trail,
            )
            await srv.start(host, port, ssl=ssl_ctx)
            how = "MLLP over TLS" if ssl_ctx else "MLLP"
            console.print(f"listening for {how} on {host}:{port} (Ctrl-C or SIGTERM stops)")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await srv.stop()
            signer.cancel()
            trail.close()
            console.print(
                f"stopped: {sum(srv.answered.values()):,} messages answered "
                f"({', '.join(f'{k} {v:,}' for k, v in sorted(srv.answered.items())) or 'none'})"
            )

    asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: settings)")] = None,
    store: Annotated[
        Path | None, typer.Option(help="store directory (DuckDB; default: settings)")
    ] = None,
    postgres: PostgresOption = None,
    bus: Annotated[
        str | None,
        typer.Option(help="'memory' or a Redis URL, e.g. redis://127.0.0.1:6379/0"),
    ] = None,
) -> None:
    """Run the service: HTTP API (OpenAPI at /docs), inputs onto the bus, the ingest worker.
    Settings come from the environment (VITALTWIN_HOST, VITALTWIN_PORT, VITALTWIN_BUS, ...) or
    the settings file; options win. Ctrl-C or SIGTERM stops cleanly."""
    import logging

    import uvicorn

    from vitaltwin.service.app import JsonLogFormatter, create_app
    from vitaltwin.service.bus import Bus, MemoryBus, RedisBus

    settings = load_settings()
    bind = host or settings.host
    _tls_or_loopback(bind, settings.tls_cert, settings.tls_key, "the service")
    tls = settings.tls_cert is not None
    url = bus or settings.bus
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    logging.getLogger("vitaltwin").handlers[:] = [handler]
    logging.getLogger("vitaltwin").setLevel(logging.INFO)
    the_bus: Bus
    try:
        the_bus = (
            MemoryBus(settings.partitions)
            if url == "memory"
            else RedisBus(url, prefix=settings.bus_prefix, partitions=settings.partitions)
        )
        the_bus.pending()
    except Exception as exc:
        err_console.print(f"[bold red]error:[/] bus {url!r}: {exc}")
        raise typer.Exit(2) from None
    scorer = None
    card = None
    if settings.risk_task:
        from vitaltwin.risk import CHAMPION, Registry, RegistryError, risk_task

        try:
            registry = Registry(settings.registry_dir)
            scorer = registry.load(risk_task(settings.risk_task).model_name, CHAMPION)
            card = registry.card(scorer)
        except (RegistryError, OSError, ValueError, KeyError) as exc:
            console.print(f"no {settings.risk_task} risk model in the registry ({exc}): "
                          "risk is not scored")  # fmt: skip
    with _open_store(store, postgres, live=True, encrypt=True) as st:
        mqtt = (
            (settings.mqtt_host, settings.mqtt_port, settings.mqtt_topic)
            if settings.mqtt_host
            else None
        )
        from vitaltwin.dashboard import install
        from vitaltwin.governance import AuditError, EnvironmentKeys, KeyProviderError
        from vitaltwin.service.access import open_security

        try:
            security = open_security(
                settings.security_dir,
                keys=EnvironmentKeys() if settings.keys_from == "environment" else None,
                access_ttl_s=settings.access_token_s,
                refresh_ttl_s=settings.refresh_token_s,
                secure_cookies=settings.secure_cookies or tls,
            )
        except (AuditError, KeyProviderError, ValueError, OSError) as exc:
            err_console.print(f"[bold red]error:[/] security: {exc}")
            raise typer.Exit(2) from None
        if security.directory is not None and not security.directory.users:
            console.print("[yellow]no users yet:[/] add one with `vitaltwin users add NAME "
                          "--role clinician --unit UNIT` (same settings)")  # fmt: skip
        from vitaltwin.governance import client_context

        mqtt_tls = None
        if settings.mqtt_tls_ca is not None:
            ca, cert, key = settings.mqtt_tls_ca, settings.mqtt_tls_cert, settings.mqtt_tls_key
            mqtt_tls = client_context(ca, cert, key)
        api = create_app(
            st,
            the_bus,
            security=security,
            max_body_bytes=settings.max_body_bytes,
            mqtt=mqtt,
            mqtt_tls=mqtt_tls,
            mqtt_login=(settings.mqtt_username, settings.mqtt_password.get_secret_value())
            if settings.mqtt_username and settings.mqtt_password
            else None,
            with_twins=settings.twins,
            shadow=settings.shadow_alerts,
            twin_checkpoint_s=settings.twin_checkpoint_s,
            twin_settle_s=settings.twin_settle_s,
            scorer=scorer,
            model_card=card,
            expected_beds=settings.expected_beds,
        )
        install(api)  # the dashboard's pages
        where = f"{'https' if tls else 'http'}://{bind}:{port or settings.port}"
        console.print(f"vitaltwin service on {where} (ward: {where}/ward; API: {where}/docs; "
                      f"store {st.describe()})")  # fmt: skip
        # SIGTERM: stop taking requests, close connections within 10 s (live updates too)
        uvicorn.run(api, host=bind, port=port or settings.port, log_config=None,
                    timeout_graceful_shutdown=10,
                    ssl_certfile=str(settings.tls_cert) if tls else None,
                    ssl_keyfile=str(settings.tls_key) if tls else None)  # fmt: skip
    the_bus.close()


@app.command()
def worker(
    bus: Annotated[
        str | None, typer.Option(help="Redis URL of the bus (default: settings)")
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="store directory (DuckDB; default: settings)")
    ] = None,
    postgres: PostgresOption = None,
    partitions: Annotated[
        str | None, typer.Option(help="partitions this worker reads, e.g. 0,1,2 (default: all)")
    ] = None,
    claim_idle_ms: Annotated[
        int, typer.Option(help="take over messages pending this long (a dead worker's)")
    ] = 30_000,
) -> None:
    """Run an ingest worker without the HTTP API: it stores what the Redis bus brings, next to
    `vitaltwin serve` or other workers (PostgreSQL lets several write). SIGTERM stops it."""
    import signal
    import threading

    from vitaltwin.service.bus import RedisBus
    from vitaltwin.service.ingest import IngestWorker

    settings = load_settings()
    url = bus or settings.bus
    if not url.startswith(("redis://", "rediss://", "unix://")):
        err_console.print(
            "[bold red]error:[/] a separate worker needs a Redis bus (--bus redis://...)"
        )
        raise typer.Exit(2)
    the_bus = RedisBus(url, prefix=settings.bus_prefix, partitions=settings.partitions)
    parts = [int(p) for p in partitions.split(",")] if partitions else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with _open_store(store, postgres) as st:
        w = IngestWorker(the_bus, st, threading.Lock(), parts, claim_idle_ms=claim_idle_ms)
        w.start()
        console.print(f"ingest worker {w.consumer} on {url} (partitions {w.partitions})")
        stop.wait()
        w.stop()
        c = w.stats.counts
        console.print(
            f"stopped: {w.stats.messages:,} messages; stored {c.stored:,}, quarantined "
            f"{c.quarantined:,}, duplicates {c.duplicates:,}"
        )
    the_bus.close()


def _open_store(
    directory: Path | None, postgres: str | None, live: bool = False, encrypt: bool = False
) -> Store:
    """The store named on the command line, else the one the settings name, its sealed
    columns encrypted when it is (with ``encrypt``: made so when it is not yet); a clear error
    (exit 2) when it cannot be opened."""
    st = _open_plain_store(directory, postgres, live)
    from vitaltwin.governance import KeyProviderError, encrypt_store, is_encrypted

    try:
        if encrypt or is_encrypted(st):
            encrypt_store(st, keys_of())
    except (KeyProviderError, OSError) as exc:
        st.close()
        err_console.print(f"[bold red]error:[/] the store's encryption key: {exc}")
        raise typer.Exit(2) from None
    return st


def _open_plain_store(directory: Path | None, postgres: str | None, live: bool) -> Store:
    import psycopg

    from vitaltwin.store import DuckDBStore, PostgresStore, StoreInUseError

    if postgres and _has_password(postgres):
        err_console.print(
            "[bold red]error:[/] --postgres must not carry a password (the command line is "
            "visible to every user of the machine): set PGPASSWORD, or use ~/.pgpass or a "
            "service file (service=NAME in ~/.pg_service.conf)"
        )
        raise typer.Exit(2)
    settings = load_settings()
    conninfo = postgres or (None if directory is not None else settings.postgres)
    try:
        if conninfo:
            return PostgresStore(conninfo)
        # the live service checkpoints off the ingest path (see DuckDBStore)
        return DuckDBStore(
            directory or settings.store_dir, checkpoint_every_s=10.0 if live else None
        )
    except StoreInUseError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except psycopg.Error as exc:
        err_console.print(f"[bold red]error:[/] PostgreSQL {conninfo!r}: {exc}".strip())
        raise typer.Exit(2) from None


def _has_password(conninfo: str) -> bool:
    """Whether a libpq connection string or URI names a password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return bool(conninfo_to_dict(conninfo).get("password"))
    except Exception:  # unparsable: psycopg will say why when connecting
        return "password" in conninfo.lower()


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/export"),
    fmt: Annotated[str, typer.Option("--format", help="parquet or fhir")] = "parquet",
    store: Annotated[
        Path | None, typer.Option(help="store directory (DuckDB; default: settings)")
    ] = None,
    postgres: PostgresOption = None,
    deidentified: Annotated[
        bool,
        typer.Option(
            help="a research export: every table de-identified (Safe Harbor), "
            "consent respected, with a re-identification risk report (Parquet)"
        ),
    ] = False,
) -> None:
    """Export the stored record: Parquet tables, or FHIR R4 NDJSON (Patient, Encounter,
    Condition, MedicationAdministration, Observation), streamed, each file written whole or
    not at all; with --deidentified, a research export (docs: Security and audit)."""
    if fmt not in ("parquet", "fhir"):
        err_console.print(f"[bold red]error:[/] --format {fmt!r}: use 'parquet' or 'fhir'")
        raise typer.Exit(2)
    if deidentified:
        _export_research(out, store, postgres)
        return
    with _open_store(store, postgres) as st:
        if fmt == "parquet":
            for table, path in st.export_parquet(out).items():
                console.print(f"{table}: {path}")
            return
        from vitaltwin.service import export_fhir

        with rich_progress(err_console) as progress:
            written = export_fhir(st, out, progress=progress)
        for rtype, (path, n) in written.items():
            console.print(f"{n:,} {rtype}: {path}")


def _export_research(out: Path, store: Path | None, postgres: str | None) -> None:
    from vitaltwin.governance import Deidentifier, KeyProviderError, export_research

    try:
        key = research_key()
    except KeyProviderError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    with _open_store(store, postgres) as st, rich_progress(err_console) as progress:
        done = export_research(st, out, Deidentifier(key), progress=progress)
    for table, n in done.rows.items():
        console.print(f"{table}: {n:,} rows")
    r = done.risk
    console.print(f"left out (consent excludes research): {done.excluded_patients} patients; "
                  f"dates shifted 1-{done.max_shift_days} days back per patient")  # fmt: skip
    console.print(f"re-identification risk over {', '.join(r.quasi_identifiers)}: k = {r.k} "
                  f"({r.patients_below_threshold} of {r.patients} patients in classes under "
                  f"{r.threshold}); {out / 'reidentification-risk.json'}")  # fmt: skip


def _print_frame(title: str, df: pd.DataFrame) -> None:
    tab = Table(title=title)
    tab.add_column(str(df.index.name or ""))
    for c in df.columns:
        tab.add_column(str(c))
    for idx, row in df.astype(object).iterrows():
        tab.add_row(
            str(idx), *[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.tolist()]
        )
    console.print(tab)


@validate_app.command("phantom")
def validate_phantom(
    patients: Annotated[int, typer.Option(help="virtual patients")] = 200,
    hours: Annotated[int, typer.Option(help="hours per patient")] = 24,
    members: Annotated[int, typer.Option(help="ensemble members per twin")] = 64,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/phantom"),
) -> None:
    """Phantom study: twins on virtual patients with hidden parameters and sepsis onsets."""
    from vitaltwin.validation.phantom import TARGETS, PhantomConfig, run_phantom
    from vitaltwin.validation.plot import plot_errors

    if patients < 2 or hours < 3 or members < 8:
        err_console.print("[red]need --patients >= 2, --hours >= 3, --members >= 8")
        raise typer.Exit(2)
    cfg = PhantomConfig(n_patients=patients, hours=hours, n_members=members, seed=seed)
    with rich_progress(err_console) as progress:
        res = run_phantom(cfg, progress)
    _print_frame("Parameter recovery (median |relative error|)", res.parameters)
    _print_frame("State tracking against the truth (RMSE, every 5 min)", res.tracking)
    _print_frame("One-hour forecast of the measured values", res.forecast)
    d = res.deterioration
    met = res.meets_targets()
    console.print(
        f"MAP < 65 mmHg within the next hour (probability >= {cfg.threshold}): sensitivity "
        f"{d['sensitivity']:.3f} (target >= {TARGETS['sensitivity'][0]}), specificity "
        f"{d['specificity']:.3f} (>= {TARGETS['specificity'][0]}) over {d['positives']} positive "
        f"and {d['negatives']} negative patient-hours; new episodes only: sensitivity "
        f"{d['sensitivity_new_episodes']:.3f} of {d['new_episodes']}"
    )
    console.print(
        f"90 % band coverage, pooled: {res.pooled_coverage(90):.3f} (target 0.85-0.95); 50 % "
        f"band: {res.pooled_coverage(50):.3f}; artefacts gated: {res.gated_artefacts:.1%}"
    )
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": cfg.__dict__,
        "parameters": res.parameters.to_dict(),
        "tracking": res.tracking.to_dict(),
        "forecast": res.forecast.to_dict(),
        "deterioration": d,
        "coverage_90_pooled": res.pooled_coverage(90),
        "coverage_50_pooled": res.pooled_coverage(50),
        "gated_artefacts": res.gated_artefacts,
        "meets_targets": met,
    }
    (out / "phantom.json").write_text(json.dumps(summary, indent=1, default=str))
    fig = plot_errors(
        res.tracking.dropna(),
        {"persistence_rmse": "persistence", "twin_rmse": "twin"},
        f"Phantom study, {patients} patients x {hours} h: tracking error (RMSE)",
        out / "phantom_tracking.png",
    )
    console.print(f"JSON: {out / 'phantom.json'}  plot: {fig}")
    console.print(
        "targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items())
    )


@validate_app.command("replay")
def validate_replay(
    data: Annotated[
        Path | None,
        typer.Option(
            help="PhysioNet 2019 set A, or an eICU database folder (its cuff pressures) "
            "(default: VITALTWIN_PHYSIONET_SET_A)"
        ),
    ] = None,
    patients: Annotated[
        int, typer.Option(help="patients to replay (0: every eligible patient)")
    ] = 0,
    members: Annotated[int, typer.Option(help="ensemble members per twin")] = 32,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/replay"),
) -> None:
    """Replay ICU stays (>= 24 h; PhysioNet 2019 or eICU) hour by hour: one-hour forecast error
    of the twin against the statistician's baselines (persistence, recent and weighted means,
    trend, regression, boosting), for HR, MAP and SpO2 where charted, with the twin's gain over
    the best, and the boosting baseline given the twin's forecast and estimates."""
    from vitaltwin.validation.plot import plot_errors
    from vitaltwin.validation.replay import ReplayConfig, ReplayError, run_replay

    data = data_path(data)
    if not data.exists():
        err_console.print(f"[red]{data}: no such file (pass --data)")
        raise typer.Exit(2)
    cfg = ReplayConfig(n_members=members, max_patients=patients or None)
    try:
        with rich_progress(err_console) as progress:
            res = run_replay(data, cfg, progress)
    except ReplayError as exc:
        err_console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    from vitaltwin.validation.uncertainty import ONLINE_COLUMNS, UNCERTAINTY_COLUMNS

    spread_columns = [*UNCERTAINTY_COLUMNS, *ONLINE_COLUMNS]

    _print_frame(
        f"One-hour-ahead forecast error (MAE), {res.patients:,} patients with >= "
        f"{cfg.min_hours} h, first {cfg.max_hours} h, evaluation half",
        res.table.drop(columns=spread_columns).T.rename_axis("figure"),  # one column each
    )
    _print_frame(
        "The twin's uncertainty: share of charted values inside its 50 % and 90 % bands, as "
        "issued, rescaled on the tuning half (factor on its spread) and calibrated online on "
        "the evaluation half's own earlier outcomes (factor at the end); CRPS beside "
        "persistence's",
        res.table[spread_columns].T.rename_axis("figure"),
    )
    if res.absent:
        console.print(f"not charted in these data (no rows): {', '.join(res.absent)}")
    beats = res.beats_persistence()
    console.print(
        "twin beats persistence: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in beats.items())
    )
    t = res.table
    console.print(
        "twin against the best baseline (its MAE minus the twin's, 95 % patient-bootstrap "
        "interval; above zero: the twin is better): "
        + ", ".join(
            f"{n} vs {t.loc[n, 'best_baseline']} [{t.loc[n, 'gain_vs_best_ci95_low']:+.3f}, "
            f"{t.loc[n, 'gain_vs_best_ci95_high']:+.3f}]"
            for n in t.index
        )
    )
    console.print(
        "the boosting baseline given the twin's forecast and estimated physiology (its MAE "
        "minus boosting's alone; 95 % interval; above zero: the twin adds information): "
        + ", ".join(
            f"{n} {t.loc[n, 'boosting_with_twin_mae']:.3f} "
            f"[{t.loc[n, 'boosting_with_twin_gain_ci95_low']:+.3f}, "
            f"{t.loc[n, 'boosting_with_twin_gain_ci95_high']:+.3f}]"
            for n in t.index
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(
        json.dumps(
            {
                "config": cfg.__dict__,
                "patients": res.patients,
                "table": res.table.to_dict(),
                "beats_persistence": beats,
                "data": str(data),
                "absent": list(res.absent),
            },
            indent=1,
        )
    )
    fig = plot_errors(
        res.table,
        {
            "persistence_mae": "persistence",
            "ewm_mae": "weighted mean",
            "trend_mae": "trend",
            "regression_mae": "regression",
            "boosting_mae": "boosting",
            "boosting_with_twin_mae": "boosting given the twin",
            "twin_now_mae": "twin's estimate now",
            "twin_mae": "twin",
        },
        f"Replay of {data.name}, {res.patients:,} stays: one-hour forecast MAE",
        out / "replay.png",
    )
    console.print(f"JSON: {out / 'replay.json'}  plot: {fig}")


@validate_app.command("treatment")
def validate_treatment(
    eicu: Annotated[
        Path, typer.Option(help="an eICU database's folder (the demo: ../shared/data/eicu-demo)")
    ],
    stays: Annotated[int, typer.Option(help="stays with events to use (0: all)")] = 0,
    members: Annotated[int, typer.Option(help="ensemble members per twin")] = 32,
    recalibrate: Annotated[
        bool,
        typer.Option(help="fit the drug and fluid response on the training stays (slower)"),
    ] = False,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/treatment"),
) -> None:
    """Norepinephrine rate changes and fluid boluses of real ICU stays: MAP 30-60 min later as
    the twin predicts it under the dose given, against no change, a population dose-response
    and the twin without the change (MAE, direction accuracy, band coverage, intervals); with
    --recalibrate, also the twin whose drug potency and fluid distribution were fitted on the
    training stays."""
    import pandas as pd

    from vitaltwin.interop import ReadError
    from vitaltwin.interop.eicu import convert_eicu
    from vitaltwin.validation.treatment import (
        TreatmentConfig,
        TreatmentError,
        plot_treatment,
        run_treatment,
    )

    cfg = TreatmentConfig(n_members=members, max_stays=stays or None, recalibrate=recalibrate)
    try:
        record = convert_eicu(eicu)
        with rich_progress(err_console) as progress:
            res = run_treatment(record, cfg, progress)
    except (ReadError, TreatmentError) as exc:
        err_console.print(f"[red]{exc}")
        raise typer.Exit(2) from None

    def ci(lo_hi: list[float] | None) -> str:
        return "" if lo_hi is None else f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}"

    table = pd.DataFrame(
        {
            "events": res.table["events"].to_numpy(),
            "stays": res.table["stays"].to_numpy(),
            "MAE (mmHg)": [f"{v:.2f} ({ci(c)})" for v, c in
                           zip(res.table["mae_mmhg"], res.table["mae_ci95"], strict=True)],
            "direction right": ["" if v is None or v != v else f"{v:.2f} ({ci(c)})" for v, c in
                                zip(res.table["direction_accuracy"], res.table["direction_ci95"],
                                    strict=True)],
        },
        index=[f"{t}: {m.replace('_', ' ')}" for t, m in
               zip(res.table["treatment"], res.table["method"], strict=True)],
    )  # fmt: skip
    _print_frame("MAP 30-60 min after a treatment (evaluation half of the stays; 95 % stay-"
                 "bootstrap intervals)", table)  # fmt: skip
    cover = res.coverage.set_index("treatment")
    shown = pd.DataFrame(index=cover.index)
    for c in cover.columns:
        if c.endswith("_ci95"):
            continue
        v = cover[c]
        shown[c] = (
            [f"{x:.3f} ({ci(lo_hi)})" for x, lo_hi in zip(v, cover[f"{c}_ci95"], strict=True)]
            if f"{c}_ci95" in cover
            else v
        )
    _print_frame("The twin's bands: share of outcomes inside (95 % stay-bootstrap intervals)",
                 shown.T)  # fmt: skip
    _print_frame("Mean MAP change (mmHg): observed, the twin's effect of the change, its drift "
                 "without it", res.responses)  # fmt: skip
    if not res.calibration.empty:
        _print_frame("Recalibration on the training stays (MAE of the twin's MAP after)",
                     res.calibration.set_index(["treatment", "parameter", "factor"]))  # fmt: skip
    console.print("left out: " + "; ".join(f"{k} {v}" for k, v in res.excluded.items()))
    console.print(f"a bolus is taken as {cfg.bolus_ml:g} mL over {cfg.bolus_min:g} min (eICU "
                  "charts no volume)")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "treatment.json").write_text(
        json.dumps(
            {
                "config": {k: v for k, v in cfg.__dict__.items()},
                # by treatment (spaces as _), then method:
                # {"norepinephrine": {"twin": {"mae_mmhg": ...}}, "fluid_bolus": ...}
                "table": {
                    str(t).replace(" ", "_"): g.set_index("method")
                    .drop(columns="treatment")
                    .to_dict(orient="index")
                    for t, g in res.table.groupby("treatment")
                },
                "coverage": {
                    str(r["treatment"]).replace(" ", "_"): {
                        k: v for k, v in r.items() if k != "treatment"
                    }
                    for r in res.coverage.to_dict(orient="records")
                },
                "responses": res.responses.to_dict(orient="index"),
                # by parameter: the factor chosen and every factor tried (keys "x0_5")
                "calibration": _calibration_json(res.calibration),
                "excluded": res.excluded,
            },
            indent=1,
            default=str,
        )
    )
    res.events.to_parquet(out / "events.parquet")
    fig = plot_treatment(res, out / "treatment.png")
    console.print(f"JSON: {out / 'treatment.json'}  events: {out / 'events.parquet'}  plot: {fig}")


def _calibration_json(cal: pd.DataFrame) -> dict[str, Any]:
    """The recalibration table as {parameter: {chosen_factor, chosen_value, declared_mae_mmhg,
    chosen_mae_mmhg, train_events, train_stays, tried: {"x1_5": row}}} (no dots in keys: the
    docs address figures by dotted paths)."""
    out: dict[str, Any] = {}
    for name, g in cal.groupby("parameter"):
        best = g[g["chosen"]].iloc[0]
        out[str(name)] = {
            "treatment": str(best["treatment"]),
            "chosen_factor": float(best["factor"]),
            "chosen_value": float(best["value_for_reference_adult"]),
            "declared_mae_mmhg": float(g.loc[g["factor"] == 1.0, "train_mae_mmhg"].iloc[0]),
            "chosen_mae_mmhg": float(best["train_mae_mmhg"]),
            "train_events": int(best["train_events"]),
            "train_stays": int(best["train_stays"]),
            "tried": {
                "x" + f"{r['factor']:g}".replace(".", "_"): {
                    "value": float(r["value_for_reference_adult"]),
                    "train_mae_mmhg": float(r["train_mae_mmhg"]),
                }
                for r in g.to_dict(orient="records")
            },
        }
    return out


@validate_app.command("alerts")
def validate_alerts(
    patients: Annotated[int, typer.Option(help="virtual patients")] = 48,
    hours: Annotated[int, typer.Option(help="hours per patient")] = 24,
    seed: Annotated[int, typer.Option(help="random seed")] = 11,
    forecast_hours: Annotated[
        float, typer.Option(help="horizon of the forecasts the rules read (h)")
    ] = 6.0,
    set_a: Annotated[
        Path | None,
        typer.Option(help="stream PhysioNet 2019 set A (Parquet) instead of a simulated ward"),
    ] = None,
    alert_on: Annotated[
        float | None,
        typer.Option(help="study other thresholds (every rule): raise at this probability"),
    ] = None,
    alert_off: Annotated[float | None, typer.Option(help="... end the episode below this")] = None,
    realert_rise: Annotated[float | None, typer.Option(help="... re-alert on this rise")] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/alerts"),
) -> None:
    """Alert burden of the service's default rules, from its own alert log: on a simulated
    ward (virtual patients with hidden sepsis and bleeding), or on set A streamed hour by
    hour (``--set-a``; --patients sampled stays of >= 24 h)."""
    from vitaltwin.service.alerts import FORECAST_RULES
    from vitaltwin.validation.alert_study import (
        AlertStudyConfig,
        SetAAlertConfig,
        run_alert_study,
        run_set_a_alerts,
        with_thresholds,
    )
    from vitaltwin.validation.plot import plot_alert_timeline

    if patients < 2 or hours < 4 or not 0.5 <= forecast_hours <= 12:
        err_console.print("[red]need --patients >= 2, --hours >= 4, --forecast-hours 0.5-12")
        raise typer.Exit(2)
    try:
        rules = with_thresholds(alert_on, alert_off, realert_rise)
    except ValueError as exc:
        err_console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    with rich_progress(err_console) as progress:
        if set_a is None:
            what = f"{patients} simulated patients x {hours} h"
            res = run_alert_study(
                AlertStudyConfig(n_patients=patients, hours=hours, seed=seed,
                                 forecast_hours=forecast_hours, rules=rules),
                progress,
            )  # fmt: skip
        else:
            if not set_a.exists():
                err_console.print(f"[red]{set_a}: no such file")
                raise typer.Exit(2)
            what = f"set A, {patients} stays of >= 24 h (first 72 h)"
            res = run_set_a_alerts(
                set_a,
                SetAAlertConfig(n_patients=patients, forecast_hours=forecast_hours, rules=rules),
                progress,
            )  # fmt: skip
    card = res.scorecard
    which = "the service's default rules" if rules == FORECAST_RULES else (
        f"rules at on {rules[0].on:g}, off {rules[0].off:g}, re-alert +{rules[0].realert_rise:g}"
    )  # fmt: skip
    tab = Table(title=f"Alert burden, {what} ({which} on {forecast_hours:g}-h forecasts)")
    for col in ("figure", "value", "target"):
        tab.add_column(col)
    tab.add_row("alerts", f"{card.alerts}", "")
    tab.add_row("alerts per patient-hour", f"{card.alerts_per_patient_hour:.3f}", "<= 0.05")
    tab.add_row("alerts per clinician per 12-h shift (2 patients)",
                f"{card.alerts_per_clinician_shift:.2f}", "")  # fmt: skip
    tab.add_row("PPV (event within 12 h, or under way <= 2 h)", f"{card.ppv:.2f}", ">= 0.30")
    tab.add_row("events", f"{card.events}", "")
    tab.add_row("events alerted >= 2 h ahead", f"{card.recall_2h:.2f}", ">= 0.80")
    tab.add_row("median lead (h)", f"{card.median_lead_h:.1f}", "")
    console.print(tab)
    for name, other in res.other.items():
        console.print(
            f"against {name} onsets: PPV {other.ppv:.2f}, {other.events} events, alerted >= 2 h "
            f"ahead {other.recall_2h:.2f}, median lead {other.median_lead_h:.1f} h"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "alerts.json").write_text(json.dumps(res.figures(), indent=1, default=str))
    fig = plot_alert_timeline(
        res.patients,
        res.alerts,
        f"{what}: alerts and events",
        out / "alerts_timeline.png",
    )
    console.print(f"JSON: {out / 'alerts.json'}  plot: {fig}")


validate_app.command("risk")(validate_risk)
app.add_typer(risk_app, name="risk")
app.add_typer(users_app, name="users")
app.add_typer(devices_app, name="devices")
app.add_typer(clients_app, name="clients")
app.add_typer(audit_app, name="audit")
keys_app = typer.Typer(no_args_is_help=True, help="Encryption keys of the store.")
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate-store")
def keys_rotate_store(
    to: Annotated[str, typer.Option(help="name of the new key-encryption key")],
    store: Annotated[Path | None, typer.Option(help="store directory (default: settings)")] = None,
    postgres: PostgresOption = None,
) -> None:
    """Wrap the store's data key with a new key-encryption key (made when it is a new key
    file); nothing stored is rewritten. The old key can be retired afterwards."""
    from vitaltwin.governance import KeyProviderError, rotate_store_key

    with _open_store(store, postgres) as st:
        try:
            old = rotate_store_key(st, keys_of(), to)
        except (KeyProviderError, ValueError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
    console.print(f"the store's data key is now wrapped by {to!r}; {old!r} may be retired")


@keys_app.command("rotate-data")
def keys_rotate_data(
    store: Annotated[Path | None, typer.Option(help="store directory (default: settings)")] = None,
    postgres: PostgresOption = None,
) -> None:
    """Replace the store's data key: every encrypted value is opened with the old key and
    sealed with a new one (stop the service first). Cut short, the next opening finishes it."""
    from vitaltwin.governance import KeyProviderError, rotate_store_data_key

    with _open_store(store, postgres) as st:
        try:
            n = rotate_store_data_key(st, keys_of())
        except KeyProviderError as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
    console.print(f"the store's data key was replaced; {n:,} distinct values sealed again")


consent_app = typer.Typer(no_args_is_help=True, help="Research consent: exclude, allow, list.")
app.add_typer(consent_app, name="consent")


@consent_app.command("exclude")
def consent_exclude(
    patient: Annotated[str, typer.Argument(help="patient id")],
    store: Annotated[Path | None, typer.Option(help="store directory (default: settings)")] = None,
    postgres: PostgresOption = None,
) -> None:
    """The patient's data is left out of research exports and of cohorts built from the store."""
    with _open_store(store, postgres) as st:
        st.set_research_consent(patient, allowed=False)
        n = len(st.research_excluded())
    console.print(f"{patient}: excluded from research ({n} patients excluded)")


@consent_app.command("allow")
def consent_allow(
    patient: Annotated[str, typer.Argument(help="patient id")],
    store: Annotated[Path | None, typer.Option(help="store directory (default: settings)")] = None,
    postgres: PostgresOption = None,
) -> None:
    """The patient's data may be used for research again."""
    with _open_store(store, postgres) as st:
        st.set_research_consent(patient, allowed=True)
    console.print(f"{patient}: research allowed")


@consent_app.command("list")
def consent_list(
    store: Annotated[Path | None, typer.Option(help="store directory (default: settings)")] = None,
    postgres: PostgresOption = None,
) -> None:
    """Patients whose consent excludes research."""
    with _open_store(store, postgres) as st:
        excluded = sorted(st.research_excluded())
    for p in excluded:
        print(p)
    console.print(f"{len(excluded)} patients excluded from research")


def _version(show: bool) -> None:
    if show:
        console.print(f"vitaltwin {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """vitaltwin: patient twins."""
    # everything a command writes may hold patient data: stores, exports, scores, registries,
    # reports. Files and folders it creates are the owner's only.
    os.umask(0o077)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
