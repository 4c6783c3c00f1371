"""Image data sets held in memory (folders and tables of image files are read by :mod:`headstart.data.files`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from headstart.data.base import Dataset
from headstart.data.splits import encode_labels
from headstart.errors import DataError

_SHOWN = 10


def from_arrays(images: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray,
                class_names: Sequence[str] | None = None) -> Dataset:
    """An image :class:`Dataset` from in-memory images.

    Args:
        images: A ``uint8`` array ``[N, H, W]`` or ``[N, H, W, C]``, or a sequence of ``uint8`` arrays or PIL
            images.
        labels: Class names (strings) or integer labels (indices into ``class_names``).
        class_names: Class order; default: the sorted distinct string labels, or ``"0"`` ... ``"max"``.

    Raises:
        DataError: Lengths differ, an array is not ``uint8``, or a label is not among ``class_names``.

    Example:
        >>> ds = from_arrays(np.zeros((4, 28, 28), np.uint8), [0, 1, 0, 1], ["shirt", "shoe"])
    """
    items = list(images)
    if len(items) != len(labels):
        raise DataError(f"{len(items)} images but {len(labels)} labels")
    bad = [i for i, item in enumerate(items)
           if not isinstance(item, Image.Image) and np.asarray(item).dtype != np.uint8]
    if bad:
        raise DataError(f"images at positions {bad[:_SHOWN]} are not uint8 arrays or PIL images; convert "
                        "them, e.g. (array * 255).astype(np.uint8) for floats in [0, 1]")
    codes, names = encode_labels(labels, class_names)
    return Dataset(items, codes, names, "image")
