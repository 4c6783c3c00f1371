"""Files and folders: output folders that are never clobbered nor left half-written, atomic writes, the cache
folder, and which process writes.

A run works in ``<out>.partial/`` (checkpoints live there, so an interrupted run resumes from it), holding a
lock on it (:mod:`headstart.locks`) so that a second run with the same ``out`` stops at once instead of mixing
its files in. When it is done, the finished folder replaces ``<out>`` in one rename. Every published folder
carries a marker file (``.headstart-output``); an existing ``<out>`` is replaced only with ``force`` and only
if headstart wrote it, and never when it is, holds or lies inside the input data. The old one is removed only
after the new one is in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from headstart import __version__
from headstart.errors import OutputExistsError, OutputPathError, option
from headstart.locks import LOCK_FILE, lock_folder

#: Written into every folder headstart publishes; ``force`` replaces only folders that carry it.
OUTPUT_MARKER = ".headstart-output"
# What headstart wrote into output folders before the marker existed; a folder holding nothing else is
# recognised as one of its outputs.
_UNMARKED_OUTPUT_FILES = {"config.json", "model.safetensors", "metrics.json", "report.html", "rank.json",
                          "compare.json"}
# Files get the permissions any program's files get (0644 under the usual umask), not mkstemp's 0600.
_UMASK = os.umask(0)
os.umask(_UMASK)

_cache_root: ContextVar[Path | None] = ContextVar("headstart_cache_root")


def default_cache_dir() -> Path:
    """``$HEADSTART_CACHE``, else ``$XDG_CACHE_HOME/headstart``, else ``~/.cache/headstart``."""
    if os.environ.get("HEADSTART_CACHE"):
        return Path(os.environ["HEADSTART_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "headstart"


def cache_dir() -> Path | None:
    """The cache folder in effect: the one a :func:`caching` block chose (``None``: cache nothing), else
    :func:`default_cache_dir`. Cached features and exported ONNX graphs both go there."""
    return _cache_root.get(default_cache_dir())


@contextlib.contextmanager
def caching(root: str | Path | None) -> Iterator[None]:
    """Within the block, :func:`cache_dir` is ``root`` (``None``: nothing is written to a cache).

    Example:
        >>> with caching(None):   # what --no-cache does
        ...     model.predict(images)
    """
    token = _cache_root.set(None if root is None else Path(root))
    try:
        yield
    finally:
        _cache_root.reset(token)


def is_main_process() -> bool:
    """Whether this is rank 0 of a torchrun / accelerate launch (or a plain single process).

    Only the main process writes outputs; the others train their shard and return.
    """
    return int(os.environ.get("RANK", "0")) == 0


def process_count() -> int:
    """How many processes a torchrun / accelerate launch started (1 for a plain process); each trains on its
    own shard of the data."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def partial_path(out: str | Path) -> Path:
    """The working folder of a run that will finish into ``out``: ``<out>.partial``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def check_output(out: str | Path, *, force: bool, protected: Iterable[Any] = ()) -> Path:
    """Fail early, with the reason, if a run must not or cannot write ``out``; returns it as a Path.

    Refused: ``out`` (or its working folder) being, holding or lying inside any ``protected`` path (the
    input data); the current folder or a folder holding it; a path under a file; a place that cannot be
    written; an existing ``out`` without ``force``, and with ``force`` one that headstart did not write
    (no ``.headstart-output`` marker).

    Args:
        out: The output folder.
        force: Whether an existing headstart output may be replaced.
        protected: Input data paths (files or folders) that no output may touch; other values (data in
            memory) are ignored.

    Raises:
        OutputPathError: ``out`` is unsafe or unwritable.
        OutputExistsError: ``out`` exists and ``force`` is not given.
    """
    out = Path(out)
    target = out.expanduser().resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise OutputPathError(f"{option('out', out)} is the current folder or holds it; choose a new folder for "
                              f"the output, e.g. {option('out', 'runs/model')}")
    for data in protected:
        if isinstance(data, (str, os.PathLike)):
            _refuse_overlap(out, target, Path(data).expanduser().resolve())
            _refuse_overlap(out, partial_path(target), Path(data).expanduser().resolve())
    if target.exists():
        if not target.is_dir():
            raise OutputExistsError(f"output path {out} is a file; choose a folder path as {option('out')}")
        if not force:
            raise OutputExistsError(f"output folder {out} already exists; pass {option('force', True)} to replace "
                                    f"it, or choose another {option('out')}")
        if not is_headstart_output(target):
            raise OutputPathError(f"{option('force', True)} replaces only folders headstart wrote, and {out} "
                                  f"has no {OUTPUT_MARKER} marker and holds other files; choose another "
                                  f"{option('out')}, or remove the folder yourself")
    # The working folder is created beside ``out`` and renamed onto it: its parent must be a writable folder.
    existing = next(p for p in target.parents if p.exists())
    if not existing.is_dir():
        raise OutputPathError(f"{option('out', out)} lies under {existing}, which is a file; choose a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {option('out', out)}: {existing} is read-only or not yours; choose "
                              "a writable place")
    return out


def _refuse_overlap(out: Path, target: Path, data: Path) -> None:
    if target == data:
        raise OutputPathError(f"{option('out', out)} is the input data {data}; choose a new folder for the output")
    if target in data.parents:
        raise OutputPathError(f"{option('out', out)} holds the input data {data}; choose a folder outside it")
    if data in target.parents:
        raise OutputPathError(f"{option('out', out)} is inside the data folder {data} (a later run would "
                              "read the output as data); choose a folder outside it")


def is_headstart_output(folder: str | Path) -> bool:
    """Whether ``folder`` is one headstart published: it has the marker, or (older versions) holds only files
    headstart writes; an empty folder counts too, as replacing it loses nothing."""
    folder = Path(folder)
    if (folder / OUTPUT_MARKER).is_file():
        return True
    return all(entry.is_file() and entry.name in _UNMARKED_OUTPUT_FILES for entry in folder.iterdir())


class WorkFolder:
    """The working folder ``<out>.partial`` of a run, locked by this process until published or closed.

    Creating it checks ``out`` (:func:`check_output`), creates the folder and takes the lock: if another
    live process holds it, :class:`~headstart.errors.OutputLockedError` names that process and nothing has
    been done yet. A lock left by a process that died is taken over, so an interrupted run resumes.

    Args:
        out: The output folder the run publishes into.
        kind: What the folder will hold (``"model"``, ``"rank"``, ``"compare"``), recorded in its marker.
        force: Whether an existing headstart output may be replaced.
        protected: Input data paths that no output may touch (anything else, e.g. in-memory data, is ignored).

    Ranks other than 0 of a torchrun launch share rank 0's folder and take no lock.

    Example:
        >>> with WorkFolder("runs/model", kind="model", force=False, protected=["data/"]) as work:
        ...     (work.path / "model.safetensors").write_bytes(...)
        ...     work.publish()
    """

    def __init__(self, out: str | Path, *, kind: str, force: bool, protected: Iterable[Any] = ()) -> None:
        self.out = check_output(out, force=force, protected=protected)
        self.kind = kind
        self.force = force
        self.path = partial_path(self.out)
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputPathError(f"cannot create the working folder {self.path} ({err.strerror}); choose a "
                                  f"writable {option('out')}") from None
        self._lock_fd = lock_folder(self.path) if is_main_process() else None

    def check(self, protected: Iterable[Any]) -> None:
        """Check ``out`` again against input paths known only after loading (e.g. the images a CSV lists)."""
        check_output(self.out, force=self.force, protected=protected)

    def publish(self) -> Path:
        """Mark the finished working folder as headstart's and move it to ``out``; releases the lock."""
        write_json(self.path / OUTPUT_MARKER, {"kind": self.kind, "version": __version__})
        publish(self.path, self.out, force=self.force)
        (self.out / LOCK_FILE).unlink(missing_ok=True)
        self._release()
        return self.out

    def close(self) -> None:
        """Release the lock (if still held); a working folder this run created and left empty is removed."""
        if self._lock_fd is None:
            return
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        self._release()
        if self._created and not any(self.path.iterdir()):
            self.path.rmdir()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def __enter__(self) -> WorkFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def work_folder(out: str | Path | None, *, kind: str, force: bool, protected: Iterable[Any] = ()
                ) -> contextlib.AbstractContextManager[WorkFolder | None]:
    """A :class:`WorkFolder` for ``out``, or (without ``out``) a block that yields ``None``: the run writes
    nothing."""
    if out is None:
        return contextlib.nullcontext()
    return WorkFolder(out, kind=kind, force=force, protected=protected)


def publish(partial: str | Path, out: str | Path, *, force: bool) -> Path:
    """Move a finished working folder to ``out``; an existing ``out`` is replaced only with ``force``."""
    partial, out = Path(partial), Path(out)
    check_output(out, force=force)
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(trash)
        partial.rename(out)
        shutil.rmtree(trash)
    else:
        partial.rename(out)
    return out


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file atomically (temporary file in the same folder, then rename), readable as any new file
    under the user's umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
