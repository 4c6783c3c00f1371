"""Progress display for long work; quiet mode turns it off everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "", enabled: bool = True
          ) -> Iterator[T]:
    """Yield from ``iterable`` while drawing a progress bar on stderr when ``enabled``."""
    if not enabled:
        yield from iterable
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
