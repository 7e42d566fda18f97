"""Progress reporting without drawing: long work tells the caller, the caller renders it.

The library never draws a terminal bar (the CLI renders progress with rich, the service will
report it over its API). A function doing long work takes a ``progress`` argument, a
:class:`Progress`, and calls ``progress.start(label, total)`` then ``advance`` on the task it got
back, and ``close`` at the end. :data:`SILENT` does nothing and is the default.
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    """One piece of long work in progress."""

    def advance(self, amount: float = 1.0) -> None:
        """``amount`` more units done."""

    def close(self) -> None:
        """The work is over (done or abandoned)."""


class Progress(Protocol):
    """Where progress goes: starts tasks with a label and a total in units of work."""

    def start(self, label: str, total: float) -> Task:
        """A new task of ``total`` units."""
        ...


class _SilentTask:
    def advance(self, amount: float = 1.0) -> None:
        pass

    def close(self) -> None:
        pass


class _Silent:
    def start(self, label: str, total: float) -> Task:
        return _SilentTask()


SILENT: Progress = _Silent()
"""Progress that goes nowhere (the default of every function that reports progress)."""
