"""Checkpoints: a run killed with SIGKILL and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headstart.strategies import get_strategy
from headstart.training import CheckpointMismatchError, FitContext
from training_support import TinyImageBackbone, color_images, unlabeled_images

TESTS = Path(__file__).parent
SETTINGS = {"finetune": {"batch_size": 8, "head_epochs": 1, "epochs": 3, "lr": 2e-2, "patience": None,
                         "checkpoint_seconds": 0},
            "gradual": {"batch_size": 8, "epochs": 2, "lr": 2e-2, "patience": None, "min_steps": 0,
                        "checkpoint_seconds": 0},
            "dann": {"batch_size": 8, "head_epochs": 1, "epochs": 2, "lr": 2e-2, "patience": None, "min_steps": 0,
                     "checkpoint_seconds": 0}}

# Runs a strategy in a child process; with KILL_AT it SIGKILLs itself at that point of checkpoint number k:
# "after" the checkpoint is complete, or "during" its write (tensors written, state.json not yet replaced).
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from training_support import TinyImageBackbone, color_images, unlabeled_images
    import headstart.training.checkpoint as checkpoint
    import headstart.training.loop as loop
    from headstart.strategies import get_strategy
    from headstart.training import FitContext

    kill_at, when = {kill_at!r}, {when!r}
    if when == "after":
        original = loop.save_checkpoint
        def save_then_die(folder, state, tensors):
            original(folder, state, tensors)
            if state["serial"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        loop.save_checkpoint = save_then_die
    else:
        original = checkpoint.write_json
        def die_before_state(path, data):
            if data.get("serial") == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            original(path, data)
        checkpoint.write_json = die_before_state
    data = color_images(40)
    model = get_strategy({name!r}, **{settings!r}).fit(TinyImageBackbone(), data.subset(range(30)),
                                                        data.subset(range(30, 40)),
                                                        FitContext(Path({work!r}), progress=False,
                                                                   target=unlabeled_images()))
""")


def fit(name, work):
    data = color_images(40)
    return get_strategy(name, **SETTINGS[name]).fit(TinyImageBackbone(), data.subset(range(30)),
                                                     data.subset(range(30, 40)),
                                                     FitContext(work, progress=False, target=unlabeled_images()))


def weights(model):
    return {**{f"body.{k}": v for k, v in model.backbone.module.state_dict().items()},
            **{f"head.{k}": v for k, v in model.head.state_dict().items()}}


@pytest.mark.parametrize(("name", "kill_at", "when"), [("finetune", 3, "after"), ("finetune", 2, "during"),
                                                       ("gradual", 2, "after"), ("dann", 2, "after")])
def test_resume_after_sigkill_matches_uninterrupted_run(name, kill_at, when, tmp_path):
    reference = fit(name, tmp_path / "a")
    work = tmp_path / "b"
    script = CHILD.format(tests=str(TESTS), kill_at=kill_at, when=when, name=name, settings=SETTINGS[name],
                          work=str(work))
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    state = json.loads((work / "checkpoint" / "state.json").read_text())
    assert state["serial"] == (kill_at if when == "after" else kill_at - 1)
    assert not state["done"] and load_file(str(work / "checkpoint" / state["tensors"]))

    resumed = fit(name, work)
    train = resumed.metrics["train"]
    assert train["resumed_from_epoch"] == state["epoch"]
    assert len(train["history"]) == len(reference.metrics["train"]["history"])
    expected = weights(reference)
    for key, value in weights(resumed).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-7, msg=key)
    assert train["best_epoch"] == reference.metrics["train"]["best_epoch"]


def test_checkpoint_content(tmp_path):
    data = color_images(20)
    get_strategy("gradual", batch_size=8, epochs=1, min_steps=0).fit(TinyImageBackbone(), data, None,
                                                                     FitContext(tmp_path, progress=False))
    folder = tmp_path / "checkpoint"
    state = json.loads((folder / "state.json").read_text())
    assert state["done"] and state["stage"] == 3 and len(state["history"]) == 3
    assert sorted(p.name for p in folder.iterdir()) == sorted(["state.json", state["tensors"]])


def test_finished_run_is_returned_without_training(tmp_path):
    first = fit("finetune", tmp_path)
    again = fit("finetune", tmp_path)
    assert again.metrics["train"]["resumed_from_epoch"] == 4
    assert again.metrics["train"]["history"] == first.metrics["train"]["history"]
    assert torch.equal(again.head.weight, first.head.weight)


@pytest.mark.parametrize("change", ["settings", "data"])
def test_mismatched_resume_is_refused(change, tmp_path):
    data = color_images(20)
    context = FitContext(tmp_path, progress=False)
    get_strategy("finetune", batch_size=8, epochs=1).fit(TinyImageBackbone(), data, None, context)
    lr = 5e-3 if change == "settings" else None
    other = color_images(20, seed=1) if change == "data" else data
    with pytest.raises(CheckpointMismatchError, match="different run"):
        get_strategy("finetune", batch_size=8, epochs=1, lr=lr).fit(TinyImageBackbone(), other, None, context)
    assert os.path.isfile(tmp_path / "checkpoint" / "state.json")


class Crash(Exception):
    pass


def test_resume_continues_early_stopping_where_it_stood(tmp_path, monkeypatch):
    # Nothing improves after epoch 0 (lr 1e-12), so patience 2 stops after 3 epochs. The run crashes after
    # checkpointing epoch 1 (one epoch without improvement): the resumed run must stop after one more epoch,
    # not restart its patience.
    import headstart.training.loop as loop

    data = color_images(30)

    def run():
        return get_strategy("finetune", batch_size=16, head_epochs=0, epochs=20, lr=1e-12, patience=2,
                            checkpoint_seconds=0,
                            min_steps=0).fit(TinyImageBackbone(), data.subset(range(20)), data.subset(range(20, 30)),
                                             FitContext(tmp_path, progress=False))

    original = loop.save_checkpoint

    def crash_after_second(folder, state, tensors):
        original(folder, state, tensors)
        if state["serial"] == 2:
            raise Crash

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_second)
    with pytest.raises(Crash):
        run()
    monkeypatch.setattr(loop, "save_checkpoint", original)
    train = run().metrics["train"]
    assert train["resumed_from_epoch"] == 2 and train["stop_reason"] == "early_stopping"
    assert [h["epoch"] for h in train["history"]] == [0, 1, 2] and train["best_epoch"] == 0


def test_a_resumed_run_says_where_it_resumes(tmp_path, monkeypatch, capsys):
    import headstart.training.loop as loop

    data = color_images(30)

    def run():
        return get_strategy("finetune", batch_size=16, head_epochs=1, epochs=2).fit(
            TinyImageBackbone(), data, None, FitContext(tmp_path, progress=True))

    original = loop.save_checkpoint

    def crash_after_first(folder, state, tensors):
        original(folder, state, tensors)
        raise Crash

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_first)
    with pytest.raises(Crash):
        run()
    monkeypatch.setattr(loop, "save_checkpoint", original)
    capsys.readouterr()
    run()
    assert "resuming from epoch 2 (stage all, epoch 1/2)" in capsys.readouterr().err


def test_damaged_checkpoint_is_a_clear_error_and_force_starts_over(tmp_path, image_folder, tiny_backbone):
    import headstart
    from headstart.training import CheckpointDamagedError

    data = color_images(20)
    context = FitContext(tmp_path, progress=False)
    strategy = get_strategy("finetune", batch_size=8, epochs=1)
    strategy.fit(TinyImageBackbone(), data, None, context)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    tensors = tmp_path / "checkpoint" / state["tensors"]
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(CheckpointDamagedError, match=r"delete .*checkpoint to start over, or .* force=True"):
        strategy.fit(TinyImageBackbone(), data, None, context)

    out = tmp_path / "run"
    settings = {"batch_size": 8, "epochs": 1, "head_epochs": 1}
    (out.with_name("run.partial") / "checkpoint").mkdir(parents=True)
    (out.with_name("run.partial") / "checkpoint" / "state.json").write_text('{"serial": 1, "tens')
    with pytest.raises(CheckpointDamagedError):
        headstart.fit(image_folder, backbone=tiny_backbone, strategy="finetune", out=out, progress=False,
                      settings=settings)
    with pytest.warns(headstart.errors.HeadstartWarning, match="damaged checkpoint"):
        headstart.fit(image_folder, backbone=tiny_backbone, strategy="finetune", out=out, force=True,
                      progress=False, settings=settings)
    assert (out / "model.safetensors").is_file()
