"""The tracking worker: a process of its own that imports MLflow, opens the store and writes the runs, so a
tracked command does its own work on one core while MLflow starts up on another.

Importing MLflow and opening its store take seconds of GIL-bound Python (a new SQLite store also runs MLflow's
schema migrations): a thread of the command barely overlaps them, a process does. The command and the worker
talk over the worker's stdin and stdout, one JSON object a line, one reply per request, in order::

    {"op": "open", "uri": ..., "experiment": ..., "artifact_location": ...}  ->  {"ok": true}    | {"error": ...}
    {"op": "write", "run": RunSpec.to_json()}                                ->  {"run_id": ...} | {"error": ...}

The worker imports MLflow before it reads a request, so it can start before the command knows where its run
goes: ``python -m headstart`` starts one ahead of its own imports when the command line asks for tracking
(:func:`start_early`). It exits when its input closes, once it has answered what it was asked; it ignores
Ctrl-C, so a command that stops early never leaves a half-created store behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from headstart.tracking.spec import RunSpec
from headstart.tracking.writer import NO_TELEMETRY, load_mlflow, open_experiment, write_run

#: The command-line options that ask a command for tracking.
TRACKING_OPTIONS = ("--track", "--tracking-uri")
# The folder holding this headstart package: the worker imports the same copy as the command that started it.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
# A worker started by start_early, until a Tracker takes it.
_EARLY: list[TrackingWorker] = []


class TrackingWorker:
    """A running worker process, seen from the command: send requests, receive the replies in order.

    Raises:
        OSError: The process cannot be started.
    """

    def __init__(self) -> None:
        path = os.pathsep.join(p for p in (_SOURCE_ROOT, os.environ.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen([sys.executable, "-m", "headstart.tracking.worker"], text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env={**os.environ, **NO_TELEMETRY, "PYTHONPATH": path})

    def send(self, request: dict[str, Any]) -> None:
        """Send one request (a worker that has stopped is reported by :meth:`receive`)."""
        with contextlib.suppress(BrokenPipeError, ValueError):  # it exited, or its input was closed
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        """The next reply; ``{"error": ...}`` when the worker stopped without one."""
        line = self._process.stdout.readline()
        if not line:
            return {"error": f"the tracking worker stopped (exit code {self._process.wait()})"}
        return json.loads(line)

    def close(self) -> None:
        """Close the worker's input and wait for it to exit (at once: it has answered every request)."""
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.close()
        self._process.wait()


def start_early(argv: Sequence[str]) -> None:
    """Start a worker now if ``argv`` asks for tracking; the command's :class:`Tracker` takes it later.

    A worker nobody takes imports MLflow, then exits when the command does; one that cannot start now is
    started (and its failure reported) by the tracker.
    """
    if any(arg.split("=", 1)[0] in TRACKING_OPTIONS for arg in argv):
        with contextlib.suppress(OSError):
            _EARLY.append(TrackingWorker())


def take_worker() -> TrackingWorker:
    """The worker :func:`start_early` started (at most once), or a new one."""
    return _EARLY.pop() if _EARLY else TrackingWorker()


def serve(requests: Iterable[str], replies: IO[str]) -> None:
    """The worker's loop: answer each request line of ``requests`` with one line on ``replies``."""
    try:
        load_mlflow()
        failure = None
    except Exception as error:  # reported in the reply to every request
        failure = error
    store = None
    for line in requests:
        request = json.loads(line)
        try:
            if failure is not None:
                raise failure
            if request["op"] == "open":
                store = open_experiment(request["uri"], request["experiment"], request["artifact_location"])
                reply: dict[str, Any] = {"ok": True}
            elif store is None:
                raise RuntimeError("no store is open")
            else:
                reply = {"run_id": write_run(*store, RunSpec.from_json(request["run"]))}
        except Exception as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> None:
    """``python -m headstart.tracking.worker``: serve stdin; what MLflow prints goes to stderr, not the replies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, replies)
    # Tearing down the interpreter with MLflow and SQLAlchemy loaded takes most of a second of CPU; every run
    # is committed and every reply sent by now, so the worker leaves without it.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
