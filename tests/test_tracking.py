"""Tracking: fit and compare runs land in MLflow with their settings, curves, metrics and folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import headstart
from conftest import write_image_folder
from headstart.cli import app, main
from headstart.errors import StorageError
from headstart.tracking import worker
from headstart.tracking.runs import RunSpec
from headstart.tracking.tracker import Tracker, tracking_target

FAST = {"epochs": 1, "head_epochs": 1, "min_steps": 0, "batch_size": 8}


def runs(uri: str, **filters):
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("headstart")
    return client, client.search_runs([experiment.experiment_id], **filters)


def test_embedded_store_sits_beside_the_output_folder(tmp_path):
    uri, artifacts = tracking_target(True, tmp_path / "runs" / "a")
    assert uri == f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}"
    assert artifacts == str(tmp_path / "runs" / "mlartifacts")
    assert tracking_target(f"sqlite:///{tmp_path}/x/t.db", None)[1] == str(tmp_path / "x" / "mlartifacts")
    assert tracking_target("http://mlflow:5000", None) == ("http://mlflow:5000", None)
    assert tracking_target(False, tmp_path) is None


def test_fit_logs_settings_curves_metrics_and_folder(tmp_path, image_folder, tiny_timm_ref):
    out = tmp_path / "runs" / "ft"
    model = headstart.fit(image_folder, backbone=tiny_timm_ref, strategy="finetune", out=out, progress=False,
                          settings={**FAST, "refit": "never"}, track=True, val_fraction=0.15, test_fraction=0.2)
    client, found = runs(model.metrics["tracking"]["uri"])
    assert [r.info.run_id for r in found] == [model.metrics["tracking"]["run_id"]]
    run = found[0]
    assert run.data.params["strategy"] == "finetune" and run.data.params["seed"] == "0"
    assert run.data.params["setting.lr"] == str(model.strategy_config["lr"])  # resolved, not None
    assert len(run.data.params["data_fingerprint"]) == 32
    assert run.data.metrics["test/accuracy"] == pytest.approx(model.metrics["test"]["accuracy"])
    assert {"val/macro_f1", "test/ece", "seconds"} <= run.data.metrics.keys()
    curve = client.get_metric_history(run.info.run_id, "epoch/val_accuracy")
    assert [p.step for p in curve] == [h["epoch"] for h in model.metrics["train"]["history"]]
    assert run.data.tags["headstart.command"] == "fit"
    stored = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/config.json", "model/model.safetensors", "model/report.html"} <= stored
    assert (tmp_path / "runs" / "mlartifacts").is_dir()


def test_same_data_gives_the_same_fingerprint_and_other_data_another(tmp_path, image_folder, tiny_timm_ref):
    uri = f"sqlite:///{tmp_path}/t.db"
    for name in ("a", "b"):
        headstart.fit(image_folder, backbone=tiny_timm_ref, out=tmp_path / name, progress=False, track=uri)
    other = write_image_folder(tmp_path / "other", seed=1)
    headstart.fit(other, backbone=tiny_timm_ref, out=tmp_path / "c", progress=False, track=uri)
    _, found = runs(uri, order_by=["attributes.start_time ASC"])
    prints = [r.data.params["data_fingerprint"] for r in found]
    assert prints[0] == prints[1] != prints[2]


def test_compare_logs_a_parent_with_one_child_per_run(tmp_path, image_folder, tiny_timm_ref):
    result = headstart.compare(image_folder, strategies=["linear"], shots=[3, 6], seeds=2, backbone=tiny_timm_ref,
                               out=tmp_path / "cmp", track=True)
    client, found = runs(result.tracking["uri"])
    parent = next(r for r in found if r.info.run_id == result.tracking["run_id"])
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(result.records) == 4
    assert sorted((c.data.params["size"], c.data.params["seed"]) for c in children) == [
        ("3.0", "0"), ("3.0", "1"), ("6.0", "0"), ("6.0", "1")]
    assert parent.data.tags["headstart.command"] == "compare"
    assert "mean_accuracy/linear/6" in parent.data.metrics


def test_unreachable_tracking_server_fails_before_training(tmp_path, image_folder, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(StorageError, match="cannot track to http://127.0.0.1:9"):
        headstart.fit(image_folder, backbone="no-such-backbone-is-ever-built", out=tmp_path / "x",
                      track="http://127.0.0.1:9")
    assert not (tmp_path / "x").exists()


def test_cli_track_prints_where_the_run_went(tmp_path, image_folder, tiny_timm_ref):
    result = CliRunner().invoke(app, ["fit", str(image_folder), "--backbone", tiny_timm_ref, "--out",
                                      str(tmp_path / "a"), "--track", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlruns.db'}" in result.output
    assert Path(tmp_path / "mlruns.db").is_file()


def test_cli_unusable_tracking_uri_exits_2(tmp_path, image_folder, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr("sys.argv", ["headstart", "fit", str(image_folder), "--out", str(tmp_path / "o"),
                                     "--tracking-uri", f"sqlite:///{tmp_path}/file/mlruns.db"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    err = "".join(capsys.readouterr().err.split())  # rich wraps the line at the terminal width
    assert "cannottracktosqlite:///" in err and "Traceback" not in err


def test_a_store_that_fails_to_open_in_the_background_is_reported_when_logging(tmp_path):
    (tmp_path / "mlruns.db").mkdir()  # a folder where the SQLite file should be
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlruns.db'}")
    with pytest.raises(StorageError, match="cannot track to sqlite:///.*mlruns.db: OperationalError"):
        tracker.log(RunSpec("never written"))


def test_a_run_crosses_to_the_worker_as_json_unchanged():
    spec = RunSpec("parent", {"lr": 0.001, "layers": (1, 2), "none": None}, [("epoch/val_accuracy", 0.5, 3)],
                   {"headstart.command": "compare"}, [("/tmp/x", "model")],
                   [RunSpec("child", {"seed": 1}, [("test/accuracy", 0.75, 0)])])
    back = RunSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert back.params == {"lr": "0.001", "layers": "(1, 2)", "none": "None"}  # as the writer logs them
    assert back.metrics == spec.metrics and back.artifacts == spec.artifacts and back.tags == spec.tags
    assert back.children[0].params == {"seed": "1"} and back.children[0].metrics == [("test/accuracy", 0.75, 0)]


def test_mlflow_runs_in_the_worker_process_not_the_command(tmp_path):
    script = ("import sys\nfrom headstart.tracking.tracker import Tracker\n"
              "from headstart.tracking.spec import RunSpec\n"
              f"print(Tracker('sqlite:///{tmp_path}/t.db').log(RunSpec('r', {{'a': 1}}))['run_id'])\n"
              "print('mlflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    run_id, imported = done.stdout.split()
    assert imported == "False"
    client, found = runs(f"sqlite:///{tmp_path}/t.db")
    assert [r.info.run_id for r in found] == [run_id] and found[0].data.params == {"a": "1"}


def test_only_a_tracked_command_line_starts_a_worker_early(monkeypatch):
    started = []
    monkeypatch.setattr(worker, "TrackingWorker", lambda **_: started.append(object()) or started[-1])
    worker.start_early(["fit", "data", "--out", "runs/x"])
    assert started == []
    worker.start_early(["fit", "data", "--tracking-uri=http://mlflow:5000"])
    assert worker.take_worker() is started[0]
    assert worker.take_worker() is not started[0]  # taken once; the next tracker starts its own


def test_a_given_tracking_uri_is_confirmed_after_the_input_checks_not_when_the_tracker_starts(tmp_path):
    (tmp_path / "mlruns.db").mkdir()  # a folder where the SQLite file should be
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlruns.db'}", confirm=True)  # returns while MLflow starts up
    with pytest.raises(StorageError, match="(?s)cannot track to sqlite:///.*: OperationalError.*running MLflow server"):
        tracker.before_work()


def test_bad_data_is_reported_before_the_tracking_uri_is_waited_for(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(headstart.errors.HeadstartError) as raised:
        headstart.fit(tmp_path / "no-such-folder", out=tmp_path / "x", track="http://127.0.0.1:9")
    assert not isinstance(raised.value, StorageError)
