"""Progress display for long work: a rich spinner/bar per stage on stderr, silent when disabled.

A stage over records (`Stages.records`) shows records done, records per second and the time left, estimated
from the bytes of input consumed (records vary in size; bytes are what is known up front).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text


class _Throughput(ProgressColumn):
    """'12,345 records · 4,321/s · 0:01:10 left' for a stage over records; nothing for the others."""

    def render(self, task: Task) -> Text:
        records = task.fields.get("records")
        if records is None:
            return Text("")
        elapsed = max(task.elapsed or 0.0, 1e-9)
        left = ""
        if task.total and 0 < task.completed < task.total:
            left = f" · {_clock(elapsed * (task.total - task.completed) / task.completed)} left"
        return Text(f"{records:,} records · {records / elapsed:,.0f}/s{left}", style="cyan")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Stages:
    """Shows each named stage while it runs; `enabled=False` (the Python API default) shows nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Throughput(),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=True, disable=not enabled)

    def __enter__(self) -> Self:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    @contextmanager
    def step(self, description: str):
        task = self._progress.add_task(description, total=1)
        try:
            yield
        finally:
            self._progress.update(task, completed=1)

    def bar(self, description: str, total: int):
        """A counted bar: returns a callback to advance it by n."""
        task = self._progress.add_task(description, total=total)
        return lambda n=1: self._progress.advance(task, n)

    def records(self, description: str, total: int):
        """A bar over `total` units of input (bytes): returns a callback `(done, records)` to move it."""
        task = self._progress.add_task(description, total=max(total, 1), records=0)
        return lambda done, records: self._progress.update(task, completed=min(done, total), records=records)
