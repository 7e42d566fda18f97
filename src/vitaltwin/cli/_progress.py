"""The CLI's rendering of library progress (:mod:`vitaltwin.progress`) with rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichBar

from vitaltwin.progress import Progress, Task


class _RichTask:
    def __init__(self, bar: RichBar, task: TaskID) -> None:
        self._bar, self._task = bar, task

    def advance(self, amount: float = 1.0) -> None:
        self._bar.advance(self._task, amount)

    def close(self) -> None:
        self._bar.remove_task(self._task)


class RichProgress:
    """A :class:`vitaltwin.progress.Progress` drawing one bar per running task."""

    def __init__(self, bar: RichBar) -> None:
        self._bar = bar

    def start(self, label: str, total: float) -> Task:
        return _RichTask(self._bar, self._bar.add_task(label, total=total))


@contextmanager
def rich_progress(console: Console) -> Iterator[Progress]:
    """Bars on ``console`` (standard error) while the block runs; gone afterwards."""
    bar = RichBar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bar:
        yield RichProgress(bar)
