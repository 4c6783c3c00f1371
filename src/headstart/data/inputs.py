"""Prediction inputs: what a user passes to ``predict`` on the command line or from Python."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from headstart.data.base import Modality
from headstart.data.files import file_modality, files_under, screen_files, suffix_list
from headstart.data.modality import MODALITIES, modality_spec
from headstart.data.tables import TABLE_SUFFIXES, read_table, read_utf8, require_column
from headstart.data.text import TEXT_COLUMNS
from headstart.errors import ConfigError, DataError

_TEXT_FILE_SUFFIXES = (".txt", *TABLE_SUFFIXES)


def load_inputs(inputs: Sequence[str], modality: Modality, *, text_column: str | None = None
                ) -> tuple[list[str], list[str]]:
    """Expand prediction inputs into examples and the names to show for them.

    Images, audio (modalities whose examples are files): each input is a file or a folder (searched
    recursively; files sorted); every file is checked with the modality's screen. Text: each input is a
    ``.txt`` file (one text per non-blank line), a ``.csv``/``.tsv``/``.jsonl``/``.parquet`` file (its text
    column), or else a literal text.

    Args:
        inputs: Paths or texts, in order.
        modality: A registered modality (the model's).
        text_column: The text column of table inputs, when not detectable.

    Returns:
        ``(items, names)``: file paths or texts, and a display name for each (the path, or the text).

    Raises:
        DataError: A path does not exist, a folder has no files of the modality, a file is not usable, a
            table has no text column, or a text is empty.

    Example:
        >>> items, names = load_inputs(["great film", "reviews.txt"], "text")
    """
    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {MODALITIES.known()}, got {modality!r}")
    if not inputs:
        raise DataError("no inputs given; pass files or folders, or texts")
    files = bool(modality_spec(modality).file_suffixes)
    items: list[str] = []
    for given in inputs:
        items += _file_inputs(given, modality) if files else _text_inputs(given, text_column)
    screen_files(items, modality)
    return items, list(items)


def _file_inputs(given: str, modality: Modality) -> list[str]:
    if os.path.isdir(given):
        files = files_under(Path(given), modality)
        if not files:
            raise DataError(f"folder {given} has no {modality} files ({suffix_list(modality)})")
        return files
    if not os.path.isfile(given):
        raise DataError(f"{modality} input {given} does not exist")
    if file_modality(given) != modality:
        raise DataError(f"{given} is not an {modality} file; expected one of {suffix_list(modality)}")
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
    if os.path.isfile(given):  # an image or other file: its path is not a text to classify
        raise DataError(f"{given} is a file, and a text model reads texts, .txt files (one text per line) or "
                        f"{', '.join(TABLE_SUFFIXES)} files; pass the text itself")
    if os.path.isdir(given):
        raise DataError(f"{given} is a folder; text inputs are texts, .txt files or "
                        f"{', '.join(TABLE_SUFFIXES)} files")
    if not given.strip():
        raise DataError("an input text is empty")
    return [given]
