"""Image backbones under engine int8: a static graph calibrated on the first images extracted, cached by those
images, features cached apart from float32 ones, and a saved model predicting with the graph it was fitted with."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnxruntime.quantization
import pytest
import torch

import headstart
import headstart.backbones.base as base
import headstart.backbones.engine as engine
from conftest import TINY_PREPROCESS
from headstart.backbones import FeatureCache, create_backbone, extract_features, timed_features
from headstart.backbones.int8 import calibration_digest
from headstart.data import Dataset, load_dataset
from headstart.errors import HeadstartWarning
from headstart.io import caching

IMAGES = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8) for i in range(20)]
# Measured on the tiny backbone: lowest cosine to the float32 features 0.996 over these images.
MIN_COSINE = 0.98


def int8_backbone(ref: str):
    backbone = create_backbone(ref, preprocess=TINY_PREPROCESS)
    backbone.engine = "int8"
    return backbone


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def torch_features(ref: str, images) -> np.ndarray:
    backbone = create_backbone(ref, preprocess=TINY_PREPROCESS)
    backbone.engine = "torch"
    return backbone.embed(images)


def test_a_static_graph_is_calibrated_on_the_first_images_and_reused(tiny_timm_ref, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "CALIBRATION_EXAMPLES", 12)  # batches of 5: the sample spans three of them
    backbone = int8_backbone(tiny_timm_ref)
    fingerprint = backbone.fingerprint()
    assert backbone.features_key() is None, "features of a graph not yet calibrated cannot be named"
    with caching(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("error", HeadstartWarning)
        quantized = backbone.embed(IMAGES, batch_size=5)
    digest = calibration_digest(backbone.collate(IMAGES[:12]).numpy())
    graph = tmp_path / "onnx" / f"{fingerprint}-static-pads-int8-static-{digest}.onnx"
    assert sorted((tmp_path / "onnx").glob("*.onnx")) == [graph, tmp_path / "onnx" / f"{fingerprint}-static-pads.onnx"]
    assert backbone.features_key() == f"{fingerprint}-int8-{digest}"
    assert cosines(quantized, torch_features(tiny_timm_ref, IMAGES)).min() > MIN_COSINE

    def no_quantizing(*args, **kwargs):
        raise AssertionError("the cached static graph should have been used")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", no_quantizing)
    with caching(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("error", HeadstartWarning)
        again = int8_backbone(tiny_timm_ref).embed(IMAGES, batch_size=5)
    np.testing.assert_allclose(again, quantized, atol=1e-6)


def test_other_first_images_make_another_graph_and_features_key(tiny_timm_ref, tmp_path):
    first, other = int8_backbone(tiny_timm_ref), int8_backbone(tiny_timm_ref)
    with caching(tmp_path):
        first.embed(IMAGES[:10])
        other.embed(IMAGES[10:])
    assert len(list((tmp_path / "onnx").glob("*-int8-static-*.onnx"))) == 2
    assert first.features_key() != other.features_key()


def test_int8_image_features_are_cached_apart_under_their_calibration(tiny_timm_ref, tmp_path, image_folder):
    dataset = load_dataset(image_folder).train
    cache = FeatureCache(tmp_path / "cache")
    quantized, plain = int8_backbone(tiny_timm_ref), create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    with caching(cache.root):
        int8_features = extract_features(quantized, dataset, cache=cache)
        float_features = extract_features(plain, dataset, cache=cache)
        assert cache.path(quantized, dataset) != cache.path(plain, dataset)
        np.testing.assert_array_equal(cache.load(quantized, dataset), int8_features)
        np.testing.assert_array_equal(cache.load(plain, dataset), float_features)
        assert not np.array_equal(int8_features, float_features)
        assert cache.load(int8_backbone(tiny_timm_ref), dataset) is None, "its calibration is not known yet"


def test_a_failed_static_parity_check_falls_back_to_pytorch_and_caches_nothing(tiny_timm_ref, tmp_path,
                                                                             image_folder, monkeypatch):
    monkeypatch.setattr(engine, "INT8_STATIC_MIN_COSINE", 1.5)  # no graph can pass
    dataset = load_dataset(image_folder).train
    cache = FeatureCache(tmp_path / "cache")
    backbone = int8_backbone(tiny_timm_ref)
    with caching(cache.root), pytest.warns(HeadstartWarning, match="using PyTorch"):
        features = extract_features(backbone, dataset, cache=cache)
    np.testing.assert_allclose(features, torch_features(tiny_timm_ref, dataset.items), atol=1e-5)
    assert backbone.features_key() is None
    assert not (cache.root / "features").exists()


def test_a_saved_model_predicts_with_the_graph_calibrated_on_its_training_images(tiny_timm_ref, tmp_path,
                                                                               image_folder):
    backbone = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    with caching(tmp_path / "cache"):
        model = headstart.fit(image_folder, backbone=backbone, engine="int8", out=tmp_path / "model",
                              cache=tmp_path / "cache", progress=False, strategy="linear")
        graphs = sorted((tmp_path / "cache" / "onnx").glob("*-int8-static-*.onnx"))
        assert len(graphs) == 1
        calibration = json.loads((tmp_path / "model" / "config.json").read_text())["backbone"]["int8_calibration"]
        assert graphs[0].name.endswith(f"-{calibration}.onnx")
        loaded = headstart.load(tmp_path / "model")
        with warnings.catch_warnings():
            warnings.simplefilter("error", HeadstartWarning)
            probabilities = loaded.predict_proba(IMAGES[:3])  # three images: no graph calibrated on them
        np.testing.assert_allclose(probabilities, model.predict_proba(IMAGES[:3]), atol=1e-5)
        assert sorted((tmp_path / "cache" / "onnx").glob("*-int8-static-*.onnx")) == graphs
        graphs[0].unlink()
        with pytest.warns(HeadstartWarning, match="not in the cache folder"):
            headstart.load(tmp_path / "model").predict_proba(IMAGES[:3])


def test_first_examples_gives_back_every_batch_in_order():
    batches = [torch.arange(i, i + 3) for i in range(0, 9, 3)]
    sample, again = engine.first_examples(iter(batches), 4)
    assert sample.tolist() == [0, 1, 2, 3]
    assert [b.tolist() for b in again] == [b.tolist() for b in batches]
    assert engine.first_examples(iter([]), 4)[0] is None


def test_timed_extraction_calibrates_on_the_first_images_not_on_its_warm_up_one(tiny_timm_ref, tmp_path, monkeypatch):
    # auto times its features' extraction after an untimed warm-up; under int8 that warm-up must not be what the
    # graph is calibrated on (one image's activation ranges), but the same first images as a plain extraction.
    monkeypatch.setattr(base, "CALIBRATION_EXAMPLES", 12)
    data = Dataset(IMAGES, np.arange(len(IMAGES)) % 2, ["a", "b"], "image")
    backbone = int8_backbone(tiny_timm_ref)
    with caching(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("error", HeadstartWarning)
        features, seconds = timed_features(backbone, data, cache=FeatureCache(tmp_path / "features"), batch_size=5)
    digest = calibration_digest(backbone.collate(IMAGES[:12]).numpy())
    assert backbone.features_key() == f"{backbone.fingerprint()}-int8-{digest}"
    assert seconds > 0 and features.shape[0] == len(IMAGES)
