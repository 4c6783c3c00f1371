"""Exception types. Every error a user can cause is a :class:`HeadstartError`.

The CLI prints these as one clear message and exits non-zero, without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import PurePath
from typing import Any, Literal


class HeadstartError(Exception):
    """Base class for errors caused by input, options or environment, with a message a user can act on."""


class DataError(HeadstartError, ValueError):
    """The data set is missing, malformed, or unsuitable (names the file, row or column and what to do)."""


class BackboneError(HeadstartError, ValueError):
    """A backbone name, file or hub reference cannot be resolved or loaded."""


class ConfigError(HeadstartError, ValueError):
    """An option or hyperparameter has a value that is not allowed."""


class OutputExistsError(HeadstartError, FileExistsError):
    """An output folder already exists and ``force`` was not given."""


class OutputPathError(HeadstartError, ValueError):
    """An output path headstart must not or cannot write: the input data, a folder holding it or inside it,
    the current folder, a path under a file, a read-only place, or a folder headstart did not write."""


class OutputLockedError(HeadstartError, RuntimeError):
    """Another live process is writing to the same output folder."""


class ModelFileError(HeadstartError, ValueError):
    """A saved model folder is missing files or was written by an incompatible version."""


class ExportError(HeadstartError, RuntimeError):
    """A model cannot be exported, or the exported graph does not reproduce the model (parity check)."""


def listing(values: Iterable[object], *, limit: int = 10, sep: str = ", ") -> str:
    """``values`` joined for a message, at most ``limit`` of them and then how many more there are.

    Every list in a message goes through this, so a message stays one readable line however large the data
    (a label column of IDs has thousands of distinct values).

    Example:
        >>> listing(range(13), limit=3)
        '0, 1, 2 ... and 10 more'
    """
    values = [str(value) for value in values]
    more = f" ... and {len(values) - limit} more" if len(values) > limit else ""
    return sep.join(values[:limit]) + more


#: Where headstart is being called from: messages name options as the caller spells them.
_SURFACE: ContextVar[Literal["python", "cli"]] = ContextVar("headstart_surface", default="python")
_UNSET: Any = object()


@contextmanager
def command_line_wording() -> Iterator[None]:
    """Within the block, :func:`option` names options as command-line flags (the CLI wraps each command in it)."""
    token = _SURFACE.set("cli")
    try:
        yield
    finally:
        _SURFACE.reset(token)


def option(name: str, value: Any = _UNSET, *, cli: str | None = None) -> str:
    """An option as the user gives it where they called headstart, for messages: one message serves the
    Python API and the command line.

    Args:
        name: The Python keyword (``"force"``, ``"val_fraction"``).
        value: The value to show with it; ``True`` for a flag; a list is comma-separated on the command line.
        cli: The command-line flag when it is not ``--`` + the keyword with dashes (``"--set"`` for ``settings``).

    Example:
        >>> option("force", True), option("val_fraction", 0)
        ('force=True', 'val_fraction=0')
        >>> with command_line_wording():
        ...     option("force", True), option("val_fraction", 0)
        ('--force', '--val-fraction 0')
    """
    if _SURFACE.get() == "cli":
        flag = cli or "--" + name.replace("_", "-")
        if isinstance(value, (list, tuple)):  # a list option is comma-separated on the command line
            value = ",".join(map(str, value))
        return flag if value is _UNSET or value is True else f"{flag} {value}"
    if value is _UNSET:
        return f"{name}=..."
    return f"{name}={str(value)!r}" if isinstance(value, PurePath) else f"{name}={value!r}"


class HeadstartWarning(UserWarning):
    """Something went wrong that does not stop the run (a report plot, a damaged metrics file, an unwritable
    cache); the CLI prints it as one line."""


class StorageError(HeadstartError, OSError):
    """A tracking server or tuning storage cannot be reached, opened or written (names the URL and the cause)."""
