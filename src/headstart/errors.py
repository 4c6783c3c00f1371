"""Exception types. Every error a user can cause is a :class:`HeadstartError`.

The CLI prints these as one clear message and exits non-zero, without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


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


class HeadstartWarning(UserWarning):
    """Something went wrong that does not stop the run (a report plot, a damaged metrics file, an unwritable
    cache); the CLI prints it as one line."""


class StorageError(HeadstartError, OSError):
    """A tracking server or tuning storage cannot be reached, opened or written (names the URL and the cause)."""
