"""The ``vitaltwin`` command: thin typer command groups over the library (rich renders progress)."""

from vitaltwin.cli._main import app, main

__all__ = ["app", "main"]
