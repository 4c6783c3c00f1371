"""Exception types. Every error a user can cause is a :class:`HeadstartError`.

The CLI prints these as one clear message and exits non-zero, without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


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


class ModelFileError(HeadstartError, ValueError):
    """A saved model folder is missing files or was written by an incompatible version."""
