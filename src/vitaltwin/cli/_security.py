"""``vitaltwin users|devices|clients ...`` and ``vitaltwin audit ...``: the directory of who may
connect and the audit trail, over :mod:`vitaltwin.governance` (files under the settings'
``security_dir``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vitaltwin.governance import (
    MIN_PASSWORD,
    ROLES,
    Directory,
    DirectoryError,
    EnvironmentKeys,
    FileKeys,
    KeyProvider,
    KeyProviderError,
    User,
    audit_event,
    public_key,
    read_trail,
    verify_trail,
)
from vitaltwin.settings import load_settings

console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True)
users_app = typer.Typer(no_args_is_help=True, help="Users: add, assign, disable, list.")
devices_app = typer.Typer(no_args_is_help=True, help="Devices and gateways: API keys.")
clients_app = typer.Typer(no_args_is_help=True, help="Backend clients (SMART backend services).")
audit_app = typer.Typer(no_args_is_help=True, help="The audit trail: verify, export.")

FolderOption = Annotated[
    Path | None, typer.Option(help="security folder (default: settings' security_dir)")
]


def _folder(folder: Path | None) -> Path:
    return folder or load_settings().security_dir


def _directory(folder: Path | None) -> Directory:
    try:
        return Directory(_folder(folder) / "directory.json")
    except DirectoryError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def keys_of(folder: Path | None = None, *, create: bool = True) -> KeyProvider:
    """The key provider the settings name: the environment, or the key files under the
    security folder (missing keys made owner-only with ``create``)."""
    if load_settings().keys_from == "environment":
        return EnvironmentKeys()
    return FileKeys(_folder(folder) / "keys", create=create)


RESEARCH_KEY = "research-pseudonym"
"""The key of research exports' pseudonyms and date shifts (the same key, linkable exports)."""


def research_key(folder: Path | None = None) -> bytes:
    """The research export key: from the environment, or the security folder's key file
    (made owner-only on first use)."""
    return keys_of(folder).key(RESEARCH_KEY)


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/] {exc}")
    return typer.Exit(2)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)} (not device, system)")],
    unit: Annotated[list[str] | None, typer.Option(help="a unit the user works in")] = None,
    patient: Annotated[
        list[str] | None, typer.Option(help="a patient of the user's care team")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="read the password from standard input (scripts)")
    ] = False,
    folder: FolderOption = None,
) -> None:
    """Add (or replace) a user; the password is asked for (never an option: it would stay in
    the shell's history) and kept only as an argon2id hash."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt(f"password for {name} ({MIN_PASSWORD}+ characters)",
                                hide_input=True, confirmation_prompt=True)  # fmt: skip
    try:
        user = _directory(folder).add_user(name, role, password, units=tuple(unit or ()),
                                           patients=tuple(patient or ()))  # fmt: skip
    except DirectoryError as exc:
        raise _fail(exc) from None
    console.print(_summary(user))


def _summary(user: User) -> str:
    return (f"user {user.name}: {user.role}, units {', '.join(user.units) or '-'}, "
            f"care team {', '.join(user.patients) or '-'}")  # fmt: skip


@users_app.command("assign")
def users_assign(
    name: Annotated[str, typer.Argument(help="user name")],
    unit: Annotated[list[str] | None, typer.Option(help="a unit (all given replace)")] = None,
    patient: Annotated[list[str] | None, typer.Option(help="a care-team patient")] = None,
    folder: FolderOption = None,
) -> None:
    """Set a user's units and care team (effective at their next token refresh)."""
    try:
        user = _directory(folder).assign(name, units=tuple(unit or ()),
                                         patients=tuple(patient or ()))  # fmt: skip
    except DirectoryError as exc:
        raise _fail(exc) from None
    console.print(_summary(user))


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="user, device or client")],
    folder: FolderOption = None,
) -> None:
    """Stop a user, device or client from signing in (kept for the audit trail)."""
    try:
        _directory(folder).disable(name)
    except DirectoryError as exc:
        raise _fail(exc) from None
    console.print(f"{name}: disabled")


@users_app.command("list")
def users_list(folder: FolderOption = None) -> None:
    """Users, devices and clients."""
    d = _directory(folder)
    tab = Table(title=f"Directory {d.path}")
    for col in ("name", "kind", "role", "units", "care team", "enabled"):
        tab.add_column(col)
    for u in d.users.values():
        tab.add_row(u.name, "user", u.role, ", ".join(u.units), ", ".join(u.patients),
                    "no" if u.disabled else "yes")  # fmt: skip
    for dev in d.devices.values():
        tab.add_row(dev.device_id, "device", "device", "", "", "no" if dev.disabled else "yes")
    for c in d.clients.values():
        tab.add_row(c.client_id, "client", "system: " + " ".join(c.scopes), "", "",
                    "no" if c.disabled else "yes")  # fmt: skip
    console.print(tab)


@devices_app.command("add")
def devices_add(
    device_id: Annotated[str, typer.Argument(help="device or gateway id")],
    folder: FolderOption = None,
) -> None:
    """Register a device; prints its API key once (send it as ``X-API-Key``)."""
    try:
        key = _directory(folder).add_device(device_id)
    except DirectoryError as exc:
        raise _fail(exc) from None
    console.print(f"device {device_id}: API key (shown only now; keep it in the gateway's "
                  "configuration):")  # fmt: skip
    print(key)


@clients_app.command("add")
def clients_add(
    client_id: Annotated[str, typer.Argument(help="client id (the assertion's iss and sub)")],
    public_key_file: Annotated[Path, typer.Option("--public-key", help="its PEM public key")],
    scope: Annotated[list[str], typer.Option(help="a system/ scope, e.g. system/Observation.c")],
    folder: FolderOption = None,
) -> None:
    """Register a backend client (SMART backend services, ``private_key_jwt``)."""
    try:
        pem = public_key_file.read_text(encoding="ascii")
        _directory(folder).add_client(client_id, pem, tuple(scope))
    except (DirectoryError, OSError, UnicodeDecodeError) as exc:
        raise _fail(exc) from None
    console.print(f"client {client_id}: {' '.join(scope)}")


def _trail(trail: Path | None, folder: Path | None) -> Path:
    path = trail or _folder(folder) / "audit.jsonl"
    if not path.is_file():
        err_console.print(f"[red]error:[/] no audit trail at {path}")
        raise typer.Exit(2)
    return path


@audit_app.command("verify")
def audit_verify(
    trail: Annotated[Path | None, typer.Option(help="the trail (default: settings)")] = None,
    folder: FolderOption = None,
) -> None:
    """Check every entry's hash, order and link and every checkpoint's signature; exit 1 and
    name each problem when the trail was edited, cut, reordered or forged."""
    path = _trail(trail, folder)
    try:
        key = public_key(keys_of(folder, create=False), "audit-signing")
    except KeyProviderError as exc:
        raise _fail(exc) from None
    check = verify_trail(path, key)
    console.print(f"{path}: {check.entries:,} entries ({check.events:,} events, "
                  f"{check.checkpoints:,} signed checkpoints); signed through entry "
                  f"{check.signed_through:,}")  # fmt: skip
    if check.signed_through < check.entries:
        console.print(f"entries after {check.signed_through:,} await the next checkpoint")
    if check.ok:
        console.print("[green]intact[/]")
        return
    for p in check.problems[:50]:
        err_console.print(f"[red]{p}")
    if len(check.problems) > 50:
        err_console.print(f"[red]... and {len(check.problems) - 50} more")
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option(help="the FHIR Bundle of AuditEvents to write")],
    patient: Annotated[str | None, typer.Option(help="only entries about this patient")] = None,
    trail: Annotated[Path | None, typer.Option(help="the trail (default: settings)")] = None,
    folder: FolderOption = None,
) -> None:
    """The trail's events as a FHIR R4 Bundle of AuditEvents (IHE BALP), owner-only."""
    path = _trail(trail, folder)
    events = [
        {"resource": audit_event(e)}
        for e in read_trail(path)
        if e.get("kind") == "event" and (patient is None or patient in e.get("patients", ()))
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": events}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(bundle, f, indent=1)
    console.print(f"{len(events):,} AuditEvents -> {out}")
