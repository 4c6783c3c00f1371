"""The tracking log: one JSON line per run the tracking worker wrote (or failed to write) after its command left.

A command run from the command line does not wait for its MLflow run to be written (the worker finishes it in
the background, :mod:`headstart.tracking.worker`), so the worker records each outcome here:
``<store folder>/headstart-tracking.jsonl`` for a SQLite store (beside ``mlruns.db``), and for any other
tracking URI (a server) ``<out parent>/headstart-tracking.jsonl`` (the current folder without an output folder).
A failure is reported by the next tracked command that uses the same log, which then appends a ``reported``
line, so each failure is reported once.

Only the standard library is imported here: the worker writes the log without loading anything else.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LOG_FILE = "headstart-tracking.jsonl"


def log_path(uri: str, out: str | Path | None) -> Path:
    """The tracking log for runs to ``uri`` from a command writing ``out``.

    Example:
        >>> log_path("sqlite:////home/me/runs/mlruns.db", None)
        PosixPath('/home/me/runs/headstart-tracking.jsonl')
    """
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent / LOG_FILE
    return (Path(out).resolve().parent if out is not None else Path.cwd().resolve()) / LOG_FILE


def append(path: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` (stamped with the time) as one line, in one ``O_APPEND`` write: lines of processes
    logging at once do not interleave."""
    line = (json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def records(path: str | Path) -> list[dict[str, Any]]:
    """The log's records (none when it does not exist; a damaged line is skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def take_unreported_failures(path: str | Path) -> list[dict[str, Any]]:
    """The failed writes in the log no command has reported yet; they are marked reported now."""
    entries = records(path)
    reported = {key for record in entries for key in record.get("reported", [])}
    failures = [r for r in entries if "error" in r and r.get("run_key") not in reported]
    if failures:
        append(path, {"reported": [r.get("run_key") for r in failures]})
    return failures


def failure_message(failures: list[dict[str, Any]], path: str | Path) -> str:
    """One line naming failed writes, for a warning."""
    runs = "; ".join(f"{r.get('name')!r} ({r.get('time')}, {r.get('error')})" for r in failures)
    return f"{len(failures)} earlier tracked run(s) could not be written to MLflow: {runs} — see {path}"
