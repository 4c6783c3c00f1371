"""Image data sets: class folders (optionally under ``train/ val/ test/``), CSVs of paths, in-memory arrays."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from headstart.data.base import Dataset
from headstart.data.image_io import IMAGE_SUFFIXES
from headstart.data.splits import SPLIT_NAMES, DataSplits, assemble_splits, encode_labels
from headstart.data.tables import Table
from headstart.errors import DataError, listing

_SHOWN = 10
_SKIP_HINT = "remove or replace them, or pass skip_bad=True (CLI: --skip-bad-images) to leave them out"


def is_image_path(value: str | Path) -> bool:
    """Whether ``value`` names a file with an image suffix (``.png``, ``.jpg``, ...), existing or not."""
    return Path(value).suffix.lower() in IMAGE_SUFFIXES


def _image_problem(path: str) -> str | None:
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


def screen_images(paths: Iterable[str], *, skip_bad: bool = False) -> list[str]:
    """Check that every file opens and decodes as an image.

    Returns:
        The unreadable files (only possible with ``skip_bad=True``; the caller leaves them out).

    Raises:
        DataError: Some files are unreadable and ``skip_bad`` is false (lists the first 10 and the count).
    """
    problems = {path: problem for path in paths if (problem := _image_problem(path)) is not None}
    if problems and not skip_bad:
        raise DataError(f"{len(problems)} image file(s) cannot be read: "
                        f"{listing((f'{path} ({why})' for path, why in problems.items()), sep='; ')}; {_SKIP_HINT}")
    return list(problems)


def image_paths_from_table(table: Table, column: str, *, allow_outside: bool = False) -> list[str]:
    """The image files named in ``column``, resolved against the table's folder.

    Args:
        table: The table.
        column: Its column of image paths.
        allow_outside: Accept paths that lead outside the table's folder (``../x.png``, ``/elsewhere/x.png``).

    Raises:
        DataError: A value is empty, a path leads outside the table's folder (unless ``allow_outside``), or a
            file does not exist (names the lines).
    """
    values = table.column_text(column, "image path", strip=True)
    paths = [str(table.path.parent / value) for value in values]
    if not allow_outside:
        folder = os.path.abspath(table.path.parent)
        outside = [f"{table.where(row)}: {values[row]}" for row, path in enumerate(paths)
                   if os.path.commonpath([folder, os.path.abspath(path)]) != folder]
        if outside:
            raise DataError(f"{table.path}: {len(outside)} image path(s) in column {column!r} lead outside "
                            f"{folder}: {listing(outside, sep='; ')}; move the images under the table's folder, "
                            "or pass allow_outside_paths=True (CLI: --allow-outside-paths) if you trust the table")
    missing = [f"{table.where(row)}: {values[row]}" for row, path in enumerate(paths) if not Path(path).is_file()]
    if missing:
        raise DataError(f"{table.path}: {len(missing)} image file(s) in column {column!r} do not exist: "
                        f"{listing(missing, sep='; ')}; paths are relative to {table.path.parent}")
    return paths


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` at any depth, sorted; hidden files and folders are ignored."""
    return sorted(str(p) for p in folder.rglob("*")
                  if p.is_file() and is_image_path(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folders(folder: Path) -> dict[str, list[str]]:
    """Image files per class subfolder of ``folder``.

    Raises:
        DataError: No class subfolders, or some hold no image files.
    """
    class_dirs = _visible_dirs(folder)
    if not class_dirs:
        raise DataError(f"{folder} has no class subfolders; put the images of each class in a subfolder named "
                        "after the class (e.g. cats/1.jpg, dogs/2.jpg)")
    files = {d.name: image_files(d) for d in class_dirs}
    empty = [d for d in class_dirs if not files[d.name]]
    if empty:
        described = [f"{d} ({sum(1 for p in d.rglob('*') if p.is_file())} files, none with an image suffix)"
                     for d in empty]
        raise DataError(f"empty class folder(s): {listing(described, sep='; ')}; add images "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}) or remove the folder")
    return files


def load_image_folder(root: Path, *, skip_bad: bool = False) -> DataSplits:
    """Load a folder of class subfolders, or of ``train/`` (required) ``val/`` ``test/`` each holding them.

    Items are file path strings, sorted by class then path; classes are the sorted names of train's
    subfolders. A class may be absent from val/test, but val/test may not have a class that train lacks.

    Raises:
        DataError: Missing ``train/``, unexpected folders beside the splits, no or empty class folders,
            unreadable images (unless ``skip_bad``), or a class left with no readable image.
    """
    subfolders = [d.name for d in _visible_dirs(root)]
    if any(name in SPLIT_NAMES for name in subfolders):
        other = [name for name in subfolders if name not in SPLIT_NAMES]
        if "train" not in subfolders or other:
            problem = f"and other folders [{listing(map(repr, other))}]" if other else "but no train/"
            raise DataError(f"{root} has split folders {[n for n in subfolders if n in SPLIT_NAMES]} {problem}; a "
                            "split layout needs train/ and optionally val/ and test/, nothing else")
        split_dirs = {name: root / name for name in SPLIT_NAMES if name in subfolders}
    else:
        split_dirs = {"train": root}
    per_split = {split: _class_folders(folder) for split, folder in split_dirs.items()}
    skipped = screen_images([p for classes in per_split.values() for files in classes.values() for p in files],
                            skip_bad=skip_bad)
    bad = set(skipped)
    items: list[str] = []
    labels: list[str] = []
    split_of: list[str] = []
    for split, classes in per_split.items():
        for name, files in classes.items():
            kept = [p for p in files if p not in bad]
            if not kept:
                raise DataError(f"class folder {split_dirs[split] / name} has no readable images "
                                f"({len(files)} skipped as unreadable)")
            items += kept
            labels += [name] * len(kept)
            split_of += [split] * len(kept)
    splits = assemble_splits(items, labels, split_of, "image", str(root),
                             {split: str(folder) for split, folder in split_dirs.items()})
    splits.skipped = skipped
    return splits


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
