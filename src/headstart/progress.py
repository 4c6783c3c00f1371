"""Progress display for long work, fitted to where the output goes; quiet mode turns it off everywhere.

Three displays, chosen when a task starts (:func:`display_kind`):

- a terminal gets a transient rich bar;
- a Jupyter kernel gets a tqdm bar that stays in the cell's output: a widget where ipywidgets is installed
  (``pip install headstart[notebook]``), a text bar otherwise, chosen here because ``tqdm.auto`` warns when
  it falls back. tqdm is already installed with huggingface_hub, so notebooks need no extra dependency
  (rich's Jupyter display needs ipywidgets and shows nothing live without it);
- anything else (CI logs, ``| tee log``) gets plain lines: the first at once, then at most one every
  :data:`LINE_INTERVAL` seconds, and the last at 100%, each with done/total, rate and time left.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
DisplayKind = Literal["terminal", "notebook", "lines"]

#: Seconds between two plain progress lines (the first and the last line are always written).
LINE_INTERVAL = 10.0


def display_kind(stream: TextIO | None = None) -> DisplayKind:
    """How progress shows on ``stream`` (stderr by default): ``"notebook"`` in a Jupyter kernel,
    ``"terminal"`` on a terminal, ``"lines"`` otherwise (a pipe, a file, a CI log)."""
    console = Console(file=stream or sys.stderr)
    if console.is_jupyter:
        return "notebook"
    return "terminal" if console.is_terminal else "lines"


def _notebook_bar(description: str, total: int, unit: str, stream: TextIO) -> Any:
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as widget_bar

        return widget_bar(total=total, desc=description, unit=f" {unit}")
    from tqdm.std import tqdm as text_bar

    return text_bar(total=total, desc=description, unit=f" {unit}", file=stream)


def _fields_text(fields: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.4f}" for name, value in fields.items())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressTask:
    """One piece of long work with a known number of steps, shown as it advances.

    Args:
        description: What is being done, e.g. ``"features train (efficientnet_lite0)"``.
        total: Steps in all.
        unit: What a step is, for plain lines and rates (``"batches"``, ``"steps"``).
        stream: Where it shows; stderr (looked up when the task starts) by default.
        interval: Seconds between two plain lines.
    """

    def __init__(self, description: str, total: int, *, unit: str = "it", stream: TextIO | None = None,
                 interval: float = LINE_INTERVAL) -> None:
        self.description, self.total, self.unit, self.interval = description, total, unit, interval
        self.stream = stream or sys.stderr
        self.done = 0
        self.fields: dict[str, float] = {}
        self.kind = display_kind(self.stream)
        self.started = self.last_line = time.monotonic()
        self._bar: Any = None
        if self.kind == "terminal":
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self._bar = Progress(*columns, console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, info="")
        elif self.kind == "notebook":
            self._bar = _notebook_bar(description, total, unit, self.stream)
        else:
            self._line()

    def advance(self, steps: int = 1, **fields: float) -> None:
        """Count ``steps`` more done; ``fields`` (e.g. ``loss=0.31``) are shown beside the count."""
        self.done += steps
        self.fields.update(fields)
        if self.kind == "terminal":
            self._bar.update(self._task, advance=steps, info=_fields_text(self.fields))
        elif self.kind == "notebook":
            self._bar.update(steps)
            if fields:
                self._bar.set_postfix_str(_fields_text(self.fields), refresh=False)
        elif self.done >= self.total or time.monotonic() - self.last_line >= self.interval:
            self._line()

    def close(self) -> None:
        """Take the display down (a plain display writes its last line if the work stopped short)."""
        if self.kind == "lines" and 0 < self.done < self.total:
            self._line()
        elif self.kind == "terminal" and self._bar is not None:
            self._bar.stop()
        elif self._bar is not None:
            self._bar.close()
        self._bar = None

    def _line(self) -> None:
        now = time.monotonic()
        self.last_line = now
        parts = [f"{self.description}: {self.done}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        elapsed = now - self.started
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:.3g} {self.unit}/s")
            parts.append(f"done in {_duration(elapsed)}" if self.done >= self.total
                         else f"ETA {_duration((self.total - self.done) / rate)}")
        if self.fields:
            parts.append(_fields_text(self.fields))
        print(", ".join(parts), file=self.stream, flush=True)


@contextmanager
def progress_task(description: str, total: int, *, unit: str = "it", enabled: bool = True
                  ) -> Iterator[ProgressTask | None]:
    """A :class:`ProgressTask` for the ``with`` block (``None`` when not ``enabled``), closed however it ends.

    Example:
        >>> with progress_task("training head epoch 1/5", total=40, unit="steps") as task:
        ...     for batch in batches:
        ...         if task:
        ...             task.advance(loss=step(batch))
    """
    task = ProgressTask(description, total, unit=unit) if enabled else None
    try:
        yield task
    finally:
        if task is not None:
            task.close()


def note(message: str, *, enabled: bool = True) -> None:
    """One informational line on stderr (e.g. ``"resuming from epoch 3 (stage all)"``) when ``enabled``."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


@contextmanager
def status(message: str, *, enabled: bool = True) -> Iterator[None]:
    """Show ``message`` while one long step without steps of its own runs (a spinner on a terminal, one
    line elsewhere), e.g. ``"exporting backbone to ONNX (once)"``."""
    if not enabled:
        yield
        return
    stream = sys.stderr
    if display_kind(stream) == "terminal":
        with Console(file=stream).status(message):
            yield
        return
    print(f"{message} ...", file=stream, flush=True)
    yield


def track(iterable: Iterable[T], *, total: int, description: str = "", unit: str = "it", enabled: bool = True
          ) -> Iterator[T]:
    """Yield from ``iterable`` while showing progress on stderr when ``enabled``."""
    with progress_task(description, total, unit=unit, enabled=enabled) as task:
        for item in iterable:
            yield item
            if task is not None:
                task.advance()


def start_message(argv: list[str]) -> str | None:
    """What a command says as it starts, before its libraries load (5-20 s on a busy machine, during which a
    log would otherwise stay empty); ``None`` for ``--help``, ``--version``, ``--quiet`` or no command.

    Example:
        >>> start_message(["fit", "data", "--out", "runs/x"])
        'headstart fit: starting (loading PyTorch and the model libraries)'
    """
    if not argv or argv[0].startswith("-") or {"-q", "--quiet", "-h", "--help"} & set(argv):
        return None
    return f"headstart {argv[0]}: starting (loading PyTorch and the model libraries)"
