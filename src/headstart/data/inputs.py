"""Prediction inputs: what a user passes to ``predict`` on the command line or from Python."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from headstart.data.base import Modality
from headstart.data.image_io import IMAGE_SUFFIXES
from headstart.data.images import image_files, is_image_path, screen_images
from headstart.data.tables import TABLE_SUFFIXES, read_table, read_utf8, require_column
from headstart.data.text import TEXT_COLUMNS
from headstart.errors import ConfigError, DataError

_TEXT_FILE_SUFFIXES = (".txt", *TABLE_SUFFIXES)


def load_inputs(inputs: Sequence[str], modality: Modality, *, text_column: str | None = None
                ) -> tuple[list[str], list[str]]:
    """Expand prediction inputs into examples and the names to show for them.

    Images: each input is an image file or a folder (searched recursively; files sorted); every file is
    checked to open as an image. Text: each input is a ``.txt`` file (one text per non-blank line), a
    ``.csv``/``.tsv``/``.jsonl``/``.parquet`` file (its text column), or else a literal text.

    Args:
        inputs: Paths or texts, in order.
        modality: ``"image"`` or ``"text"`` (the model's).
        text_column: The text column of table inputs, when not detectable.

    Returns:
        ``(items, names)``: image paths or texts, and a display name for each (the path, or the text).

    Raises:
        DataError: A path does not exist, a folder has no images, a file is not a readable image, a table
            has no text column, or a text is empty.

    Example:
        >>> items, names = load_inputs(["great film", "reviews.txt"], "text")
    """
    if modality not in ("image", "text"):
        raise ConfigError(f"modality must be 'image' or 'text', got {modality!r}")
    if not inputs:
        raise DataError("no inputs given; pass image files or folders, or texts")
    items: list[str] = []
    for given in inputs:
        items += _image_inputs(given) if modality == "image" else _text_inputs(given, text_column)
    if modality == "image":
        screen_images(items)
    return items, list(items)


def _image_inputs(given: str) -> list[str]:
    if os.path.isdir(given):
        files = image_files(Path(given))
        if not files:
            raise DataError(f"folder {given} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if not os.path.isfile(given):
        raise DataError(f"image input {given} does not exist")
    if not is_image_path(given):
        raise DataError(f"{given} is not an image file; expected one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    return [given]


def _text_inputs(given: str, text_column: str | None) -> list[str]:
    suffix = Path(given).suffix.lower()
    looks_like_file = suffix in _TEXT_FILE_SUFFIXES and not any(c.isspace() for c in given)
    if os.path.isfile(given) and suffix in _TEXT_FILE_SUFFIXES:
        path = Path(given)
        if suffix == ".txt":
            texts = [line for line in read_utf8(path).splitlines() if line.strip()]
            if not texts:
                raise DataError(f"{path} has no non-blank lines; put one text per line")
            return texts
        table = read_table(path)
        return table.column_text(require_column(table, text_column, TEXT_COLUMNS, "text", "text_column"), "text")
    if looks_like_file:
        raise DataError(f"text input file {given} does not exist")
    if os.path.isdir(given):
        raise DataError(f"{given} is a folder; text inputs are texts, .txt files or "
                        f"{', '.join(TABLE_SUFFIXES)} files")
    if not given.strip():
        raise DataError("an input text is empty")
    return [given]
