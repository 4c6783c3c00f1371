"""Data sets whose examples are files (images, audio): class folders, optionally under ``train/ val/ test/``,
tables of paths, prediction inputs, and the check of every file before any long work.

Nothing here names a modality: a file's modality is the one whose ``file_suffixes`` hold its suffix, and
its ``screen`` (both in :mod:`headstart.data.modality`) says whether the file is usable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from headstart import __version__
from headstart.data.modality import MODALITIES, Modality, modality_spec
from headstart.data.splits import SPLIT_NAMES, DataSplits, assemble_splits
from headstart.data.tables import Table
from headstart.errors import DataError, option
from headstart.io import cache_dir, write_bytes

_SHOWN = 10


def file_modalities() -> list[Modality]:
    """The registered modalities whose examples are files."""
    return [name for name, spec in MODALITIES.items() if spec.file_suffixes]


def suffix_modalities() -> dict[str, Modality]:
    """Each file suffix and the modality whose files have it (``".png": "image"``)."""
    return {suffix: name for name in file_modalities() for suffix in modality_spec(name).file_suffixes}


def file_modality(path: str | Path, suffixes: dict[str, Modality] | None = None) -> Modality | None:
    """The modality whose file suffixes hold ``path``'s suffix (``.png`` -> ``"image"``), or ``None``; a caller
    looking at many files passes :func:`suffix_modalities` once."""
    return (suffixes if suffixes is not None else suffix_modalities()).get(Path(path).suffix.lower())


def suffix_list(modality: Modality) -> str:
    """The file suffixes of ``modality``, for messages: ``.flac, .mp3, .ogg, .wav``."""
    return ", ".join(sorted(modality_spec(modality).file_suffixes))


def listing(entries: Sequence[str]) -> str:
    """The first 10 entries joined by ``; `` and how many more there are."""
    more = f" ... and {len(entries) - _SHOWN} more" if len(entries) > _SHOWN else ""
    return "; ".join(entries[:_SHOWN]) + more


def screen_files(paths: Iterable[str], modality: Modality, *, skip_bad: bool = False) -> list[str]:
    """Check every file with ``modality``'s screen (cheap: headers, checksums, no full decode).

    Files that all passed before, unchanged since (same paths, sizes and modification times), are not read
    again: a re-run on the same data skips opening every file (:func:`screened_marker`).

    Returns:
        The unusable files (only possible with ``skip_bad=True``; the caller leaves them out).

    Raises:
        DataError: Some files are unusable and ``skip_bad`` is false (lists the first 10, why, and the count).
    """
    screen = modality_spec(modality).screen
    if screen is None:
        return []
    paths = list(paths)
    marker = screened_marker(paths, modality)
    if marker is not None and marker.is_file():
        return []
    problems = {path: problem for path in paths if (problem := screen(path)) is not None}
    if problems and not skip_bad:
        raise DataError(f"{len(problems)} {modality} file(s) cannot be used: "
                        f"{listing([f'{path} ({why})' for path, why in problems.items()])}; remove or replace them, "
                        f"or pass {option('skip_bad_files', True)} to leave them out")
    if not problems and marker is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written only means screening again
            write_bytes(marker, b"")
    return list(problems)


def screened_marker(paths: Sequence[str], modality: Modality) -> Path | None:
    """The cache file whose presence says that ``paths`` all passed ``modality``'s screen: named by a hash of
    each file's absolute path, size and modification time (and headstart's version, which may screen
    differently); ``None`` without a cache folder or when a file cannot be read."""
    root = cache_dir()
    if root is None:
        return None
    digest = hashlib.sha256(f"{modality}\0{__version__}".encode())
    try:
        for path in paths:
            found = os.stat(path)
            digest.update(f"{os.path.abspath(path)}\0{found.st_size}\0{found.st_mtime_ns}\0".encode())
    except OSError:
        return None
    return root / "screened" / digest.hexdigest()[:32]


def files_under(folder: Path, modality: Modality | None = None) -> list[str]:
    """Files of ``modality`` (default: of any file modality) under ``folder`` at any depth, sorted; hidden files
    and folders are ignored."""
    suffixes = suffix_modalities()

    def wanted(path: Path) -> bool:
        found = file_modality(path, suffixes)
        return found is not None and (modality is None or found == modality)

    return sorted(str(p) for p in folder.rglob("*")
                  if p.is_file() and wanted(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def paths_from_table(table: Table, column: str, *, allow_outside: bool = False) -> list[str]:
    """The files named in ``column``, resolved against the table's folder.

    Args:
        table: The table.
        column: Its column of file paths.
        allow_outside: Accept paths that lead outside the table's folder (``../x.png``, ``/elsewhere/x.wav``).

    Raises:
        DataError: A value is empty, a path leads outside the table's folder (unless ``allow_outside``), or a
            file does not exist (names the lines).
    """
    values = table.column_text(column, "file path", strip=True)
    paths = [str(table.path.parent / value) for value in values]
    if not allow_outside:
        folder = os.path.abspath(table.path.parent)
        outside = [f"{table.where(row)}: {values[row]}" for row, path in enumerate(paths)
                   if os.path.commonpath([folder, os.path.abspath(path)]) != folder]
        if outside:
            raise DataError(f"{table.path}: {len(outside)} path(s) in column {column!r} lead outside {folder}: "
                            f"{listing(outside)}; move the files under the table's folder, or pass "
                            f"{option('allow_outside_paths', True)} if you trust the table")
    missing = [f"{table.where(row)}: {values[row]}" for row, path in enumerate(paths) if not Path(path).is_file()]
    if missing:
        raise DataError(f"{table.path}: {len(missing)} file(s) in column {column!r} do not exist: "
                        f"{listing(missing)}; paths are relative to {table.path.parent}")
    return paths


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _modality_of(files: Sequence[str], where: Path, modality: Modality | None) -> Modality:
    """The one file modality ``files`` (found under ``where``) belong to, checked against ``modality`` if given."""
    counts: dict[Modality, int] = {}
    suffixes = suffix_modalities()
    for path in files:
        found = file_modality(path, suffixes)
        counts[found] = counts.get(found, 0) + 1
    if not counts:
        kinds = "; ".join(f"{name}: {suffix_list(name)}" for name in file_modalities())
        raise DataError(f"no class folder in {where} holds a file headstart reads ({kinds})")
    if len(counts) > 1:
        found = ", ".join(f"{n} {name}" for name, n in counts.items())
        raise DataError(f"{where} mixes files of several kinds ({found} files); a data set holds one kind: move "
                        "the others out")
    found = next(iter(counts))
    if modality is not None and found != modality:
        raise DataError(f"{where} holds {found} files, not {modality} files")
    return found


def _class_files(folder: Path) -> dict[str, list[str]]:
    """Files of every file modality per class subfolder of ``folder``.

    Raises:
        DataError: No class subfolders.
    """
    class_dirs = _visible_dirs(folder)
    if not class_dirs:
        raise DataError(f"{folder} has no class subfolders; put the files of each class in a subfolder named "
                        "after the class (e.g. cats/1.jpg, dogs/2.jpg)")
    return {d.name: files_under(d) for d in class_dirs}


def _check_not_empty(folder: Path, files: dict[str, list[str]], modality: Modality) -> None:
    empty = [folder / name for name, found in files.items() if not found]
    if empty:
        described = [f"{d} ({sum(1 for p in d.rglob('*') if p.is_file())} files, none with an {modality} suffix)"
                     for d in empty]
        raise DataError(f"empty class folder(s): {listing(described)}; add {modality} files "
                        f"({suffix_list(modality)}) or remove the folder")


def load_class_folders(root: Path, *, modality: Modality | None = None, skip_bad: bool = False) -> DataSplits:
    """Load a folder of class subfolders, or of ``train/`` (required) ``val/`` ``test/`` each holding them.

    The modality is the one of the files found (images, audio, ...); items are file path strings, sorted by
    class then path; classes are the sorted names of train's subfolders. A class may be absent from val/test,
    but val/test may not have a class that train lacks.

    Args:
        root: The folder.
        modality: The expected modality; default: detected from the file suffixes.
        skip_bad: Leave out files the modality's screen rejects (listed in ``DataSplits.skipped``).

    Raises:
        DataError: Missing ``train/``, unexpected folders beside the splits, no or empty class folders, files
            of several modalities, unusable files (unless ``skip_bad``), or a class left with no usable file.
    """
    subfolders = [d.name for d in _visible_dirs(root)]
    if any(name in SPLIT_NAMES for name in subfolders):
        other = [name for name in subfolders if name not in SPLIT_NAMES]
        if "train" not in subfolders or other:
            raise DataError(f"{root} has split folders {[n for n in subfolders if n in SPLIT_NAMES]} "
                            f"{f'and other folders {other}' if other else 'but no train/'}; a split layout "
                            "needs train/ and optionally val/ and test/, nothing else")
        split_dirs = {name: root / name for name in SPLIT_NAMES if name in subfolders}
    else:
        split_dirs = {"train": root}
    per_split = {split: _class_files(folder) for split, folder in split_dirs.items()}
    modality = _modality_of([p for classes in per_split.values() for files in classes.values() for p in files],
                            root, modality)
    for split, classes in per_split.items():
        _check_not_empty(split_dirs[split], classes, modality)
    skipped = screen_files([p for classes in per_split.values() for files in classes.values() for p in files],
                           modality, skip_bad=skip_bad)
    bad = set(skipped)
    items: list[str] = []
    labels: list[str] = []
    split_of: list[str] = []
    for split, classes in per_split.items():
        for name, files in classes.items():
            kept = [p for p in files if p not in bad]
            if not kept:
                raise DataError(f"class folder {split_dirs[split] / name} has no usable {modality} files "
                                f"({len(files)} skipped as unusable)")
            items += kept
            labels += [name] * len(kept)
            split_of += [split] * len(kept)
    splits = assemble_splits(items, labels, split_of, modality, str(root),
                             {split: str(folder) for split, folder in split_dirs.items()})
    splits.skipped = skipped
    return splits
