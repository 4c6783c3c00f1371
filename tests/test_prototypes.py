"""The prototypes strategy and prototype head initialisation; one-shot data through fit and compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

import headstart
from headstart.data import DataSplits, sample_per_class
from headstart.errors import DataError
from headstart.strategies.heads import prototype_head
from training_support import TinyImageBackbone, color_images


def _blobs(per_class: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=per_class * 3, centers=3, n_features=6, cluster_std=2.0, random_state=seed)
    return x + 5.0, y  # off-centre, so centring matters


def _scaled_cosine_classes(x: np.ndarray, y: np.ndarray, queries: np.ndarray, standardize: float) -> np.ndarray:
    """Nearest centred class mean by cosine after dividing each dimension by its blended spread, in numpy."""
    std = x.std(0)
    scale = standardize * std + (1 - standardize) * std.mean()
    z, q = x / scale, queries / scale
    centred, queries_centred = z - z.mean(0), q - z.mean(0)
    means = np.stack([centred[y == c].mean(0) for c in range(y.max() + 1)])
    units = means / np.linalg.norm(means, axis=1, keepdims=True)
    return ((queries_centred / np.linalg.norm(queries_centred, axis=1, keepdims=True)) @ units.T).argmax(1)


def _predicted(head: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(x).float()).argmax(1).numpy()


def _uneven_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Blobs plus dimensions of very different spreads, so that the scaling changes some predictions."""
    x, y = _blobs(per_class=40, seed=seed)
    noise = np.random.default_rng(seed).normal(size=(len(x), 4)) * np.array([30.0, 10.0, 0.1, 0.01])
    return np.hstack([x, noise]), y


@pytest.mark.parametrize("standardize", [0.0, 0.5, 1.0])
def test_the_head_predicts_the_nearest_scaled_centred_class_mean_by_cosine(standardize: float) -> None:
    x, y = _uneven_blobs()
    queries, _ = _uneven_blobs(seed=1)
    head, info = prototype_head(x, y, 3, standardize=standardize)
    assert (_predicted(head, queries) == _scaled_cosine_classes(x, y, queries, standardize)).all()
    assert info["scale"] > 0 and 0.4 < info["loo_accuracy"] <= 1.0


def test_standardize_changes_predictions_where_spreads_differ() -> None:
    x, y = _uneven_blobs()
    queries, _ = _uneven_blobs(seed=1)
    plain, scaled = (_predicted(prototype_head(x, y, 3, standardize=m)[0], queries) for m in (0.0, 1.0))
    assert (plain != scaled).any()  # else the tests above could not tell the scaling from the plain cosine


def test_standardize_zero_is_the_plain_cosine_of_centred_features() -> None:
    x, y = _blobs()
    head, _ = prototype_head(x, y, 3, standardize=0.0)
    centred = x - x.mean(0)
    means = np.stack([centred[y == c].mean(0) for c in range(3)])
    units = means / np.linalg.norm(means, axis=1, keepdims=True)
    cosines = (centred / np.linalg.norm(centred, axis=1, keepdims=True)) @ units.T
    assert (_predicted(head, x) == cosines.argmax(1)).all()


def test_the_scale_is_fitted_by_leave_one_out_and_calibrates() -> None:
    x, y = _blobs(per_class=30)
    head, info = prototype_head(x, y, 3)
    with torch.no_grad():
        proba = torch.softmax(head(torch.from_numpy(x).float()), 1).numpy()
    # Confidence tracks accuracy on well-separated blobs: neither near-uniform nor saturated everywhere.
    confidence = proba.max(1).mean()
    accuracy = (proba.argmax(1) == y).mean()
    assert abs(confidence - accuracy) < 0.15


def test_one_example_per_class_and_an_empty_class() -> None:
    x, y = _blobs(per_class=1)
    head, info = prototype_head(x, y, 4)
    assert np.isnan(info["loo_accuracy"]) and info["scale"] > 0
    with torch.no_grad():
        assert (head(torch.from_numpy(x).float()).argmax(1).numpy() == y).all()
        assert head.bias[3] < -1e3  # the class without examples is never predicted


def test_standardize_is_validated() -> None:
    with pytest.raises(headstart.errors.ConfigError, match="standardize"):
        headstart.get_strategy("prototypes", standardize=1.5)


def test_a_model_saved_with_the_removed_shrinkage_setting_still_loads(tmp_path) -> None:
    data = color_images(30)
    model = headstart.fit(DataSplits(data, None, data), backbone=TinyImageBackbone(), strategy="prototypes",
                          progress=False)
    folder = model.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["strategy_config"] = {k: v for k, v in config["strategy_config"].items() if k != "standardize"}
    (folder / "config.json").write_text(json.dumps({**config, "strategy_config": {
        **config["strategy_config"], "shrinkage": 0.0}}))
    reloaded = headstart.load(folder)
    assert reloaded.strategy_config["shrinkage"] == 0.0
    expected, got = (m.predict_proba(data.items[:6]) for m in (model, reloaded))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_prototypes_fit_on_one_shot_data_without_a_validation_split() -> None:
    data = color_images(60)
    train = sample_per_class(data.subset(range(30)), 1, seed=0)
    model = headstart.fit(DataSplits(train, None, data.subset(range(30, 60))), backbone=TinyImageBackbone(),
                          strategy="prototypes", progress=False)
    assert model.metrics["data"]["n_train"] == 3 and "val" not in model.metrics
    assert model.metrics["test"]["accuracy"] > 0.5


def test_a_strategy_that_selects_on_validation_refuses_one_shot_data_naming_the_ways_out() -> None:
    data = color_images(30)
    train = sample_per_class(data, 1, seed=0)
    with pytest.raises(DataError, match=r"finetune.*val_fraction=0.*prototypes"):
        headstart.fit(DataSplits(train, None, data), backbone=TinyImageBackbone(), strategy="finetune",
                      progress=False, val_fraction=0.15)


def test_prototype_head_initialises_finetune() -> None:
    data = color_images(30)
    splits = DataSplits(data, None, data)
    backbone = TinyImageBackbone()
    model = headstart.fit(splits, backbone=backbone, strategy="finetune", progress=False, val_fraction=0.0,
                          settings={"head_init": "prototypes", "epochs": 0, "head_epochs": 0, "min_steps": 0})
    expected, _ = prototype_head(backbone.embed(data.items), data.labels, len(data.class_names))
    assert torch.allclose(model.head.weight, expected.weight, atol=1e-5)


def test_compare_runs_prototypes_from_one_shot(image_folder, tiny_backbone) -> None:
    result = headstart.compare(image_folder, strategies=["prototypes", "linear"], shots=[1, 3], seeds=2,
                               backbone=tiny_backbone)
    assert {(r.strategy, r.size) for r in result.records} == {(s, k) for s in ("prototypes", "linear")
                                                              for k in (1.0, 3.0)}
