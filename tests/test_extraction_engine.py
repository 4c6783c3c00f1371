"""Frozen extraction engines: text encoders on ONNX Runtime (parity, fallback, int8) and fingerprints memoised
per weights version."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
import headstart.backbones.engine as engine
from headstart.backbones import build_backbone, create_backbone, with_engine
from headstart.errors import ConfigError, HeadstartWarning
from headstart.io import caching
from training_support import TinyTextBackbone

TEXTS = ["the cat sat on the mat", "stocks fell", "a", "the cat sat on the mat . the stocks fell sharply on monday",
         "monday"]


def torch_features(backbone, texts):
    backbone.engine = "torch"
    return backbone.embed(texts, batch_size=2)


def test_text_encoder_runs_on_onnx_runtime_with_dynamic_batch_and_sequence(tiny_bert: Path, tmp_path: Path):
    backbone = create_backbone(f"hf:{tiny_bert}")
    with caching(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("error", HeadstartWarning)
        fast = backbone.embed(TEXTS, batch_size=2)  # batches of 2 and 1, each padded to its own length
        again = backbone.embed(TEXTS[::-1], batch_size=3)
    assert backbone.extraction_engine._session is not None
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1, "exported once, cached"
    reference = torch_features(backbone, TEXTS)
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    np.testing.assert_allclose(again[::-1], reference, atol=1e-5)
    assert not backbone.module.training, "exporting must leave the encoder in evaluation mode"


@pytest.mark.parametrize("threads, runs", [(2, 2), (1, 1)])
def test_text_batches_run_concurrently_in_order_on_single_threaded_runs(tiny_bert, tmp_path, threads, runs):
    backbone = create_backbone(f"hf:{tiny_bert}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with caching(tmp_path):
            fast = backbone.embed(TEXTS * 3, batch_size=1)  # 15 batches: more than the 4 kept in flight
    finally:
        torch.set_num_threads(previous)
    session = backbone.extraction_engine._session[1]
    assert session.concurrent_runs == runs
    assert session.session.get_session_options().intra_op_num_threads == threads // runs
    np.testing.assert_allclose(fast, torch_features(backbone, TEXTS * 3), atol=1e-5)


def test_changed_weights_leave_onnx_runtime_under_auto(tiny_bert: Path, tmp_path: Path):
    backbone = create_backbone(f"hf:{tiny_bert}")
    with caching(tmp_path):
        backbone.embed(TEXTS[:2])
        with torch.no_grad():
            backbone.module.embeddings.word_embeddings.weight.mul_(3)
        changed = backbone.embed(TEXTS[:2])
    with torch.inference_mode():
        np.testing.assert_allclose(changed, backbone.forward(backbone.collate(TEXTS[:2])).numpy(), atol=1e-5)


@pytest.mark.parametrize("failure", ["export", "parity"])
def test_a_failed_export_or_parity_check_falls_back_to_pytorch_with_a_warning(tiny_bert, tmp_path, monkeypatch,
                                                                               failure):
    if failure == "export":
        def broken(*args, **kwargs):
            raise RuntimeError("exporter crashed")
        monkeypatch.setattr(engine, "_export", broken)
    else:
        monkeypatch.setattr(engine, "PARITY_MIN_COSINE", 1.5)  # no graph can pass
    backbone = create_backbone(f"hf:{tiny_bert}")
    with caching(tmp_path), pytest.warns(HeadstartWarning, match="using PyTorch"):
        features = backbone.embed(TEXTS, batch_size=2)
    assert backbone.extraction_engine.failed
    np.testing.assert_allclose(features, torch_features(backbone, TEXTS), atol=1e-6)


def test_int8_engine_is_close_and_keyed_apart_from_float(tiny_bert: Path, tmp_path: Path):
    backbone = create_backbone(f"hf:{tiny_bert}")
    fingerprint, key = backbone.fingerprint(), backbone.features_key()
    backbone.engine = "int8"
    with caching(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("error", HeadstartWarning)
        quantized = backbone.embed(TEXTS, batch_size=2)
    assert sorted(p.name.endswith("-int8-s7.onnx") for p in (tmp_path / "onnx").glob("*.onnx")) == [False, True], \
        "text encoders are quantized dynamically: no calibration, one int8 graph per weights"
    assert backbone.extraction_engine._session[1].calibration is None
    assert backbone.fingerprint() == fingerprint, "a saved model's fingerprint does not depend on the engine"
    assert backbone.features_key() == f"{key}-int8-s7", "int8 features are cached apart from float ones"
    reference = torch_features(backbone, TEXTS)
    cosine = (quantized * reference).sum(1) / np.linalg.norm(quantized, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.98


def test_unknown_engine_is_refused(tiny_bert: Path):
    with pytest.raises(ConfigError, match="engine must be one of"):
        create_backbone(f"hf:{tiny_bert}").engine = "fast"


def test_fingerprint_is_hashed_once_per_weights_version(monkeypatch):
    backbone = TinyTextBackbone()
    hashed = []
    original = type(backbone.module).state_dict
    monkeypatch.setattr(type(backbone.module), "state_dict",
                        lambda self, *a, **k: hashed.append(1) or original(self, *a, **k))
    first = backbone.fingerprint()
    assert backbone.fingerprint() == first and len(hashed) == 1, "an unchanged backbone is hashed once"
    twin = copy.deepcopy(backbone)
    assert twin.fingerprint() == first and len(hashed) == 1, "a copy has the same weights: no new hash"
    with torch.no_grad():
        twin.module.embeddings.word_embeddings.weight.add_(1.0)
    assert twin.fingerprint() != first and backbone.fingerprint() == first
    weight = backbone.module.encoder.layer[0].output.dense.weight
    weight.data += 1.0  # an edit version counters do not see: the editor says so
    backbone.weights_changed()
    assert backbone.fingerprint() not in (first, twin.fingerprint())


@pytest.mark.e2e
def test_minilm_on_onnx_runtime_matches_pytorch(tmp_path: Path):
    backbone = create_backbone("minilm")
    texts = ["A dog runs on the beach.", "Stocks fell sharply on Monday after the report.", "Hi"] * 3
    with caching(tmp_path):
        fast = backbone.embed(texts, batch_size=4)
    assert backbone.extraction_engine._session is not None
    reference = torch_features(backbone, texts)
    assert np.abs(fast - reference).max() <= 1e-4
    assert ((fast * reference).sum(1)).min() >= 0.9999  # unit vectors: the dot product is the cosine


def test_the_engine_argument_gives_a_copy_that_runs_there(tiny_bert: Path, tiny_backbone, image_folder):
    assert build_backbone(f"hf:{tiny_bert}", engine="int8").engine == "int8"
    chosen = with_engine(tiny_backbone, "torch")
    assert chosen.engine == "torch" and tiny_backbone.engine == "auto", "the caller's backbone is left as it is"
    assert chosen.module is tiny_backbone.module
    model = headstart.fit(image_folder, backbone=tiny_backbone, engine="torch", progress=False,
                          strategy="linear", settings={"c": 1.0})
    assert model.backbone.engine == "torch"


def test_engines_a_backbone_cannot_use_are_refused(tiny_backbone):
    with pytest.raises(ConfigError, match="engine='fast' is not an extraction engine; use one of auto, onnx"):
        with_engine(tiny_backbone, "fast")
    pytorch_only = TinyTextBackbone()
    with pytest.raises(ConfigError, match="runs in PyTorch only; use engine='torch'"):
        with_engine(pytorch_only, "onnx")
    assert with_engine(pytorch_only, "torch") is pytorch_only
