"""The MLflow side of tracking: open a store and write a :class:`~headstart.tracking.spec.RunSpec` into it.

Only the standard library and MLflow are imported here, MLflow lazily and with its telemetry switched off
first (:data:`NO_TELEMETRY`): nothing leaves the machine unless the tracking URI points elsewhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headstart.tracking.spec import RunSpec

#: Environment that keeps MLflow from sending usage data (MLflow reads both; see mlflow/telemetry/utils.py).
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# MLflow retries an unreachable server for minutes by default; a few seconds say enough (the user's own
# environment wins).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# MLflow caps what one log_batch call may carry.
_MAX_PARAMS, _MAX_METRICS, _MAX_PARAM_LENGTH = 100, 1000, 6000


def load_mlflow() -> Any:
    """Import MLflow with its telemetry off and its HTTP retries short; returns ``MlflowClient``.

    This is most of what tracking costs before a run is written (about a second of CPU, sharing nothing with
    the command), which is why the tracking worker calls it first, before it knows where to log.
    """
    os.environ.update(NO_TELEMETRY)
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow.tracking import MlflowClient

    # MLflow announces each schema migration at INFO; a command's output stays about the command. (Importing
    # MLflow sets its logger's level, so this comes after.)
    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    return MlflowClient


def open_experiment(uri: str, experiment: str, artifact_location: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` for ``uri`` and the id of ``experiment`` (created, with ``artifact_location``, if
    missing). A new SQLite store gets MLflow's schema here (its migrations take seconds)."""
    client = load_mlflow()(tracking_uri=uri)
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


def write_run(client: Any, experiment_id: str, spec: RunSpec, parent_id: str | None = None) -> str:
    """Write one run and its children; returns the run id.

    Params and metrics go in as few ``log_batch`` calls as MLflow allows (one per 100 params / 1000 metrics),
    each one database transaction.
    """
    from mlflow.entities import Metric, Param, RunStatus

    tags = dict(spec.tags)
    if parent_id is not None:
        tags["mlflow.parentRunId"] = parent_id
    run = client.create_run(experiment_id, run_name=spec.name, tags=tags)
    run_id = run.info.run_id
    stamp = run.info.start_time
    params = [Param(str(k), str(v)[:_MAX_PARAM_LENGTH]) for k, v in spec.params.items()]
    metrics = [Metric(key, float(value), stamp, int(step)) for key, value, step in spec.metrics]
    batches = max(-(-len(params) // _MAX_PARAMS), -(-len(metrics) // _MAX_METRICS))
    for i in range(batches):
        client.log_batch(run_id, params=params[i * _MAX_PARAMS:(i + 1) * _MAX_PARAMS],
                         metrics=metrics[i * _MAX_METRICS:(i + 1) * _MAX_METRICS])
    for local, folder in spec.artifacts:
        path = Path(local)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), folder or None)
        elif path.is_file():
            client.log_artifact(run_id, str(path), folder or None)
    for child in spec.children:
        write_run(client, experiment_id, child, parent_id=run_id)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id
