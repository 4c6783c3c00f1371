"""The MLflow side of tracking, run as its own process (``python -m headstart.tracking.writer``).

Importing MLflow and opening its store take seconds, about a fifth of a linear fit; in a separate process
they happen while the fit runs. The process reads JSON lines on stdin and answers on stdout:

1. ``{"uri", "experiment", "artifact_location"}`` -> it opens the store and answers ``{"ready": true}``;
2. a :class:`~headstart.tracking.runs.RunSpec` as a dict -> it writes the run (and its children) and answers
   ``{"run_id", "experiment_id"}``.

Any failure is answered as ``{"error": message}``. Only the standard library and MLflow are imported here
(``headstart.tracking`` keeps its ``__init__`` empty for that), and MLflow's telemetry is switched off before
MLflow is imported: nothing leaves the machine unless the tracking URI points elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

#: Environment that keeps MLflow from sending usage data (MLflow reads both; see mlflow/telemetry/utils.py).
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# MLflow caps what one log_batch call may carry.
_MAX_PARAMS, _MAX_METRICS, _MAX_PARAM_LENGTH = 100, 1000, 6000


def open_experiment(uri: str, experiment: str, artifact_location: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` for ``uri`` and the id of ``experiment`` (created, with ``artifact_location``, if
    missing)."""
    os.environ.update(NO_TELEMETRY)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return client, found.experiment_id
    location = Path(artifact_location).resolve().as_uri() if artifact_location else None
    try:
        return client, client.create_experiment(experiment, artifact_location=location)
    except Exception:  # another process created it in between
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return client, found.experiment_id


def write_run(client: Any, experiment_id: str, spec: dict[str, Any], parent_id: str | None = None) -> str:
    """Write one run (a :meth:`RunSpec.to_dict`) and its children; returns the run id."""
    from mlflow.entities import Metric, Param, RunStatus

    tags = dict(spec["tags"])
    if parent_id is not None:
        tags["mlflow.parentRunId"] = parent_id
    run = client.create_run(experiment_id, run_name=spec["name"], tags=tags)
    run_id = run.info.run_id
    stamp = run.info.start_time
    params = [Param(str(k), str(v)[:_MAX_PARAM_LENGTH]) for k, v in spec["params"].items()]
    metrics = [Metric(key, float(value), stamp, int(step)) for key, value, step in spec["metrics"]]
    for start in range(0, max(len(params), 1), _MAX_PARAMS):
        client.log_batch(run_id, params=params[start:start + _MAX_PARAMS])
    for start in range(0, len(metrics), _MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[start:start + _MAX_METRICS])
    for local, folder in spec["artifacts"]:
        path = Path(local)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), folder or None)
        elif path.is_file():
            client.log_artifact(run_id, str(path), folder or None)
    for child in spec["children"]:
        write_run(client, experiment_id, child, parent_id=run_id)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Serve one tracked run over stdin/stdout (see the module docstring)."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        setup = json.loads(sys.stdin.readline())
        client, experiment_id = open_experiment(setup["uri"], setup["experiment"], setup.get("artifact_location"))
    except Exception as error:  # every failure goes back to the parent as a message
        _answer({"error": f"{type(error).__name__}: {error}"})
        return
    _answer({"ready": True})
    line = sys.stdin.readline()
    if not line.strip():  # the parent's command failed or was interrupted: nothing to log
        return
    try:
        run_id = write_run(client, experiment_id, json.loads(line))
    except Exception as error:
        _answer({"error": f"{type(error).__name__}: {error}"})
        return
    _answer({"run_id": run_id, "experiment_id": experiment_id})


if __name__ == "__main__":
    main()
