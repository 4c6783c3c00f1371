"""The tracking worker: a process of its own that imports MLflow, opens the store and writes the runs, so a
tracked command does its own work on one core while MLflow starts up on another.

Importing MLflow and opening its store take seconds of GIL-bound Python (a new SQLite store also runs MLflow's
schema migrations): a thread of the command barely overlaps them, a process does. The command and the worker
talk over the worker's stdin and stdout, one JSON object a line, one reply per request, in order::

    {"op": "open", "uri": ..., "experiment": ..., "artifact_location": ...}  ->  {"ok": true}    | {"error": ...}
    {"op": "write", "run": RunSpec.to_json(), "log": path or None, "outcome": {...}}
                                                                             ->  {"run_id": ...} | {"error": ...}

The worker imports MLflow before it reads a request, so it can start before the command knows where its run
goes: ``python -m headstart`` starts one ahead of its own imports when the command line asks for tracking
(:func:`start_early`). It exits when its input closes, once it has answered what it was asked; it ignores
Ctrl-C and runs in a process group of its own, so a command that stops early never leaves a half-created store
behind.

Such a command-line worker is *detached* (``--background``: it runs only on CPU time its command leaves idle): the
command sends its run, closes the worker's input and exits without waiting for the reply. A write request that
names a ``log`` (:mod:`headstart.tracking.outcomes`) has its outcome appended there before the reply is sent; a
reply nobody reads any more (its command has exited) is dropped. A detached worker's stderr is discarded (it
would hold a pipeline reading the command's output open); an attached one's failure also goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from headstart.tracking import outcomes
from headstart.tracking.spec import RunSpec
from headstart.tracking.writer import NO_TELEMETRY, load_mlflow, open_experiment, write_run

#: The command-line options that ask a command for tracking.
TRACKING_OPTIONS = ("--track", "--tracking-uri")
# The folder holding this headstart package: the worker imports the same copy as the command that started it.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
# A process group of its own: Ctrl-C and job control at a terminal reach the command, not the worker. Not a
# session of its own: Linux schedules each session as one group (autogroup), so a worker in its own session would
# take half the CPU from its command, whatever its priority.
_OWN_GROUP: dict[str, Any] = ({} if os.name != "posix" else {"process_group": 0} if sys.version_info >= (3, 11)
                              else {"preexec_fn": os.setpgrp})
# A worker started by start_early, until a Tracker takes it.
_EARLY: list[TrackingWorker] = []


class TrackingWorker:
    """A running worker process, seen from the command: send requests, receive the replies in order.

    Args:
        detached: The command exits right after its work (the command line): it hands over its run and leaves
            the worker to finish it (:meth:`detach`) instead of waiting.

    Raises:
        OSError: The process cannot be started.
    """

    def __init__(self, detached: bool = False) -> None:
        self.detached = detached
        path = os.pathsep.join(p for p in (_SOURCE_ROOT, os.environ.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen([sys.executable, "-m", "headstart.tracking.worker"]
                                         + (["--background"] if detached else []), text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, **_OWN_GROUP,
                                         # A detached worker outlives its command: with its stderr, a pipeline
                                         # reading the command's (``2>&1 | tee``) would wait for it too.
                                         stderr=subprocess.DEVNULL if detached else None,
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

    def detach(self) -> None:
        """Close the worker's input without waiting: it finishes what it was sent, then exits on its own."""
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.close()
        self._process.stdout.close()  # its replies are not read: it drops them
        self._process.returncode = 0  # not ours to wait for (Popen would warn that it is still running)


def start_early(argv: Sequence[str]) -> None:
    """Start a worker now if ``argv`` asks for tracking; the command's :class:`Tracker` takes it later.

    A worker nobody takes imports MLflow, then exits when the command does; one that cannot start now is
    started (and its failure reported) by the tracker.
    """
    if any(arg.split("=", 1)[0] in TRACKING_OPTIONS for arg in argv):
        with contextlib.suppress(OSError):
            _EARLY.append(TrackingWorker(detached=True))


def take_worker() -> TrackingWorker:
    """The worker :func:`start_early` started (at most once), or a new one."""
    return _EARLY.pop() if _EARLY else TrackingWorker()


def _answer(request: dict[str, Any], store: Any) -> dict[str, Any]:
    """The reply to one request; ``store`` is ``(client, experiment id)``, or the error opening it raised."""
    if isinstance(store, Exception):
        raise store
    if store is None:
        raise RuntimeError("no store is open")
    return {"run_id": write_run(*store, RunSpec.from_json(request["run"]))}


def _record(request: dict[str, Any], reply: dict[str, Any]) -> None:
    """Append a write's outcome to the log it names (before replying: its command may be gone); a failure also
    goes to stderr, which a command still running shows."""
    if request.get("op") != "write" or not request.get("log"):
        return
    # The worker's CPU seconds so far (importing MLflow, opening the store, writing): what tracking costs besides
    # the command's own time, which no longer includes the worker's.
    outcome = {**request.get("outcome", {}), **reply, "worker_cpu_seconds": round(time.process_time(), 3)}
    try:
        outcomes.append(request["log"], outcome)
    except OSError as error:
        outcome["error"] = f"{outcome.get('error', 'written')}; the tracking log {request['log']}: {error}"
    if "error" in outcome:
        with contextlib.suppress(OSError, ValueError):
            print(f"headstart: tracking: MLflow run {outcome.get('name')!r} was not written: {outcome['error']}",
                  file=sys.stderr, flush=True)


def serve(requests: Iterable[str], replies: IO[str]) -> None:
    """The worker's loop: answer each request line of ``requests`` with one line on ``replies``."""
    try:
        load_mlflow()
        failure = None
    except Exception as error:  # reported in the reply to every request
        failure = error
    store: Any = None
    for line in requests:
        request = json.loads(line)
        try:
            if failure is not None:
                raise failure
            if request["op"] == "open":
                try:
                    store = open_experiment(request["uri"], request["experiment"], request["artifact_location"])
                except Exception as error:  # a write that follows reports it too
                    store = error
                    raise
                reply: dict[str, Any] = {"ok": True}
            else:
                reply = _answer(request, store)
        except Exception as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        _record(request, reply)
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):  # the command has exited
            replies.write(json.dumps(reply) + "\n")
            replies.flush()


def _yield_cpu() -> None:
    """A detached worker runs only on CPU time nothing else wants (Linux ``SCHED_IDLE``; elsewhere the lowest
    priority): its command, which uses every core it is given, keeps them, and the run is written a little later
    on a busy machine."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def main() -> None:
    """``python -m headstart.tracking.worker``: serve stdin; what MLflow prints goes to stderr, not the replies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "--background" in sys.argv[1:]:  # a closing terminal does not stop it either
        with contextlib.suppress(AttributeError, ValueError):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _yield_cpu()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, replies)
    # Tearing down the interpreter with MLflow and SQLAlchemy loaded takes most of a second of CPU; every run
    # is committed and every reply sent by now, so the worker leaves without it.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
