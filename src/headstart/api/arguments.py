"""Conversions of API arguments that several of the API's functions share."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from headstart.data import DataSplits, as_splits
from headstart.io import WorkFolder


def skip_bad(skip_bad_files: bool, skip_bad_images: bool | None) -> bool:
    if skip_bad_images is not None:
        warnings.warn("skip_bad_images is deprecated; use skip_bad_files", DeprecationWarning, stacklevel=3)
    return skip_bad_files or bool(skip_bad_images)


def checked_splits(work: WorkFolder | None, data: Any, **options: Any) -> DataSplits:
    """``data`` as splits; ``work``'s output is checked to keep clear of the files they list (a CSV's images)."""
    splits = as_splits(data, **options)
    if work is not None:
        work.check(splits.file_folders())
    return splits


def as_list(value: str | Path | Sequence[Any]) -> list[Any]:
    return [value] if isinstance(value, (str, Path)) else list(value)
