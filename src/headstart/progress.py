"""Progress display for long work; quiet mode turns it off everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
