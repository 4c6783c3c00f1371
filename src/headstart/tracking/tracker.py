"""Where tracked runs go, and the process that writes them there.

Off by default. ``track=True`` logs to an embedded store next to the output folder: ``<out parent>/mlruns.db``
(SQLite) with artifacts in ``<out parent>/mlartifacts/``, no server, nothing sent anywhere; a tracking URI
(``http://host:5000``, ``sqlite:///path.db``, any MLflow store) logs there instead. Browse with
``mlflow ui --backend-store-uri sqlite:///<out parent>/mlruns.db``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from headstart.errors import StorageError, option
from headstart.tracking.runs import RunSpec
from headstart.tracking.writer import NO_TELEMETRY

DEFAULT_EXPERIMENT = "headstart"
# MLflow retries an unreachable server for minutes by default; a few seconds say enough (the user's own
# environment wins).
WRITER_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
STORE_FILE = "mlruns.db"
ARTIFACTS_DIR = "mlartifacts"


def tracking_target(track: bool | str | None, out: str | Path | None) -> tuple[str, str | None] | None:
    """``(tracking URI, artifact folder or None)`` for a command's ``track`` argument, or ``None`` when off.

    Args:
        track: ``False``/``None`` (off), ``True`` (the embedded store beside ``out``, or in the current folder
            without one) or a tracking URI.
        out: The command's output folder.

    Example:
        >>> tracking_target(True, "runs/demo")[0]
        'sqlite:////home/me/runs/mlruns.db'
    """
    if not track:
        return None
    if isinstance(track, str):
        if track.startswith("sqlite:///"):  # artifacts beside the database, as for the embedded store
            return track, str(Path(track.removeprefix("sqlite:///")).resolve().parent / ARTIFACTS_DIR)
        return track, None
    root = Path(out).resolve().parent if out is not None else Path.cwd().resolve()
    return f"sqlite:///{root / STORE_FILE}", str(root / ARTIFACTS_DIR)


def ui_command(uri: str) -> str:
    """The command that shows runs logged to ``uri`` in the MLflow UI."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


class Tracker:
    """Logs one run (with its children) to MLflow through a writer process started now.

    The writer imports MLflow and opens the store while the tracked work runs; :meth:`log` hands it the run
    and waits until it is written.

    Args:
        uri: Tracking URI.
        artifact_location: Artifact folder for a new experiment (``None``: the store's default).
        experiment: MLflow experiment name.
        wait: Wait now until the store is open, so an unreachable store fails before any long work.

    Raises:
        StorageError: The store cannot be opened (with ``wait``; otherwise from :meth:`log`).
    """

    def __init__(self, uri: str, artifact_location: str | None = None, *, experiment: str = DEFAULT_EXPERIMENT,
                 wait: bool = False) -> None:
        self.uri, self.experiment = uri, experiment
        if uri.startswith("sqlite:///"):
            try:
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StorageError(f"cannot track to {uri}: {error}") from None
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (lives as long as the writer)
        self._process = subprocess.Popen([sys.executable, "-m", "headstart.tracking.writer"], text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         env={**WRITER_ENVIRONMENT, **os.environ, **NO_TELEMETRY})
        self._send({"uri": uri, "experiment": experiment, "artifact_location": artifact_location})
        self._ready = False
        if wait:
            self._await_ready()

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            self._receive()  # the writer died: report why

    def _receive(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._stderr.seek(0)
            detail = self._stderr.read().strip().splitlines()[-1:] or [f"exit code {self._process.returncode}"]
            raise StorageError(f"cannot track to {self.uri}: the MLflow writer stopped ({detail[0]})")
        message = json.loads(line)
        if "error" in message:
            raise StorageError(f"cannot track to {self.uri}: {message['error']}; give "
                               f"{option('track', cli='--tracking-uri')} a running MLflow server (http://host:5000) or "
                               "sqlite:///path/mlruns.db in a writable folder")
        return message

    def _await_ready(self) -> None:
        if not self._ready:
            self._receive()
            self._ready = True

    def log(self, spec: RunSpec) -> dict[str, str]:
        """Write ``spec`` and its children; returns ``{"uri", "experiment", "run_id"}``.

        Raises:
            StorageError: The store could not be opened or written.
        """
        self._await_ready()
        self._send(spec.to_dict())
        answer = self._receive()
        self.close()
        return {"uri": self.uri, "experiment": self.experiment, "run_id": answer["run_id"]}

    def close(self) -> None:
        """Stop the writer (without logging, if :meth:`log` was not called)."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stderr.close()


def start_tracking(track: bool | str | None, out: str | Path | None) -> Tracker | None:
    """A :class:`Tracker` for a command's ``track`` argument, or ``None`` when off.

    A tracking URI the user gave is checked now, before the work starts (it may be a server that is down); the
    embedded store is opened while the work runs. A tracker that never logs stops when it is garbage-collected
    or the process ends (its writer reads the end of its input and exits).

    Raises:
        StorageError: A given tracking URI cannot be reached.
    """
    target = tracking_target(track, out)
    return None if target is None else Tracker(*target, wait=isinstance(track, str))
