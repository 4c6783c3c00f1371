"""Where tracked runs go, and the :class:`Tracker` that writes them there.

Off by default. ``track=True`` logs to an embedded store next to the output folder: ``<out parent>/mlruns.db``
(SQLite) with artifacts in ``<out parent>/mlartifacts/``, no server, nothing sent anywhere; a tracking URI
(``http://host:5000``, ``sqlite:///path.db``, any MLflow store) logs there instead. Browse with
``mlflow ui --backend-store-uri sqlite:///<out parent>/mlruns.db``.

A command-line command does not wait for its run to be written (its worker is detached, see
:mod:`headstart.tracking.worker`): the outcome lands in the tracking log (:mod:`headstart.tracking.outcomes`), and
the next tracked command warns about a run that failed. The Python API waits and returns the run id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

from headstart.errors import HeadstartWarning, StorageError, option
from headstart.tracking import outcomes
from headstart.tracking.spec import RunSpec
from headstart.tracking.worker import take_worker

DEFAULT_EXPERIMENT = "headstart"
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
    """Logs one run (with its children) to MLflow through a tracking worker process
    (:mod:`headstart.tracking.worker`), which opens the store while the command works.

    Importing MLflow and opening its store take seconds of CPU (a new SQLite store also runs MLflow's schema
    migrations); in the worker they run on another core. In a Python process :meth:`log` waits for the store,
    hands over the run and waits for it to be written, so an error surfaces there. A command-line command's
    worker is detached: :meth:`log` hands over the run and returns at once, the worker writes it after the
    command has exited and records the outcome in the tracking log (``log_file``).

    Args:
        uri: Tracking URI.
        artifact_location: Artifact folder for a new experiment (``None``: the store's default).
        experiment: MLflow experiment name.
        confirm: :meth:`before_work` waits until the store is open, so an unreachable store fails before the
            long work (but after the input checks, which run meanwhile).
        out: The command's output folder (where the tracking log of a server URI goes).

    Raises:
        StorageError: The worker cannot be started, or a SQLite store's folder cannot be written.
    """

    def __init__(self, uri: str, artifact_location: str | None = None, *, experiment: str = DEFAULT_EXPERIMENT,
                 confirm: bool = False, out: str | Path | None = None) -> None:
        self.uri, self.experiment, self.confirm = uri, experiment, confirm
        self.log_file = outcomes.log_path(uri, out)
        if uri.startswith("sqlite:///"):
            self._check_folder(Path(uri.removeprefix("sqlite:///")).resolve().parent)
        _warn_unreported(self.log_file)
        try:
            self._worker = take_worker()
        except OSError as error:
            raise StorageError(f"cannot track to {uri}: {error}") from None
        self._worker.send({"op": "open", "uri": uri, "experiment": experiment,
                           "artifact_location": artifact_location})
        self._opened = False

    def _check_folder(self, folder: Path) -> None:
        """Fail now, not after the work, when a SQLite store's folder cannot be created or written."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError("not writable")
        except OSError as error:
            hint = (f"give {option('track', cli='--tracking-uri')} a store in a writable folder" if self.confirm else
                    f"{option('track', True)} puts the store beside the output folder: give {option('out')} "
                    "in a writable folder")
            raise StorageError(f"cannot track to {self.uri}: the folder {folder} cannot be written "
                               f"({getattr(error, 'strerror', None) or error}); {hint}") from None

    def before_work(self) -> None:
        """Call once the input is checked, before the long work: with ``confirm``, wait until the store is open.

        The worker has been importing MLflow since the command started, so by now most of that wait is over;
        without ``confirm`` (the embedded store) the store keeps opening while the work runs.

        Raises:
            StorageError: The store cannot be opened.
        """
        if self.confirm:
            self._wait_opened()

    def _wait_opened(self) -> None:
        """Wait for the worker's answer to opening the store; raise its error, if any."""
        if self._opened:
            return
        reply = self._worker.receive()
        if "error" in reply:
            self._worker.close()
            raise StorageError(f"cannot track to {self.uri}: {reply['error']}; give "
                               f"{option('track', cli='--tracking-uri')} a running MLflow server (http://host:5000) "
                               "or sqlite:///path/mlruns.db in a writable folder")
        self._opened = True

    def log(self, spec: RunSpec) -> dict[str, Any]:
        """Write ``spec`` and its children; returns ``{"uri", "experiment", "run_id", "run_key", "name"}``.

        ``run_key`` (the run's tag ``headstart.run_key``) names the run before MLflow has given it an id. With a
        detached worker the run is handed over and ``run_id`` is ``None``, with ``"pending": True`` and
        ``"log"``: the tracking log where its outcome will be.

        Raises:
            StorageError: The store could not be opened or written (a detached write fails into the log).
        """
        key = uuid.uuid4().hex
        spec = dataclasses.replace(spec, tags={**spec.tags, "headstart.run_key": key})
        run: dict[str, Any] = {"uri": self.uri, "experiment": self.experiment, "run_id": None, "run_key": key,
                               "name": spec.name}
        request: dict[str, Any] = {"op": "write", "run": spec.to_json()}
        if self._worker.detached:
            request["log"] = str(self.log_file)
            request["outcome"] = {"run_key": key, "name": spec.name, "uri": self.uri,
                                  "command": spec.tags.get("headstart.command"), "out": spec.tags.get("headstart.out")}
            self._worker.send(request)
            self._worker.detach()
            return {**run, "pending": True, "log": str(self.log_file)}
        self._wait_opened()
        self._worker.send(request)
        reply = self._worker.receive()
        self._worker.close()
        if "error" in reply:
            raise StorageError(f"cannot track to {self.uri}: {reply['error']}")
        return {**run, "run_id": reply["run_id"]}


def _warn_unreported(log_file: Path) -> None:
    """Warn about runs of earlier commands that failed to be written and that no command has reported yet."""
    failures = []
    with contextlib.suppress(OSError):
        failures = outcomes.take_unreported_failures(log_file)
    if failures:
        warnings.warn(outcomes.failure_message(failures, log_file), HeadstartWarning, stacklevel=4)


def start_tracking(track: bool | str | None, out: str | Path | None) -> Tracker | None:
    """A :class:`Tracker` for a command's ``track`` argument, or ``None`` when off.

    A tracking URI the user gave is checked by :meth:`Tracker.before_work` (it may be a server that is down),
    which the command calls after checking its input, so MLflow starts up meanwhile; the embedded store is
    opened while the work runs. A tracker that never logs just finishes opening the store.

    Raises:
        StorageError: The tracking worker cannot be started.
    """
    target = tracking_target(track, out)
    return None if target is None else Tracker(*target, confirm=isinstance(track, str), out=out)
