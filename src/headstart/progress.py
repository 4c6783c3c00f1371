"""Progress display for long work; quiet mode turns it off everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_bar(*fields: str) -> Progress:
    """A transient progress bar on stderr: description, bar, done/total, ``fields``, time remaining.

    Args:
        fields: Extra columns as rich templates over the task's fields, e.g. ``"loss {task.fields[loss]:.4f}"``.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               *(TextColumn(field) for field in fields), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), transient=True)


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "", enabled: bool = True
          ) -> Iterator[T]:
    """Yield from ``iterable`` while drawing a progress bar on stderr when ``enabled``."""
    if not enabled:
        yield from iterable
        return
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)


@contextmanager
def status(description: str, *, enabled: bool = True) -> Iterator[None]:
    """Show ``description`` with a spinner and the elapsed time on stderr while the block runs, when ``enabled``:
    for long steps that cannot count their own progress (a solver's cross-validation), so a run is never
    silent for minutes.

    Example:
        >>> with status("linear probe: cross-validating C", enabled=True):
        ...     fit()
    """
    if not enabled:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as spinner:
        spinner.add_task(description, total=None)
        yield
