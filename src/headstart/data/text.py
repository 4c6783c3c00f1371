"""Text data sets built in memory, and the column names a text table is recognised by."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from headstart.data.base import Dataset
from headstart.data.splits import encode_labels
from headstart.errors import DataError

TEXT_COLUMNS = ("text", "sentence", "content", "gloss", "review")
_SHOWN = 10


def from_texts(texts: Sequence[str], labels: Sequence[Any] | np.ndarray,
               class_names: Sequence[str] | None = None) -> Dataset:
    """A text :class:`Dataset` from in-memory texts and labels.

    Args:
        texts: One string per example.
        labels: Class names (strings) or integer labels (indices into ``class_names``).
        class_names: Class order; default: the sorted distinct string labels, or ``"0"`` ... ``"max"``.

    Raises:
        DataError: Lengths differ, a text is empty or not a string, or a label is not among ``class_names``.

    Example:
        >>> ds = from_texts(["a cat", "a car"], ["animal", "vehicle"])
    """
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()]
    if bad:
        raise DataError(f"texts at positions {bad[:_SHOWN]} are empty or not strings")
    codes, names = encode_labels(labels, class_names)
    return Dataset(list(texts), codes, names, "text")
