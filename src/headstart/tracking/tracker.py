"""Where tracked runs go, and the :class:`Tracker` that writes them there.

Off by default. ``track=True`` logs to an embedded store next to the output folder: ``<out parent>/mlruns.db``
(SQLite) with artifacts in ``<out parent>/mlartifacts/``, no server, nothing sent anywhere; a tracking URI
(``http://host:5000``, ``sqlite:///path.db``, any MLflow store) logs there instead. Browse with
``mlflow ui --backend-store-uri sqlite:///<out parent>/mlruns.db``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from headstart.errors import StorageError, option
from headstart.tracking.runs import RunSpec
from headstart.tracking.writer import open_experiment, write_run

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
    """Logs one run (with its children) to MLflow; the store opens in a background thread started now.

    Importing MLflow and opening its store take seconds of CPU (a new SQLite store also runs MLflow's schema
    migrations); in a thread they overlap the tracked work and share the modules the process already imported
    (NumPy, pandas, pydantic, ...). The thread is not a daemon: a command that fails early still lets it finish
    creating a store rather than leave a half-migrated one. :meth:`log` waits for it, then writes the run.

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
        self._store: tuple[Any, str] | None = None
        self._error: Exception | None = None
        self._opening = threading.Thread(target=self._open, args=(artifact_location,), name="headstart-mlflow")
        self._opening.start()
        if wait:
            self._opened()

    def _open(self, artifact_location: str | None) -> None:
        try:
            self._store = open_experiment(self.uri, self.experiment, artifact_location)
        except Exception as error:  # handed to the caller's thread by _opened
            self._error = error

    def _opened(self) -> tuple[Any, str]:
        """The open store's ``(client, experiment id)``, once the opening thread is done."""
        self._opening.join()
        if self._store is None:
            error = self._error
            raise StorageError(f"cannot track to {self.uri}: {type(error).__name__}: {error}; give "
                               f"{option('track', cli='--tracking-uri')} a running MLflow server (http://host:5000) "
                               "or sqlite:///path/mlruns.db in a writable folder") from error
        return self._store

    def log(self, spec: RunSpec) -> dict[str, str]:
        """Write ``spec`` and its children; returns ``{"uri", "experiment", "run_id"}``.

        Raises:
            StorageError: The store could not be opened or written.
        """
        client, experiment_id = self._opened()
        try:
            run_id = write_run(client, experiment_id, spec)
        except Exception as error:
            raise StorageError(f"cannot track to {self.uri}: {type(error).__name__}: {error}") from error
        return {"uri": self.uri, "experiment": self.experiment, "run_id": run_id}


def start_tracking(track: bool | str | None, out: str | Path | None) -> Tracker | None:
    """A :class:`Tracker` for a command's ``track`` argument, or ``None`` when off.

    A tracking URI the user gave is checked now, before the work starts (it may be a server that is down); the
    embedded store is opened while the work runs. A tracker that never logs just finishes opening the store.

    Raises:
        StorageError: A given tracking URI cannot be reached.
    """
    target = tracking_target(track, out)
    return None if target is None else Tracker(*target, wait=isinstance(track, str))
