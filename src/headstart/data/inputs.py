"""Prediction inputs: what a user passes to ``predict`` on the command line or from Python."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.data.base import Modality
from headstart.data.files import file_modality, files_under, screen_files, suffix_list
from headstart.data.modality import MODALITIES, modality_spec
from headstart.data.tables import TABLE_SUFFIXES, read_table, read_utf8, require_column
from headstart.data.text import TEXT_COLUMNS
from headstart.errors import ConfigError, DataError
from headstart.progress import note

_TEXT_FILE_SUFFIXES = (".txt", *TABLE_SUFFIXES)


def load_inputs(inputs: Sequence[Any] | np.ndarray, modality: Modality, *, text_column: str | None = None,
                progress: bool = False) -> tuple[list[Any], list[str]]:
    """Expand prediction inputs into examples and the names to show for them.

    Images, audio (modalities whose examples are files): each input is a file or a folder (searched
    recursively; files sorted), every file checked with the modality's screen; images may also be in memory
    (a PIL image or a ``uint8`` array; a numpy array given as ``inputs`` is a batch, see :func:`as_examples`).
    Text: each input is a ``.txt`` file (one text per non-blank line), a ``.csv``/``.tsv``/``.jsonl``/``.parquet``
    file (its text column), or else a literal text.

    Args:
        inputs: Paths, in-memory images or texts, in order.
        modality: A registered modality (the model's).
        text_column: The text column of table inputs, when not detectable.
        progress: Say on stderr what a text file is read as (``reviews.txt: 12 texts, one per line``).

    Returns:
        ``(items, names)``: file paths, in-memory images or texts, and a display name for each (the path,
        ``<image N: WxH>`` for an in-memory image, or the text).

    Raises:
        DataError: A path does not exist, a folder has no files of the modality, a file is not usable, a
            table has no text column, or a text is empty.

    Example:
        >>> items, names = load_inputs(["great film", "reviews.txt"], "text")
    """
    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {MODALITIES.known()}, got {modality!r}")
    files = bool(modality_spec(modality).file_suffixes)
    items: list[Any] = []
    names: list[str] = []
    for position, given in enumerate(as_examples(inputs, modality, text_files=True)):
        if not files:
            expanded = _text_inputs(given, text_column, progress)
        elif isinstance(given, (Image.Image, np.ndarray)):
            items.append(given)
            names.append(_in_memory_name(given, modality, position))
            continue
        else:
            expanded = _file_inputs(str(given), modality)
        items += expanded
        names += expanded
    screen_files([item for item in items if isinstance(item, str)], modality)
    return items, names


def _in_memory_name(item: Image.Image | np.ndarray, modality: Modality, position: int) -> str:
    if isinstance(item, Image.Image):
        return f"<image {position}: {item.size[0]}x{item.size[1]}>"
    if modality == "image":
        return f"<image {position}: {item.shape[1]}x{item.shape[0]}>"
    return f"<{modality} {position}: array {tuple(item.shape)}>"


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


def _text_inputs(given: str, text_column: str | None, progress: bool) -> list[str]:
    suffix = Path(given).suffix.lower()
    looks_like_file = suffix in _TEXT_FILE_SUFFIXES and not any(c.isspace() for c in given)
    if os.path.isfile(given) and suffix in _TEXT_FILE_SUFFIXES:
        path = Path(given)
        if suffix == ".txt":
            texts = [line for line in read_utf8(path).splitlines() if line.strip()]
            if not texts:
                raise DataError(f"{path} has no non-blank lines; put one text per line")
            note(f"{path}: {len(texts)} texts, one per non-blank line", enabled=progress)
            return texts
        table = read_table(path)
        column = require_column(table, text_column, TEXT_COLUMNS, "text", "text_column")
        texts = table.column_text(column, "text")
        note(f"{path}: {len(texts)} texts from column {column!r}", enabled=progress)
        return texts
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


def as_examples(items: Any, modality: Modality, *, text_files: bool = False) -> list[Any]:
    """Examples a model can take, from what a user hands to ``predict``: one item or a sequence of them.

    Images may be file paths (``str`` or :class:`~pathlib.Path`), PIL images or ``uint8`` arrays; a numpy
    array is a batch along its first axis (``[N, H, W]`` or ``[N, H, W, C]``), as in
    :func:`~headstart.data.from_arrays`. Texts are strings. A single path, PIL image or string is one
    example. Other modalities' examples pass as given (their backbone checks them).

    A text that is the path of an existing file is refused unless ``text_files`` (:func:`load_inputs` reads
    such files): a model would classify the path's characters.

    Raises:
        DataError: No examples, or an example of a kind the modality cannot take (names its position).

    Example:
        >>> as_examples("a cat on a mat", "text")
        ['a cat on a mat']
    """
    if isinstance(items, (str, Path, Image.Image)):
        items = [items]
    elif isinstance(items, np.ndarray) and modality == "image":
        if items.ndim not in (3, 4):
            raise DataError(f"an image array must be a batch [N, H, W] or [N, H, W, C], got shape {items.shape}; "
                            "wrap a single image in a list")
        items = list(items)
    items = list(items)
    if not items:
        raise DataError("no inputs given; pass files or folders, texts, PIL images or arrays")
    if modality == "text":
        bad = [i for i, item in enumerate(items) if not isinstance(item, str)]
        if bad:
            raise DataError(f"a text model takes strings; examples at positions {bad[:10]} are "
                            f"{type(items[bad[0]]).__name__}")
        if not text_files:
            _refuse_file_paths(items)
    elif modality == "image":
        bad = [i for i, item in enumerate(items) if not isinstance(item, (str, Path, Image.Image, np.ndarray))]
        if bad:
            raise DataError(f"an image model takes file paths, PIL images or uint8 arrays; examples at positions "
                            f"{bad[:10]} are {type(items[bad[0]]).__name__}")
    return items


def _refuse_file_paths(texts: list[str]) -> None:
    # Long or multi-line strings are texts, and checking them would cost a system call each for nothing.
    paths = [i for i, text in enumerate(texts) if len(text) < 4096 and "\n" not in text and os.path.isfile(text)]
    if paths:
        raise DataError(f"text {paths[0]} ({texts[paths[0]]!r}) is the path of an existing file, and a model "
                        f"would classify the path's characters; pass the texts themselves, or call "
                        f"headstart.predict(model, {texts[paths[0]]!r}) to read a .txt (one text per line) or "
                        "a table's text column")
