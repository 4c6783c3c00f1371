"""Files and folders: output folders that are never clobbered nor left half-written, atomic writes, the cache
folder, and which process writes.

A run works in ``<out>.partial/`` (checkpoints live there, so an interrupted run resumes from it) and, when it
is done, the finished folder replaces ``<out>`` in one rename. An existing ``<out>`` is replaced only with
``force``; the old one is removed only after the new one is in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from headstart.errors import OutputExistsError


def default_cache_dir() -> Path:
    """``$HEADSTART_CACHE``, else ``$XDG_CACHE_HOME/headstart``, else ``~/.cache/headstart``."""
    if os.environ.get("HEADSTART_CACHE"):
        return Path(os.environ["HEADSTART_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "headstart"


def is_main_process() -> bool:
    """Whether this is rank 0 of a torchrun / accelerate launch (or a plain single process).

    Only the main process writes outputs; the others train their shard and return.
    """
    return int(os.environ.get("RANK", "0")) == 0


def check_output(out: str | Path, *, force: bool) -> Path:
    """Fail early if ``out`` exists (and is not to be replaced) or is a file; returns it as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} is a file; choose a folder path with --out")
    if out.exists() and not force:
        raise OutputExistsError(f"output folder {out} already exists; pass --force to replace it, "
                                "or choose another --out")
    return out


def work_dir(out: str | Path) -> Path:
    """The working folder of a run that will finish into ``out`` (created if missing)."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    return partial


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
    """Write a file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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
