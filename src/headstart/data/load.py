"""Loading a labeled data set from a folder or a table file, validated before any long work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headstart.data.base import Dataset, Modality
from headstart.data.files import (
    file_modalities,
    file_modality,
    load_class_folders,
    paths_from_table,
    screen_files,
    suffix_list,
)
from headstart.data.modality import MODALITIES, modality_spec
from headstart.data.splits import SPLIT_NAMES, DataSplits, assemble_splits, check_trainable
from headstart.data.tables import LABEL_COLUMNS, TABLE_SUFFIXES, Table, pick_column, read_table, require_column
from headstart.data.text import TEXT_COLUMNS
from headstart.errors import ConfigError, DataError, listing

PATH_COLUMNS = ("path", "file", "filename", "image", "audio")
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                  "test": "test"}


def load_dataset(path: str | Path, *, modality: Modality | None = None, text_column: str | None = None,
                 label_column: str | None = None, path_column: str | None = None, skip_bad: bool = False,
                 allow_outside_paths: bool = False, training: bool = True) -> DataSplits:
    """Load and validate a labeled data set, before any long computation.

    Accepted layouts:

    - a folder of image or audio files with one subfolder per class, or with ``train/`` (required) ``val/``
      ``test/`` each holding class subfolders;
    - a ``.csv``/``.tsv``/``.jsonl``/``.parquet`` file of file paths (relative to the file's folder) or texts,
      with a label column and optionally a ``split`` column (``train``/``val``/``test``);
    - a folder with ``train.<ext>`` and optionally ``val.<ext>`` / ``test.<ext>`` tables.

    Columns are found by name (items: ``path, file, filename, image, audio`` or ``text, sentence, content,
    gloss, review``; labels: ``label, class, target, category, supersense``; any case) unless given. Without
    ``modality``, the modality of a folder is that of its files' suffixes, and a table's is that of the files
    its item column names when every value names a file of one modality (``.png``, ``.wav``, ...), else text.

    Args:
        path: The folder or file.
        modality: A registered modality (``"image"``, ``"text"``, ``"audio"``) to skip detection.
        text_column: The column of texts.
        label_column: The column of class labels.
        path_column: The column of file paths.
        skip_bad: Leave out files their modality's check rejects (unreadable images; unreadable, empty,
            silent, too short or too long audio; listed in ``DataSplits.skipped``) instead of failing.
        allow_outside_paths: Let a table name files outside its own folder (``../x.png``, absolute paths
            elsewhere); refused by default, so a table cannot make headstart read arbitrary files.
        training: Also check that the train split can train a classifier (two classes or more). Pass
            ``False`` for evaluation data.

    Returns:
        ``DataSplits`` whose class names are the sorted labels of the train split (for a data set without
        splits, everything is ``train``).

    Raises:
        DataError: The data is missing or malformed; the message names the file, line or column and the fix.
        ConfigError: ``modality`` is not a registered modality or ``None``.
    """
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {MODALITIES.known()} or None, got {modality!r}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    splits = _load_path(path, modality=modality, text_column=text_column, label_column=label_column,
                        path_column=path_column, skip_bad=skip_bad, allow_outside_paths=allow_outside_paths)
    if training:
        check_trainable(splits)
    return splits


def _load_path(path: Path, *, modality: Modality | None, skip_bad: bool, allow_outside_paths: bool,
               **columns: str | None) -> DataSplits:
    """The data at an existing ``path``, by its layout (see :func:`load_dataset`)."""
    options = {"modality": modality, "skip_bad": skip_bad, "allow_outside_paths": allow_outside_paths, **columns}
    if path.is_dir():
        tables = {split: table for split in SPLIT_NAMES if (table := _split_table(path, split)) is not None}
        if tables and "train" not in tables:
            raise DataError(f"{path} has {listing(p.name for p in tables.values())} but no train table; add one "
                            f"(train{next(iter(tables.values())).suffix})")
        if tables:
            return _load_tables(tables, source=str(path), **options)
        if modality is not None and not modality_spec(modality).file_suffixes:
            raise DataError(f"{path} has no train.csv/.tsv/.jsonl/.parquet; a {modality} data set is a table file "
                            "or a folder with train.<ext> and optionally val.<ext>, test.<ext>")
        return load_class_folders(path, modality=modality, skip_bad=skip_bad)
    if path.suffix.lower() in TABLE_SUFFIXES:
        return _load_tables({None: path}, source=str(path), **options)
    if file_modality(path) is not None:
        raise DataError(f"{path} is a single {file_modality(path)} file; a data set is a folder of class "
                        "subfolders or a table of paths and labels")
    raise DataError(f"{path}: unsupported data format {path.suffix or '(no suffix)'!r}; use a folder of "
                    f"class subfolders or a {', '.join(TABLE_SUFFIXES)} file")


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
        modality = table_modality(first, text_column, path_column)
    items: list[str] = []
    labels: list[str] = []
    split_of: list[str] = []
    for split, table in read.items():
        label = require_column(table, label_column, LABEL_COLUMNS, "label", "label_column")
        if modality_spec(modality).file_suffixes:
            items += paths_from_table(table, require_column(table, path_column, PATH_COLUMNS, "file path",
                                                            "path_column"), allow_outside=allow_outside_paths)
        else:
            items += table.column_text(
                require_column(table, text_column, TEXT_COLUMNS, "text", "text_column"), "text")
        labels += table.column_labels(label)
        split_of += [split] * len(table.frame) if split is not None else _split_column(table)
    skipped = screen_files(items, modality, skip_bad=skip_bad)
    if skipped:
        bad = set(skipped)
        keep = [i for i, item in enumerate(items) if item not in bad]
        items, labels, split_of = ([values[i] for i in keep] for values in (items, labels, split_of))
    splits = assemble_splits(items, labels, split_of, modality, source,
                             {split: str(path) for split, path in tables.items() if split is not None})
    splits.skipped = skipped
    return splits


def table_modality(table: Table, text_column: str | None, path_column: str | None) -> Modality:
    """The modality of the files the item column names when its values all name files of one modality, else
    ``"text"``; with ``path_column``, the values must name files of one modality."""
    if text_column is not None:
        return "text"
    column = pick_column(table, path_column, PATH_COLUMNS, "path_column") \
        or pick_column(table, None, TEXT_COLUMNS, "text_column")
    if column is None:
        return "text"
    found = {file_modality(v.strip()) if isinstance(v, str) else None for v in table.frame[column].tolist()}
    kinds = found - {None}
    if len(found) == 1 and kinds:
        return kinds.pop()
    if path_column is None:
        return "text"
    if len(kinds) == 1:  # some values are not file names: reading them names the rows
        return kinds.pop()
    suffixes = "; ".join(f"{name}: {suffix_list(name)}" for name in file_modalities())
    raise DataError(f"{table.path}: column {path_column!r} (given as path_column) must name files of one kind "
                    f"({suffixes}); found {sorted(kinds) or 'none'}")


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


def as_splits(data: str | Path | DataSplits | Dataset, **options: Any) -> DataSplits:
    """``data`` as splits: loaded with :func:`load_dataset` (``options``) from a path, or wrapped when it is
    already a data set (all of it for training) or splits."""
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, Dataset):
        return DataSplits(train=data, val=None, test=None, source=data.source)
    return load_dataset(data, **options)
