"""Loading a labeled data set from a folder or a table file, validated before any long work."""

from __future__ import annotations

from pathlib import Path

from headstart.data.base import Modality
from headstart.data.image_io import IMAGE_SUFFIXES
from headstart.data.images import image_paths_from_table, is_image_path, load_image_folder, screen_images
from headstart.data.modality import MODALITIES
from headstart.data.splits import SPLIT_NAMES, DataSplits, assemble_splits, check_trainable
from headstart.data.tables import LABEL_COLUMNS, TABLE_SUFFIXES, Table, pick_column, read_table, require_column
from headstart.data.text import TEXT_COLUMNS
from headstart.errors import ConfigError, DataError, listing

PATH_COLUMNS = ("path", "file", "filename", "image")
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                  "test": "test"}


def load_dataset(path: str | Path, *, modality: Modality | None = None, text_column: str | None = None,
                 label_column: str | None = None, path_column: str | None = None, skip_bad: bool = False,
                 allow_outside_paths: bool = False, training: bool = True) -> DataSplits:
    """Load and validate a labeled data set, before any long computation.

    Accepted layouts:

    - an image folder with one subfolder per class, or with ``train/`` (required) ``val/`` ``test/`` each
      holding class subfolders;
    - a ``.csv``/``.tsv``/``.jsonl``/``.parquet`` file of image paths (relative to the file's folder) or texts,
      with a label column and optionally a ``split`` column (``train``/``val``/``test``);
    - a folder with ``train.<ext>`` and optionally ``val.<ext>`` / ``test.<ext>`` tables.

    Columns are found by name (items: ``path, file, filename, image`` or ``text, sentence, content, gloss,
    review``; labels: ``label, class, target, category, supersense``; any case) unless given. Without
    ``modality``, a table is an image table when every value of its item column names an image file
    (``.png``, ``.jpg``, ...), else a text table.

    Args:
        path: The folder or file.
        modality: ``"image"`` or ``"text"`` to skip detection.
        text_column: The column of texts.
        label_column: The column of class labels.
        path_column: The column of image paths.
        skip_bad: Leave out unreadable image files (listed in ``DataSplits.skipped``) instead of failing.
        allow_outside_paths: Let a table name image files outside its own folder (``../x.png``, absolute
            paths elsewhere); refused by default, so a table from someone else cannot make headstart read,
            and show in reports, files anywhere on the machine.
        training: Also check that the train split can train a classifier (two classes or more; with no val
            split, two examples or more per class). Pass ``False`` for evaluation data.

    Returns:
        ``DataSplits`` whose class names are the sorted labels of the train split (for a data set without
        splits, everything is ``train``).

    Raises:
        DataError: The data is missing or malformed, or a table names image files outside its folder; the
            message names the file, line or column and the fix.
        ConfigError: ``modality`` is not ``"image"``, ``"text"`` or ``None``.
    """
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {MODALITIES.known()} or None, got {modality!r}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    options = {"modality": modality, "text_column": text_column, "label_column": label_column,
               "path_column": path_column, "skip_bad": skip_bad, "allow_outside_paths": allow_outside_paths}
    if path.is_dir():
        tables = {split: table for split in SPLIT_NAMES if (table := _split_table(path, split)) is not None}
        if tables and "train" not in tables:
            raise DataError(f"{path} has {listing(p.name for p in tables.values())} but no train table; add one "
                            f"(train{next(iter(tables.values())).suffix})")
        if tables:
            splits = _load_tables(tables, source=str(path), **options)
        elif modality == "text":
            raise DataError(f"{path} has no train.csv/.tsv/.jsonl/.parquet; a text data set is a table file or a "
                            "folder with train.<ext> and optionally val.<ext>, test.<ext>")
        else:
            splits = load_image_folder(path, skip_bad=skip_bad)
    elif path.suffix.lower() in TABLE_SUFFIXES:
        splits = _load_tables({None: path}, source=str(path), **options)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        raise DataError(f"{path} is a single image; a data set is a folder of class subfolders or a table of "
                        "paths and labels")
    else:
        raise DataError(f"{path}: unsupported data format {path.suffix or '(no suffix)'!r}; use a folder of "
                        f"class subfolders or a {', '.join(TABLE_SUFFIXES)} file")
    if training:
        check_trainable(splits)
    return splits


def _split_table(folder: Path, split: str) -> Path | None:
    """The ``split`` table in ``folder`` (``train.csv``, ``val.jsonl``, ...), or ``None``."""
    found = [folder / f"{split}{suffix}" for suffix in TABLE_SUFFIXES if (folder / f"{split}{suffix}").is_file()]
    if len(found) > 1:
        raise DataError(f"{folder} has several {split} tables {[p.name for p in found]}; keep one")
    return found[0] if found else None


def _load_tables(tables: dict[str | None, Path], *, source: str, modality: Modality | None,
                 text_column: str | None, label_column: str | None, path_column: str | None,
                 skip_bad: bool, allow_outside_paths: bool) -> DataSplits:
    """Load one table (``{None: path}``, split column honoured) or one table per split."""
    read = {split: read_table(path) for split, path in tables.items()}
    first = next(iter(read.values()))
    if modality is None:
        modality = _table_modality(first, text_column, path_column)
    items: list[str] = []
    labels: list[str] = []
    split_of: list[str] = []
    for split, table in read.items():
        label = require_column(table, label_column, LABEL_COLUMNS, "label", "label_column")
        if modality == "image":
            column = require_column(table, path_column, PATH_COLUMNS, "image path", "path_column")
            items += image_paths_from_table(table, column, allow_outside=allow_outside_paths)
        else:
            items += table.column_text(
                require_column(table, text_column, TEXT_COLUMNS, "text", "text_column"), "text")
        labels += table.column_labels(label)
        split_of += [split] * len(table.frame) if split is not None else _split_column(table)
    skipped = screen_images(items, skip_bad=skip_bad) if modality == "image" else []
    if skipped:
        bad = set(skipped)
        keep = [i for i, item in enumerate(items) if item not in bad]
        items, labels, split_of = ([values[i] for i in keep] for values in (items, labels, split_of))
    splits = assemble_splits(items, labels, split_of, modality, source,
                             {split: str(path) for split, path in tables.items() if split is not None})
    splits.skipped = skipped
    return splits


def _table_modality(table: Table, text_column: str | None, path_column: str | None) -> Modality:
    """``"image"`` when the item column's values all name image files, else ``"text"``."""
    if text_column is not None or path_column is not None:
        return "text" if text_column is not None else "image"
    column = pick_column(table, None, PATH_COLUMNS, "path_column") \
        or pick_column(table, None, TEXT_COLUMNS, "text_column")
    if column is None:
        return "text"
    values = table.frame[column].tolist()
    return "image" if all(isinstance(v, str) and is_image_path(v.strip()) for v in values) else "text"


def _split_column(table: Table) -> list[str]:
    """The ``split`` column mapped to train/val/test (``val`` also from valid/validation/dev), or all train."""
    column = pick_column(table, None, ("split",), "split")
    if column is None:
        return ["train"] * len(table.frame)
    values = [v.lower() for v in table.column_text(column, "split", strip=True)]
    bad = [f"{table.where(row)}: {value!r}" for row, value in enumerate(values) if value not in _SPLIT_ALIASES]
    if bad:
        raise DataError(f"{table.path}: column {column!r} must be train, val or test; found {listing(bad)}")
    return [_SPLIT_ALIASES[value] for value in values]
