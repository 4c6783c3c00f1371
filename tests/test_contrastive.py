"""The contrastive losses (SupCon, SetFit's cosine pairs) and the contrastive strategy on tiny backbones."""

from __future__ import annotations

import math

import pytest
import torch

import headstart
from headstart.data import DataSplits
from headstart.strategies.contrastive import cosine_pair_loss, interpolate_weights, supervised_contrastive_loss
from headstart.strategies.heads import prototype_head
from training_support import TinyTextBackbone, sentiment_texts


def test_supcon_matches_its_definition_on_a_small_batch() -> None:
    features = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2])
    unit = torch.nn.functional.normalize(features, dim=1)
    sims = unit @ unit.T / 0.5
    # Only examples 0 and 1 have a positive (each other).
    by_hand = [-(sims[i, j] - torch.logsumexp(torch.cat([sims[i, :i], sims[i, i + 1:]]), 0))
               for i, j in ((0, 1), (1, 0))]
    expected = torch.stack(by_hand).mean().item()
    assert supervised_contrastive_loss(features, labels, 0.5).item() == pytest.approx(expected)


def test_supcon_is_lower_when_classes_are_apart_and_zero_without_positives() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    assert supervised_contrastive_loss(apart, labels, 0.1) < supervised_contrastive_loss(mixed, labels, 0.1)
    assert supervised_contrastive_loss(apart, torch.arange(4), 0.1).item() == 0.0


def test_steps_follow_the_data_size_within_bounds() -> None:
    strategy = headstart.get_strategy("contrastive", batch_size=8)
    small, large = strategy.resolve("text", 16), strategy.resolve("text", 4000)
    assert small.epochs == 20  # 20 passes over 16 examples: 40 steps at 2 per epoch
    assert strategy.resolve("text", 4).epochs == 20  # 10 steps raised to min_steps 20, 1 per epoch
    assert large.epochs * math.ceil(4000 / 8) <= 300 + math.ceil(4000 / 8)  # max_steps bounds the work
    assert headstart.get_strategy("contrastive", epochs=3).resolve("text", 16).epochs == 3


def test_contrastive_fit_trains_the_backbone_then_a_probe() -> None:
    data = sentiment_texts(40)
    splits = DataSplits(data.subset(range(24)), None, data.subset(range(24, 40)))
    model = headstart.fit(splits, backbone=TinyTextBackbone(), strategy="contrastive", progress=False,
                          settings={"batch_size": 8, "min_steps": 6, "max_steps": 6, "lr": 1e-3})
    train = model.metrics["train"]
    assert model.backbone_trained and train["stages"] == ["contrastive"] and len(train["history"]) == 2
    assert "C" in train["probe"] and model.metrics["test"]["n_examples"] == 16


def test_contrastive_prototype_head_is_the_nearest_tuned_class_mean() -> None:
    data = sentiment_texts(40)
    splits = DataSplits(data.subset(range(24)), None, data.subset(range(24, 40)))
    model = headstart.fit(splits, backbone=TinyTextBackbone(), strategy="contrastive", progress=False,
                          settings={"batch_size": 8, "min_steps": 6, "max_steps": 6, "lr": 1e-3,
                                    "head": "prototypes"})
    features = model.backbone.embed(splits.train.items, batch_size=8)
    expected, _ = prototype_head(features, splits.train.labels, len(splits.train.class_names))
    assert torch.allclose(model.head.weight, expected.weight.float(), atol=1e-5)
    assert "probe" not in model.metrics["train"] and model.strategy_config["scale"] > 0


def test_cosine_pair_loss_weights_positive_and_negative_pairs_equally() -> None:
    features = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2])
    # One positive pair (cosine 0.8) and five negative pairs (cosines 0, -1, 0.6, -0.8, 0), each counted twice.
    positives = (0.8 - 1.0) ** 2
    negatives = (0.0 + 1.0 + 0.36 + 0.64 + 0.0) / 5
    assert cosine_pair_loss(features, labels).item() == pytest.approx((positives + negatives) / 2)
    apart = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    assert cosine_pair_loss(apart, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.0, abs=1e-7)


def test_interpolation_averages_the_tuned_and_pretrained_weights() -> None:
    pretrained, tuned = TinyTextBackbone(), TinyTextBackbone()
    with torch.no_grad():
        for parameter in tuned.module.parameters():
            parameter.add_(1.0)
    before = {name: value.clone() for name, value in tuned.module.state_dict().items()}
    interpolate_weights(tuned, pretrained, 0.25)
    for name, value in pretrained.module.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(tuned.module.state_dict()[name], 0.25 * before[name] + 0.75 * value)


def test_loss_and_interpolation_settings_reach_the_fit() -> None:
    data = sentiment_texts(40)
    splits = DataSplits(data.subset(range(24)), None, data.subset(range(24, 40)))
    settings = {"batch_size": 8, "min_steps": 6, "max_steps": 6, "lr": 1e-3, "loss": "supcon"}
    full = headstart.fit(splits, backbone=TinyTextBackbone(), strategy="contrastive", progress=False, seed=0,
                         settings=settings)
    none = headstart.fit(splits, backbone=TinyTextBackbone(), strategy="contrastive", progress=False, seed=0,
                         settings={**settings, "interpolate": 0.0})
    assert full.strategy_config["loss"] == "supcon" and none.strategy_config["interpolate"] == 0.0
    pretrained = TinyTextBackbone().module.state_dict()
    assert any(not torch.equal(value, pretrained[name]) for name, value in full.backbone.module.state_dict().items())
    assert all(torch.equal(value, pretrained[name]) for name, value in none.backbone.module.state_dict().items())
