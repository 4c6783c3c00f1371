"""Detached tracking: a command-line command hands its run to the tracking worker and exits; the worker writes it,
records the outcome in the tracking log, and the next tracked command reports a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import headstart
from headstart.errors import HeadstartWarning, StorageError
from headstart.tracking import outcomes, worker
from headstart.tracking.spec import RunSpec
from headstart.tracking.tracker import Tracker


def outcome(log: Path, key: str, timeout: float = 120) -> dict:
    """The log's record of run ``key``, once the worker has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in outcomes.records(log) if r.get("run_key") == key]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no outcome for {key} in {log} after {timeout} s")


def stored(uri: str) -> list:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("headstart").experiment_id])


def detached_tracker(uri: str, artifacts: Path | None = None) -> Tracker:
    """A tracker with the worker a command line starts (:func:`worker.start_early`)."""
    worker.start_early(["fit", "data", "--track"])
    tracker = Tracker(uri, str(artifacts) if artifacts else None)
    assert tracker._worker.detached
    return tracker


def test_a_detached_log_returns_pending_and_the_worker_writes_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    run = detached_tracker(uri).log(RunSpec("r", {"a": 1}, tags={"headstart.command": "fit"}))
    assert run["pending"] and run["run_id"] is None and run["log"] == str(tmp_path / outcomes.LOG_FILE)
    record = outcome(Path(run["log"]), run["run_key"])
    assert record["name"] == "r" and record["command"] == "fit" and "error" not in record
    [found] = stored(uri)
    assert found.info.run_id == record["run_id"] and found.data.tags["headstart.run_key"] == run["run_key"]
    assert found.data.params == {"a": "1"}


def test_the_worker_writes_the_run_after_the_command_has_exited(tmp_path, image_folder, tiny_timm_ref):
    out = tmp_path / "runs" / "a"
    # stderr is not captured: the worker shares it, and reading it to its end would wait for the worker too
    done = subprocess.run([sys.executable, "-m", "headstart", "fit", str(image_folder), "--backbone", tiny_timm_ref,
                           "--out", str(out), "--strategy", "linear", "--track", "-q"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=300)
    assert done.returncode == 0 and "in the background" in done.stdout, done.stdout
    log = tmp_path / "runs" / outcomes.LOG_FILE
    assert str(log) in "".join(done.stdout.split())  # rich may wrap the line
    deadline = time.monotonic() + 120
    while not outcomes.records(log) and time.monotonic() < deadline:
        time.sleep(0.1)
    [record] = outcomes.records(log)
    assert "error" not in record and record["out"] == str(out.resolve()) and record["command"] == "fit"
    [found] = stored(f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}")
    assert found.info.run_id == record["run_id"] and found.data.tags["headstart.run_key"] == record["run_key"]
    assert found.data.params["strategy"] == "linear"


def test_a_failed_write_lands_in_the_log_and_the_next_tracked_command_warns_once(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    (tmp_path / "mlartifacts").write_text("a file where the artifact folder should be")
    model = tmp_path / "model.txt"
    model.write_text("weights")
    run = detached_tracker(uri, tmp_path / "mlartifacts").log(RunSpec("broken run", artifacts=[(str(model), "")]))
    record = outcome(Path(run["log"]), run["run_key"])
    assert "error" in record and "run_id" not in record
    with pytest.warns(HeadstartWarning, match="could not be written to MLflow: 'broken run'.*headstart-tracking.jsonl"):
        Tracker(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Tracker(uri)  # reported once


def test_api_calls_wait_and_return_the_run_id(tmp_path):
    run = Tracker(f"sqlite:///{tmp_path}/t.db").log(RunSpec("r"))
    assert run["run_id"] and "pending" not in run
    assert not (tmp_path / outcomes.LOG_FILE).exists()


def test_an_unwritable_store_folder_fails_before_the_work(tmp_path, image_folder):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError, match="the folder .*file cannot be written.*track=True puts the store"):
        headstart.fit(image_folder, backbone="no-such-backbone-is-ever-built", out=tmp_path / "file" / "x",
                      track=True)


def test_outcome_lines_are_whole_json_and_damaged_lines_are_skipped(tmp_path):
    log = tmp_path / outcomes.LOG_FILE
    outcomes.append(log, {"run_key": "a", "error": "boom"})
    with open(log, "a") as file:
        file.write("{not json\n")
    outcomes.append(log, {"run_key": "b", "run_id": "1"})
    assert [r["run_key"] for r in outcomes.records(log)] == ["a", "b"]
    assert [r["run_key"] for r in outcomes.take_unreported_failures(log)] == ["a"]
    assert outcomes.take_unreported_failures(log) == []
    assert json.loads(log.read_text().splitlines()[-1])["reported"] == ["a"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc")
def test_a_detached_worker_does_not_hold_the_commands_stderr_open():
    # It outlives its command: with the command's stderr, `headstart fit --track 2>&1 | tee` would wait for it.
    detached, attached = worker.TrackingWorker(detached=True), worker.TrackingWorker()
    try:
        assert os.readlink(f"/proc/{detached._process.pid}/fd/2") == os.devnull
        assert os.readlink(f"/proc/{attached._process.pid}/fd/2") == os.readlink("/proc/self/fd/2")
    finally:
        detached.close()
        attached.close()
