"""Target-domain data: unlabeled examples of the domain a model will be used on, and optionally a labeled
test set from that domain.

An unlabeled target is an image or audio folder (searched at any depth: class subfolders are accepted and
their names ignored), a table of file paths or of texts (a label column is ignored), or a ``.txt`` file of
texts, one per line. Whatever is ignored is said in :attr:`TargetData.notes`, so a user who passed labeled
data where unlabeled data is expected learns that its labels played no part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headstart.data.base import Dataset, Modality
from headstart.data.files import file_modality, files_under, paths_from_table, screen_files, suffix_list
from headstart.data.load import PATH_COLUMNS, load_dataset, table_modality
from headstart.data.modality import modality_spec
from headstart.data.tables import LABEL_COLUMNS, TABLE_SUFFIXES, pick_column, read_table, read_utf8, require_column
from headstart.data.text import TEXT_COLUMNS
from headstart.errors import DataError, listing


@dataclass
class TargetData:
    """The target domain of a run.

    Attributes:
        unlabeled: Target examples without labels (every label ``-1``), which adaptation strategies train on, or
            ``None`` when only labeled target data was given.
        test: Labeled target examples to measure the finished model on, or ``None``.
        notes: What was ignored while loading (labels, class subfolders), for the run's warnings.
    """

    unlabeled: Dataset | None
    test: Dataset | None = None
    notes: list[str] = field(default_factory=list)


def _cli(option: str) -> str:
    return f"{option} (CLI: --{option.replace('_', '-')})"


def load_unlabeled(path: str | Path, modality: Modality, *, text_column: str | None = None,
                   path_column: str | None = None, skip_bad: bool = False, allow_outside_paths: bool = False,
                   option: str = "target") -> tuple[Dataset, list[str]]:
    """Load unlabeled examples of ``modality`` and say what was ignored.

    Args:
        path: A folder of files (any depth), a table of paths or texts, or a ``.txt`` of texts.
        modality: The modality the examples must have (the source data's).
        text_column, path_column, allow_outside_paths: As for :func:`~headstart.data.load_dataset`.
        skip_bad: Leave out unusable files instead of failing.
        option: The argument that named ``path``, for messages.

    Returns:
        ``(dataset, notes)``: the examples with label ``-1`` and no classes, and notes on ignored labels.

    Raises:
        DataError: The path is missing, holds nothing usable, or holds another modality than ``modality``
            (each message names ``option``).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} (given as {_cli(option)}) does not exist")
    if path.is_dir():
        items, notes = _folder_items(path, modality, option)
    elif path.suffix.lower() == ".txt" and not modality_spec(modality).file_suffixes:
        items, notes = [line for line in read_utf8(path).splitlines() if line.strip()], []
    elif path.suffix.lower() in TABLE_SUFFIXES:
        items, notes = _table_items(path, modality, option, text_column, path_column, allow_outside_paths)
    else:
        raise DataError(f"{path} (given as {_cli(option)}) is not a folder, a {', '.join(TABLE_SUFFIXES)} table "
                        f"or a .txt of texts")
    if not items:
        raise DataError(f"{path} (given as {_cli(option)}) holds no {modality} examples; it needs at least one")
    skipped = set(screen_files([i for i in items if isinstance(i, str)], modality, skip_bad=skip_bad)
                  if modality_spec(modality).file_suffixes else [])
    items = [item for item in items if item not in skipped]
    return Dataset(items, np.full(len(items), -1), [], modality, str(path)), notes


def _wrong_modality(path: Path, found: str, modality: Modality, option: str) -> DataError:
    return DataError(f"{path} (given as {_cli(option)}) holds {found} data but the source data is {modality}; "
                     f"the target domain must be {modality} data too")


def _folder_items(folder: Path, modality: Modality, option: str) -> tuple[list[str], list[str]]:
    files = files_under(folder)
    kinds = sorted({file_modality(f) for f in files})
    if len(kinds) > 1:
        raise DataError(f"{folder} (given as {_cli(option)}) mixes {' and '.join(kinds)} files; keep one kind")
    if kinds and kinds[0] != modality:
        raise _wrong_modality(folder, kinds[0], modality, option)
    if not modality_spec(modality).file_suffixes:
        raise DataError(f"{folder} (given as {_cli(option)}) is a folder; {modality} target data is a "
                        f"{', '.join(TABLE_SUFFIXES)} table or a .txt file")
    if not files:
        raise DataError(f"{folder} (given as {_cli(option)}) holds no {modality} files ({suffix_list(modality)})")
    inside = [Path(f).relative_to(folder).parts for f in files]
    subfolders = sorted({parts[0] for parts in inside if len(parts) > 1})
    notes = [f"{folder} (the unlabeled target) has subfolders ({listing(subfolders, limit=5)}); their names are "
             "ignored: the target is used without labels"] if subfolders else []
    return files, notes


def _table_items(path: Path, modality: Modality, option: str, text_column: str | None, path_column: str | None,
                 allow_outside: bool) -> tuple[list[str], list[str]]:
    table = read_table(path)
    found = table_modality(table, text_column, path_column)
    if found != modality:
        raise _wrong_modality(path, found, modality, option)
    if modality_spec(modality).file_suffixes:
        items = paths_from_table(table, require_column(table, path_column, PATH_COLUMNS, "file path",
                                                       "path_column"), allow_outside=allow_outside)
    else:
        items = table.column_text(require_column(table, text_column, TEXT_COLUMNS, "text", "text_column"), "text")
    label = pick_column(table, None, LABEL_COLUMNS, "label_column")
    notes = [f"column {label!r} of {path} (the unlabeled target) is ignored: the target is used without labels; "
             "give labeled target data as target_test (CLI: --target-test) to measure on it"] if label else []
    return items, notes


def load_target(target: str | Path | Dataset | None, target_test: str | Path | Dataset | None, modality: Modality,
                class_names: list[str], **options: str | bool | None) -> TargetData:
    """The unlabeled target (``target``) and the labeled target test set (``target_test``), both checked
    against the source data's ``modality`` and ``class_names`` before any long work.

    Args:
        target: Unlabeled target examples (see :func:`load_unlabeled`), a data set (its labels are ignored), or
            ``None``.
        target_test: Labeled target examples in any layout :func:`~headstart.data.load_dataset` reads (its test
            split when it has one, else all of it), a data set, or ``None``.
        modality, class_names: The source data's.
        **options: ``text_column``, ``path_column``, ``label_column``, ``skip_bad``, ``allow_outside_paths``.

    Raises:
        DataError: A missing or empty target, another modality, or test classes the source lacks.
    """
    if target is None:
        unlabeled, notes = None, []
    elif isinstance(target, Dataset):
        _check_matches(target, modality, "target")
        unlabeled, notes = Dataset(list(target.items), np.full(len(target), -1), [], modality, target.source), []
    else:
        unlabeled, notes = load_unlabeled(target, modality, **{k: v for k, v in options.items()
                                                                 if k != "label_column"})
    if target_test is None or isinstance(target_test, Dataset):
        test = target_test
    elif not Path(target_test).exists():
        raise DataError(f"{target_test} (given as {_cli('target_test')}) does not exist")
    else:
        test = load_dataset(target_test, training=False, **options).select(None)
    if test is not None:
        _check_matches(test, modality, "target_test")
        unknown = sorted(set(test.class_names) - set(class_names))
        if unknown:
            raise DataError(f"{test.source} (given as {_cli('target_test')}) has classes the source data lacks: "
                            f"{listing(unknown)}; the source classes are {listing(class_names)}")
    return TargetData(unlabeled, test, notes)


def _check_matches(data: Dataset, modality: Modality, option: str) -> None:
    if data.modality != modality:
        raise _wrong_modality(Path(data.source), data.modality, modality, option)
    if len(data) == 0:
        raise DataError(f"the data given as {_cli(option)} is empty")
