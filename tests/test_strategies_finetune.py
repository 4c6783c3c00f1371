"""Each loop-trained strategy learns, and does what its paper says it does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headstart
from headstart.backbones.features import extract_features
from headstart.errors import ConfigError
from headstart.model import TransferModel
from headstart.strategies import get_strategy
from headstart.strategies.base import new_head
from headstart.strategies.linear import fit_linear_head
from headstart.training import FitContext
from training_support import TinyImageBackbone, TinyTextBackbone, color_images, sentiment_texts, state

# min_steps=0: the tiny data sets would otherwise have their default epochs raised many times over.
FAST = {"batch_size": 16, "patience": None, "min_steps": 0}


def split(data, n_train):
    return data.subset(range(n_train)), data.subset(range(n_train, len(data)))


@pytest.fixture
def context(tmp_path):
    return FitContext(tmp_path / "work", progress=False)


@pytest.fixture
def recorded_optimizers(monkeypatch):
    """Every AdamW the loop builds, in order (one per stage)."""
    built = []

    class Recording(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    return built


@pytest.mark.parametrize("name", ["finetune", "l2sp", "gradual", "lp-ft", "lora", "scratch"])
def test_image_strategies_beat_chance(name, context):
    train, val = split(color_images(60), 45)
    overrides = {"epochs": 4, "lr": 2e-2, "head_lr": 2e-2} if name in {"finetune", "l2sp", "gradual"} else {
        "epochs": 4, "lr": 2e-2 if name != "lp-ft" else 1e-3}
    model = get_strategy(name, **FAST, **overrides).fit(TinyImageBackbone(), train, val, context)
    accuracy = np.mean(np.array(model.predict(val.items)) == np.array(val.class_names)[val.labels])
    assert accuracy > 0.6, model.metrics["train"]["history"]
    # lp-ft keeps its probe (and the untouched backbone) when fine-tuning does not beat it on validation.
    assert model.backbone_trained == (model.strategy_config.get("kept", "fine-tuned") == "fine-tuned")
    assert model.strategy == name and model.metrics["train"]["history"]


@pytest.mark.parametrize("name", ["finetune", "lora"])
def test_text_strategies_beat_chance(name, context):
    train, val = split(sentiment_texts(60), 45)
    model = get_strategy(name, **FAST, epochs=5, lr=1e-2 if name == "lora" else 3e-3, layer_decay=1.0
                         ).fit(TinyTextBackbone(), train, val, context)
    accuracy = np.mean(np.array(model.predict(val.items)) == np.array(val.class_names)[val.labels])
    assert accuracy > 0.7, model.metrics["train"]["history"]


def test_defaults_follow_modality():
    image = get_strategy("finetune").config.resolve("image")
    text = get_strategy("finetune").config.resolve("text")
    assert (image.augment, text.augment) == ("light", "off")
    assert image.lr > text.lr
    assert get_strategy("finetune", lr=0.5).config.resolve("text").lr == 0.5


def test_frozen_batchnorm_statistics_do_not_move_in_head_stage(context):
    backbone = TinyImageBackbone()
    before = state(backbone.module)
    model = get_strategy("finetune", **FAST, head_epochs=2, epochs=0).fit(backbone, color_images(30), None, context)
    after = model.backbone.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running stats
    assert not torch.equal(model.head.weight, new_head(16, 3, seed=0).weight)  # while the head trained


def test_unfrozen_stage_updates_batchnorm_statistics(context):
    backbone = TinyImageBackbone()
    before = state(backbone.module)
    model = get_strategy("finetune", **FAST, head_epochs=1, epochs=1).fit(backbone, color_images(30), None, context)
    assert not torch.equal(model.backbone.module[0][1].running_mean, before["0.1.running_mean"])


def test_layerwise_learning_rates_decrease_toward_the_bottom(context, recorded_optimizers):
    get_strategy("finetune", **FAST, head_epochs=1, epochs=1, lr=1e-2, layer_decay=0.5).fit(
        TinyTextBackbone(), sentiment_texts(20), None, context)
    head_stage, full_stage = recorded_optimizers
    assert {g["name"] for g in head_stage.param_groups} == {"head"}
    rates = {g["name"]: g["base_lr"] for g in full_stage.param_groups}
    # embeddings (group0) < layer 0 (group1) < layer 1 (group2) == head, each a factor 0.5 apart
    assert rates["head"] == rates["group2"] == pytest.approx(1e-2)
    assert rates["group1"] == pytest.approx(5e-3) and rates["group0"] == pytest.approx(2.5e-3)


def test_gradual_unfreezes_one_group_per_stage_top_down(context, recorded_optimizers):
    model = get_strategy("gradual", **FAST, epochs=1).fit(TinyTextBackbone(), sentiment_texts(20), None, context)
    trained = [sorted({g["name"] for g in opt.param_groups}) for opt in recorded_optimizers]
    assert trained == [["head"], ["group2", "head"], ["group1", "group2", "head"],
                       ["group0", "group1", "group2", "head"]]
    assert model.metrics["train"]["stages"] == ["head", "top-1", "top-2", "all"]


def test_lpft_starts_from_the_linear_probe(context):
    train = color_images(30)
    backbone = TinyImageBackbone()
    features = extract_features(backbone, train)
    probe, _ = fit_linear_head(features, train.labels, 3, c=1.0)
    model = get_strategy("lp-ft", **FAST, epochs=0, probe_c=1.0).fit(backbone, train, None, context)
    assert torch.allclose(model.head.weight, probe.weight.float()) and torch.allclose(model.head.bias,
                                                                                      probe.bias.float())


def test_lpft_keeps_the_probe_when_fine_tuning_is_worse_on_validation(context):
    train, val = split(color_images(60), 45)
    backbone = TinyImageBackbone()
    before = state(backbone.module)
    # A learning rate this large wrecks the features: validation must prefer the probe.
    model = get_strategy("lp-ft", **FAST, epochs=2, lr=50.0, grad_clip=None, probe_c=1.0).fit(
        backbone, train, val, context)
    assert model.strategy_config["kept"] == "probe" and not model.backbone_trained
    probe, _ = fit_linear_head(extract_features(backbone, train), train.labels, 3, c=1.0)
    assert torch.allclose(model.head.weight, probe.weight.float())
    assert all(torch.equal(before[k], v) for k, v in state(model.backbone.module).items())
    assert model.metrics["train"]["probe"]["val_accuracy"] >= model.metrics["train"]["best"]["val_accuracy"]


@pytest.mark.parametrize("make", [(TinyImageBackbone, color_images), (TinyTextBackbone, sentiment_texts)])
def test_lora_trains_only_adapters_and_head_and_reloads_exactly(make, context, recorded_optimizers, tmp_path):
    backbone_class, data = make
    train = data(24)
    model = get_strategy("lora", **FAST, epochs=2, lr=1e-2, rank=2).fit(backbone_class(), train, None, context)
    head_stage, lora_stage = recorded_optimizers
    assert {g["name"] for g in head_stage.param_groups} == {"head"}
    optimized = sum(p.numel() for g in lora_stage.param_groups for p in g["params"])
    adapter = model.metrics["train"]["adapter_parameters"]
    assert adapter > 0 and optimized == adapter + model.metrics["train"]["head_parameters"]
    assert not any("lora" in k for k in model.backbone.module.state_dict())  # merged into the base weights
    changed = [k for k, v in model.backbone.module.state_dict().items()
               if not torch.equal(v, backbone_class().module.state_dict()[k])]
    assert changed  # the merged adapters changed base weights
    reloaded = TransferModel.load(model.save(tmp_path / "saved"))
    np.testing.assert_allclose(reloaded.predict_proba(train.items[:8]), model.predict_proba(train.items[:8]),
                               rtol=1e-5, atol=1e-6)


def test_l2sp_pulls_weights_toward_pretrained(tmp_path):
    train = color_images(30)

    def distance(name, **overrides):
        model = get_strategy(name, **FAST, head_epochs=0, epochs=3, lr=3e-2, **overrides).fit(
            TinyImageBackbone(), train, None, FitContext(tmp_path / name, progress=False))
        init = TinyImageBackbone().module.state_dict()
        return sum(float(((p.detach() - init[k]) ** 2).sum()) for k, p in model.backbone.module.named_parameters())

    assert distance("l2sp", l2sp=5.0) < 0.7 * distance("finetune")


def test_scratch_reinitialises_the_backbone(context):
    pretrained = TinyImageBackbone(seed=7)
    model = get_strategy("scratch", **FAST, epochs=0).fit(pretrained, color_images(12), None, context)
    for name, weight in model.backbone.module.named_parameters():
        if weight.ndim > 1:
            assert not torch.equal(weight, dict(pretrained.module.named_parameters())[name]), name


def test_a_backbone_without_trainable_weights_is_refused_before_training():
    class FrozenOnly(TinyImageBackbone):
        trainable = False

    with pytest.raises(ConfigError, match="has no trainable weights.*finetune cannot train it"):
        headstart.fit(color_images(12), backbone=FrozenOnly(), strategy="finetune", progress=False)
    assert headstart.fit(color_images(12), backbone=FrozenOnly(), progress=False).backbone_trained is False
