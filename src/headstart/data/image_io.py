"""Opening images from whatever form a user hands them in, and the cheap check that a file is one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from headstart.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def image_problem(path: str) -> str | None:
    """Why ``path`` is not a readable image (a header and checksum check, no full decode), or ``None``."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return str(err) or type(err).__name__
    return None


def open_image(item: Any) -> Image.Image:
    """An RGB PIL image from a file path, a PIL image, or a ``uint8`` array (``HxW`` or ``HxWxC``).

    Raises:
        DataError: The file cannot be read as an image (names the file).
    """
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataError(f"cannot read image {item}: {err}; remove or replace the file") from None
    array = np.asarray(item)
    if array.dtype != np.uint8:
        raise DataError(f"in-memory images must be uint8 arrays, got {array.dtype}")
    return Image.fromarray(array).convert("RGB")
