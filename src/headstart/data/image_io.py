"""Opening images from whatever form a user hands them in, and the cheap check that a file is one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from headstart.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


# 16-bit grayscale (PNG, TIFF): Pillow's convert("RGB") clips these at 255, which turns almost every pixel white.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def image_problem(path: str) -> str | None:
    """Why ``path`` is not a readable image, or ``None``.

    ``verify`` checks headers and checksums but decodes nothing, so a truncated JPEG passes it and fails only
    when features are extracted, past ``skip_bad``'s reach; the file is therefore also decoded, a JPEG at
    1/8 scale (``draft``), which still reads all of its compressed data.
    """
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.draft(image.mode, (1, 1))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return str(err) or type(err).__name__
    return None


def image_dimensions(item: Any) -> tuple[int, int]:
    """``(width, height)`` of an image file (read from its header, nothing decoded), PIL image or array."""
    if isinstance(item, Image.Image):
        return item.size
    if isinstance(item, (str, Path)):
        with Image.open(item) as image:
            return image.size
    shape = np.asarray(item).shape
    return int(shape[1]), int(shape[0])


def open_image(item: Any) -> Image.Image:
    """An RGB PIL image from a file path, a PIL image, or a ``uint8`` array (``HxW`` or ``HxWxC``).

    Raises:
        DataError: The file cannot be read as an image (names the file).
    """
    if isinstance(item, Image.Image):
        return _to_rgb(item)
    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as image:
                return _to_rgb(image)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataError(f"cannot read image {item}: {err}; remove or replace the file") from None
    array = np.asarray(item)
    if array.dtype != np.uint8:
        raise DataError(f"in-memory images must be uint8 arrays, got {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; 16-bit grayscale is scaled from 0..65535 to 0..255 rather than clipped."""
    if image.mode in _SIXTEEN_BIT_MODES:
        scaled = np.round(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    return image.convert("RGB")
