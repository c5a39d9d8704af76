"""Progress display for long work: a rich spinner/bar per stage on stderr, silent when disabled."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Stages:
    """Shows each named stage while it runs; `enabled=False` (the Python API default) shows nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True, disable=not enabled)

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
