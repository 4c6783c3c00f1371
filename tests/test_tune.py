"""Tuning: search spaces from the strategies' configs, a study scored on validation data, refit once on test,
resumable after a SIGKILL, shareable between worker processes, bad input refused before any trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import headstart
from conftest import write_image_folder
from headstart.cli import main
from headstart.errors import ConfigError, StorageError
from headstart.strategies import STRATEGIES
from headstart.training.search_space import Choice, FloatRange, IntRange, check_search_space, parse_dimension

SRC = str(Path(headstart.__file__).parent.parent)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_declares_a_valid_search_space(name):
    config_class = STRATEGIES.get(name).config_class
    assert config_class.search_space
    check_search_space(config_class, config_class.search_space, name)


def test_dimensions_parse_from_the_command_line_form():
    assert parse_dimension("lr", "log:1e-5:1e-3") == FloatRange(1e-5, 1e-3, log=True)
    assert parse_dimension("epochs", "2:8") == IntRange(2, 8)
    assert parse_dimension("augment", "off,light") == Choice(("off", "light"))
    assert parse_dimension("rank", "4,8") == Choice((4, 8))
    with pytest.raises(ConfigError, match="low:high"):
        parse_dimension("lr", "fast")


def test_relative_bounds_follow_the_modality_default():
    lr = STRATEGIES.get("finetune").config_class.search_space["lr"]
    assert lr.bounds(5e-5) == pytest.approx((5e-6, 5e-4))
    assert STRATEGIES.get("finetune").config_class.search_space["epochs"].bounds(3) == (1, 6)


def test_tune_scores_on_validation_refits_once_and_writes_the_study(tmp_path, image_folder, tiny_timm_ref):
    out = tmp_path / "tuned"
    result = headstart.tune(image_folder, strategy="linear", trials=4, backbone=tiny_timm_ref, out=out,
                            progress=False)
    study = json.loads((out / "study.json").read_text())
    assert [t["state"] for t in study["trials"]] == ["COMPLETE"] * 4
    first = study["trials"][0]
    assert first["defaults"] and first["params"] == {}  # linear's default C is chosen by cross-validation
    assert study["best"]["value"] >= study["defaults"]["value"]
    kept = study["selection"]["kept_defaults"]
    assert study["chosen"] == (study["defaults"] if kept else study["best"])
    assert study["test"]["accuracy"] == result.model.metrics["test"]["accuracy"]
    assert result.model.metrics["tuning"]["params"] == study["chosen"]["params"]
    reloaded = headstart.load(out)
    assert reloaded.strategy_config["c"] == study["chosen"]["params"].get("c")
    report = (out / "report.html").read_text()
    assert "Optimisation history" in report and "Results on the test split" in report
    assert (out / "study.db").is_file() and not (out / "trials").exists()


def test_on_epoch_end_sees_every_epoch_and_can_stop_training(tmp_path, image_folder, tiny_timm_ref):
    from headstart.backbones import create_backbone
    from headstart.data import load_dataset
    from headstart.fitting import complete_splits, fit_splits
    from headstart.strategies import get_strategy
    from headstart.training import FitContext

    strategy = get_strategy("finetune", epochs=2, head_epochs=1, min_steps=0, batch_size=8)
    splits = complete_splits(load_dataset(image_folder), strategy, seed=0, val_fraction=0.2, test_fraction=0.2)
    seen = []
    context = FitContext(tmp_path / "a", progress=False, on_epoch_end=seen.append)
    model = fit_splits(splits, create_backbone(tiny_timm_ref), strategy, context)
    assert [r["epoch"] for r in seen] == [h["epoch"] for h in model.metrics["train"]["history"]] == [0, 1, 2]
    assert all("val_accuracy" in r for r in seen)

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    with pytest.raises(Stop):
        fit_splits(splits, create_backbone(tiny_timm_ref), strategy,
                   FitContext(tmp_path / "b", progress=False, on_epoch_end=stop))


@pytest.mark.parametrize(("option", "message"), [
    (["--space", "speed=1:2"], "has no setting 'speed'"),
    (["--space", "c=-1:2"], "c=-1"),
    (["--set", "c=1", "--space", "c=1:2"], "both fixed"),
    (["--storage", "sqlite:////no/such/folder/s.db"], "cannot open tuning storage"),
    (["--storage", "postgresql://user@127.0.0.1:9/db"], "cannot open tuning storage"),
    (["--storage", "nosuchdb://x"], "cannot open tuning storage"),
])
def test_bad_space_or_storage_exits_2_before_any_trial(option, message, tmp_path, image_folder, tiny_timm_ref,
                                                       capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["headstart", "tune", str(image_folder), "--strategy", "linear",
                                     "--backbone", tiny_timm_ref, "--out", str(tmp_path / "o"), "-q", *option])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.partial" / "trials").exists() and not (tmp_path / "o").exists()


def test_a_study_of_other_data_is_refused(tmp_path, image_folder, tiny_timm_ref):
    storage = f"sqlite:///{tmp_path}/s.db"
    headstart.tune(image_folder, strategy="linear", trials=1, backbone=tiny_timm_ref, storage=storage,
                   study="s", progress=False)
    other = write_image_folder(tmp_path / "other", seed=1)
    with pytest.raises(ConfigError, match="made with other data_fingerprint"):
        headstart.tune(other, strategy="linear", trials=1, backbone=tiny_timm_ref, storage=storage, study="s",
                       progress=False)
    with pytest.raises(StorageError):
        headstart.tune(image_folder, strategy="linear", trials=1, backbone=tiny_timm_ref,
                       storage=f"sqlite:///{tmp_path}/missing/s.db", progress=False)


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "headstart", "tune", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def _trials(url: str, name: str | None = None) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [name] if name else optuna.get_all_study_names(url)
    return optuna.load_study(study_name=names[0], storage=url).trials if names else []


def _complete_trials(database: Path) -> int:
    """Complete trials in a study database, read without writing (so the test never races the child)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or its tables not yet
        return 0


def test_killed_tune_resumes_with_the_same_command_keeping_finished_trials(tmp_path, image_folder,
                                                                            tiny_timm_ref):
    out = tmp_path / "tuned"
    command = _cli(image_folder, "--strategy", "linear", "--trials", 30, "--backbone", tiny_timm_ref,
                   "--out", out, "-q")
    child = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"sqlite:///{out}.partial/study.db"
    deadline = time.monotonic() + 240
    database = Path(f"{out}.partial/study.db")
    while time.monotonic() < deadline and child.poll() is None and _complete_trials(database) < 3:
        time.sleep(0.3)
    assert child.poll() is None, f"the study ended before it could be killed: {child.stderr.read()[-2000:]}"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not out.exists()
    before = [t for t in _trials(url) if t.state.name == "COMPLETE"]
    assert len(before) >= 3

    rerun = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    study = json.loads((out / "study.json").read_text())
    complete = {t["number"]: t["params"] for t in study["trials"] if t["state"] == "COMPLETE"}
    assert len(complete) == 30
    assert all(complete[t.number] == t.params for t in before)  # nothing finished was lost or redone
    assert all(t["state"] in ("COMPLETE", "FAIL") for t in study["trials"])  # the killed trial is failed


def test_two_workers_share_one_study_and_a_third_call_refits(tmp_path, image_folder, tiny_timm_ref):
    storage = f"sqlite:///{tmp_path}/shared.db"

    def command(trials: int, *extra: object) -> list[str]:
        return _cli(image_folder, "--strategy", "linear", "--trials", trials, "--backbone", tiny_timm_ref,
                    "--storage", storage, "--study", "shared", "-q", *extra)

    workers = [subprocess.Popen(command(24), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()[-2000:]
    complete = [t for t in _trials(storage, "shared") if t.state.name == "COMPLETE"]
    assert 24 <= len(complete) <= 25  # each worker may finish one trial past the target
    # Under load one worker can finish every trial before the other has started; a later worker asking for
    # more trials continues the same study, so at least two workers always contribute.
    later = subprocess.run(command(30), env=_env(), capture_output=True, text=True, timeout=600)
    assert later.returncode == 0, later.stderr[-2000:]
    trials = _trials(storage, "shared")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 30
    assert len({t.user_attrs["worker"] for t in complete}) >= 2
    drawn = [json.dumps(t.params, sort_keys=True) for t in complete if not t.user_attrs.get("defaults")]
    assert len(set(drawn)) == len(drawn)  # no worker repeated another's draws

    final = subprocess.run(command(30, "--out", tmp_path / "best"), env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    study = json.loads((tmp_path / "best" / "study.json").read_text())
    assert len(study["trials"]) == len(trials)  # no new trial: the study was done
    assert (tmp_path / "best" / "model.safetensors").is_file()
