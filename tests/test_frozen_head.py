"""Head-only stages train on cached frozen features; checkpoints are written by time and at stage ends."""

from __future__ import annotations

import math

import pytest
import torch

import headstart.training.loop as loop
from headstart.strategies import get_strategy
from headstart.training import FitContext
from training_support import TinyImageBackbone, TinyTextBackbone, color_images, sentiment_texts


class CountingTextBackbone(TinyTextBackbone):
    """Counts the batches its network runs on."""

    def __init__(self) -> None:
        super().__init__()
        self.forward_calls = 0

    def forward(self, batch):
        self.forward_calls += 1
        return super().forward(batch)


class Crash(Exception):
    pass


def weights(model):
    return {**{f"body.{k}": v for k, v in model.backbone.module.state_dict().items()},
            **{f"head.{k}": v for k, v in model.head.state_dict().items()}}


def assert_same_weights(model, reference, atol=1e-7):
    expected = weights(reference)
    for key, value in weights(model).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=atol, msg=key)


def test_head_stage_runs_the_backbone_once_per_example_not_per_batch(tmp_path):
    data = sentiment_texts(30)
    train, val = data.subset(range(22)), data.subset(range(22, 30))
    backbone = CountingTextBackbone()
    model = get_strategy("finetune", batch_size=4, head_epochs=6, epochs=0, min_steps=0, patience=None).fit(
        backbone, train, val, FitContext(tmp_path, progress=False))
    assert model.metrics["train"]["stages_run"] == ["head"]
    # One extraction pass over the training and the validation examples, instead of 6 epochs x 6 batches
    # plus 6 validations.
    assert backbone.forward_calls == 0, "the strategy trains a copy; the caller's backbone is untouched"
    copied = model.backbone
    assert copied.forward_calls == math.ceil(22 / 4) + math.ceil(8 / 4)
    assert len(model.metrics["train"]["history"]) == 6
    assert all("val_accuracy" in record for record in model.metrics["train"]["history"])


@pytest.mark.parametrize("make_data", [lambda: sentiment_texts(30), lambda: color_images(30)])
def test_cached_features_give_the_result_of_running_the_backbone(tmp_path, monkeypatch, make_data):
    data = make_data()
    train, val = data.subset(range(22)), data.subset(range(22, 30))
    backbone = TinyTextBackbone() if data.modality == "text" else TinyImageBackbone()
    settings = {"batch_size": 4, "head_epochs": 3, "epochs": 2, "min_steps": 0, "patience": None, "augment": "off"}
    cached = get_strategy("finetune", **settings).fit(backbone, train, val, FitContext(tmp_path / "a", progress=False))
    monkeypatch.setattr(loop, "uses_frozen_features", lambda *args: False)
    direct = get_strategy("finetune", **settings).fit(backbone, train, val, FitContext(tmp_path / "b", progress=False))
    assert_same_weights(cached, direct, atol=1e-5)
    for ours, theirs in zip(cached.metrics["train"]["history"], direct.metrics["train"]["history"], strict=True):
        assert ours["val_accuracy"] == theirs["val_accuracy"]
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)


def test_augmented_image_batches_still_run_the_backbone(tmp_path, monkeypatch):
    calls = []
    original = loop.FrozenFeatures
    monkeypatch.setattr(loop, "FrozenFeatures", lambda *a, **k: calls.append(1) or original(*a, **k))
    data = color_images(20)
    get_strategy("finetune", batch_size=8, head_epochs=2, epochs=1, min_steps=0, augment="light").fit(
        TinyImageBackbone(), data, None, FitContext(tmp_path, progress=False))
    assert not calls


def run_text(work, **settings):
    data = sentiment_texts(30)
    return get_strategy("finetune", batch_size=4, head_epochs=4, epochs=3, min_steps=0, patience=None, lr=1e-3,
                        **settings).fit(TinyTextBackbone(), data.subset(range(22)), data.subset(range(22, 30)),
                                        FitContext(work, progress=False))


def test_checkpoints_are_written_at_stage_ends_within_the_interval(tmp_path, monkeypatch):
    serials = []
    original = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", lambda folder, state, tensors: serials.append(
        (state["stage"], state["stage_epoch"])) or original(folder, state, tensors))
    run_text(tmp_path / "a", checkpoint_seconds=3600)
    assert serials == [(1, 0), (2, 0)], "one checkpoint per stage end, none in between"
    serials.clear()
    run_text(tmp_path / "b", checkpoint_seconds=0)
    assert len(serials) == 7, "checkpoint_seconds=0 writes one after every epoch"


@pytest.mark.parametrize(("interval", "crash_at"), [(0, 2), (0, 5), (3600, 1)])
def test_resume_from_the_last_checkpoint_replays_to_the_same_weights(tmp_path, monkeypatch, interval, crash_at):
    reference = run_text(tmp_path / "reference", checkpoint_seconds=interval)
    original = loop.save_checkpoint

    def crash_after(folder, state, tensors):
        original(folder, state, tensors)
        if state["serial"] == crash_at:
            raise Crash

    monkeypatch.setattr(loop, "save_checkpoint", crash_after)
    with pytest.raises(Crash):
        run_text(tmp_path / "run", checkpoint_seconds=interval)
    monkeypatch.setattr(loop, "save_checkpoint", original)
    # A resumed run may checkpoint at another interval: it is still the same run.
    resumed = run_text(tmp_path / "run", checkpoint_seconds=60)
    train = resumed.metrics["train"]
    assert train["resumed_from_epoch"] is not None and train["resumed_from_epoch"] > 0
    def timeless(history):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in history]

    assert timeless(train["history"]) == timeless(reference.metrics["train"]["history"])
    assert_same_weights(resumed, reference)
    assert train["best_epoch"] == reference.metrics["train"]["best_epoch"]
