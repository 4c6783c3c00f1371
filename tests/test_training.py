"""The shared training loop: schedules, early stopping, time budget, best epoch, reproducibility."""

from __future__ import annotations

import math
import random
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from headstart.strategies import get_strategy
from headstart.training import FitContext, Stage
from headstart.training.callbacks import TimeBudget
from headstart.training.early_stopping import EarlyStopping
from headstart.training.outcome import stop_message
from headstart.training.schedules import lr_factor
from training_support import TinyImageBackbone, color_images

FAST = {"batch_size": 16, "head_epochs": 0}


def test_cosine_warms_up_then_decays_to_zero():
    factors = [lr_factor("cosine", s, 100, 10) for s in range(100)]
    assert factors[0] < factors[5] < factors[9] < 1.0
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] < 1e-3


def test_onecycle_and_constant():
    onecycle = [lr_factor("onecycle", s, 100, 0) for s in range(100)]
    assert onecycle[0] == pytest.approx(1 / 25) and max(onecycle) == pytest.approx(1.0, abs=1e-3)
    assert onecycle[-1] < 1e-3
    assert lr_factor("constant", 50, 100, 10) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("linear", 0, 10, 0)  # type: ignore[arg-type]


def test_early_stopping_state():
    stopper = EarlyStopping("val_loss", patience=2)
    assert stopper.update({"val_loss": 1.0}, 0) and not stopper.update({"val_loss": 1.5}, 1)
    assert not stopper.should_stop and not stopper.update({"val_loss": 1.2}, 2) and stopper.should_stop
    restored = EarlyStopping("val_loss", None)
    restored.load_state_dict(stopper.state_dict())
    assert restored == stopper


def test_an_accuracy_tie_with_a_lower_loss_becomes_best_without_renewing_patience():
    stopper = EarlyStopping("val_accuracy", patience=2)
    assert stopper.update({"val_accuracy": 1.0, "val_loss": 0.5}, 0)
    assert stopper.update({"val_accuracy": 1.0, "val_loss": 0.1}, 1) and stopper.best_epoch == 1
    assert not stopper.update({"val_accuracy": 1.0, "val_loss": 0.3}, 2) and stopper.best_epoch == 1
    assert stopper.should_stop  # two epochs without a better accuracy, although one tie won on loss
    assert not EarlyStopping("val_loss", None).update({"val_loss": math.nan}, 0)


@pytest.mark.parametrize(("min_steps", "epochs_run"), [(0, 3), (10, 5)])
def test_early_stopping_stops_training_once_min_steps_are_done(tmp_path, min_steps, epochs_run):
    # 20 examples in batches of 16: 2 steps per epoch. Nothing improves after epoch 0, so patience 2 ends the
    # stage after 3 epochs, unless min_steps (10 steps = 5 epochs) are not done by then.
    data = color_images(30)
    model = get_strategy("finetune", **FAST, epochs=20, lr=1e-12, patience=2, min_steps=min_steps).fit(
        TinyImageBackbone(), data.subset(range(20)), data.subset(range(20, 30)),
        FitContext(tmp_path, progress=False))
    train = model.metrics["train"]
    assert train["stop_reason"] == "early_stopping" and len(train["history"]) == epochs_run
    assert train["best_epoch"] == 0


def test_max_time_stops_cleanly(tmp_path):
    data = color_images(60)
    model = get_strategy("finetune", **FAST, epochs=50).fit(
        TinyImageBackbone(), data.subset(range(45)), data.subset(range(45, 60)),
        FitContext(tmp_path, progress=False, max_time=0.0))
    train = model.metrics["train"]
    assert train["stop_reason"] == "max_time" and len(train["history"]) == 1
    assert train["history"][0]["partial"] and train["best_epoch"] == 0


def test_best_epoch_weights_are_kept(tmp_path):
    data = color_images(60)
    val = data.subset(range(45, 60))
    model = get_strategy("finetune", **FAST, epochs=4, lr=5e-2, patience=None, monitor="val_loss").fit(
        TinyImageBackbone(), data.subset(range(45)), val, FitContext(tmp_path, progress=False))
    train = model.metrics["train"]
    losses = [h["val_loss"] for h in train["history"]]
    assert train["best_epoch"] == int(np.argmin(losses))
    logits = torch.from_numpy(model.logits(val.items))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(val.labels)).item()
    assert loss == pytest.approx(min(losses), rel=1e-4)


def test_same_seed_same_weights_and_caller_rng_untouched(tmp_path):
    data = color_images(30)

    def run(folder):
        return get_strategy("finetune", **FAST, epochs=2).fit(TinyImageBackbone(), data, None,
                                                              FitContext(tmp_path / folder, progress=True))

    random.seed(1)
    torch.manual_seed(1)
    first = run("a")
    after = (random.random(), torch.rand(1).item())
    random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), torch.rand(1).item())
    assert after == expected
    second = run("b")
    for key, value in first.backbone.module.state_dict().items():
        assert torch.equal(value, second.backbone.module.state_dict()[key]), key
    assert torch.equal(first.head.weight, second.head.weight)


def test_timm_backbone_fine_tunes(tmp_path, tiny_timm_ref):
    from headstart.backbones import create_backbone
    from headstart.data.base import Dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 90, size=(24, 32, 32, 3)).astype(np.uint8)
    labels = np.arange(24) % 2
    images[labels == 1, ..., 0] += 150
    data = Dataset(list(images), labels, ["a", "b"], "image")
    backbone = create_backbone(tiny_timm_ref)
    model = get_strategy("finetune", batch_size=8, head_epochs=1, epochs=1).fit(
        backbone, data, None, FitContext(tmp_path, progress=False))
    assert len(model.metrics["train"]["history"]) == 2
    assert model.predict_proba(data.items[:4]).shape == (4, 2)


def test_a_budget_spent_in_the_head_stage_says_the_backbone_was_not_trained(tmp_path):
    data = color_images(60)
    model = get_strategy("finetune", batch_size=16, head_epochs=3, epochs=2).fit(
        TinyImageBackbone(), data.subset(range(45)), data.subset(range(45, 60)),
        FitContext(tmp_path, progress=False, max_time=0.0))
    train = model.metrics["train"]
    assert (train["stop_reason"], train["stages_run"], train["stopped_in_stage"]) == ("max_time", ["head"], "head")
    assert not model.backbone_trained
    assert model.strategy_config["stages_run"] == ["head"] and model.strategy_config["stop_reason"] == "max_time"
    assert stop_message(train, backbone_trained=False, budget="--max-time") == (
        "stopped by --max-time during the head stage: the backbone was not trained")


def test_a_completed_run_trains_the_backbone_and_needs_no_stop_message(tmp_path):
    data = color_images(30)
    model = get_strategy("finetune", batch_size=16, head_epochs=1, epochs=1).fit(
        TinyImageBackbone(), data, None, FitContext(tmp_path, progress=False))
    train = model.metrics["train"]
    assert train["stages_run"] == ["head", "all"] and model.backbone_trained
    assert stop_message(train, backbone_trained=True) is None


@pytest.mark.parametrize(("stage", "elapsed", "stops"), [(0, 30, True), (0, 10, False), (1, 90, False)])
def test_the_head_stage_gets_at_most_a_share_of_the_budget(stage, elapsed, stops):
    loop = SimpleNamespace(stages=[Stage("head", 50, 0, 1e-3), Stage("all", 5, None, 1e-3)], stage=stage,
                           started=time.monotonic() - elapsed, accelerator=SimpleNamespace(num_processes=1),
                           stopped=False)
    loop.stop_stage = lambda: setattr(loop, "stopped", True)
    TimeBudget(100.0, head_share=0.25).on_epoch_end(loop, {})
    assert loop.stopped is stops
