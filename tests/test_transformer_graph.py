"""Text encoders on ONNX Runtime: fused transformer graphs (and their fallbacks), length buckets, and the engine
a saved model was fitted with."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import headstart
import headstart.backbones.engine as engine
from headstart.backbones import create_backbone
from headstart.backbones.hf import length_buckets
from headstart.backbones.transformer_graph import TransformerFusion, fused_operators
from headstart.errors import HeadstartWarning, ModelFileError
from headstart.io import caching

TEXTS = ["the cat sat on the mat", "stocks fell", "a", "the cat sat on the mat . the stocks fell sharply on monday",
         "monday", "the mat"]


def torch_features(backbone, texts):
    backbone.engine = "torch"
    return backbone.embed(texts, batch_size=2)


def test_tiny_bert_runs_a_fused_graph_that_matches_pytorch(tiny_bert: Path, tmp_path: Path):
    backbone = create_backbone(f"hf:{tiny_bert}")
    attention = backbone.module.config._attn_implementation
    with caching(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("error", HeadstartWarning)
        fast = backbone.embed(TEXTS, batch_size=4)
    assert backbone.module.config._attn_implementation == attention, "exported in eager attention, then restored"
    session = backbone.extraction_engine._session[1]
    assert session.graph_name.endswith("-eager-optimized.onnx")
    fused = fused_operators(tmp_path / "onnx" / session.graph_name)
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] == 4, fused
    assert fused_operators(tmp_path / "onnx" / session.graph_name.replace("-optimized", "")) == {}
    np.testing.assert_allclose(fast, torch_features(backbone, TEXTS), atol=1e-5)


def test_a_failed_fusion_runs_the_unfused_graph_with_a_warning(tiny_bert: Path, tmp_path: Path, monkeypatch):
    def unmatched(self, graph, out):
        raise RuntimeError("ONNX Runtime's transformer optimizer found no attention layer to fuse")

    monkeypatch.setattr(TransformerFusion, "__call__", unmatched)
    backbone = create_backbone(f"hf:{tiny_bert}")
    with caching(tmp_path), pytest.warns(HeadstartWarning, match="cannot be optimized .*no attention layer"):
        fast = backbone.embed(TEXTS, batch_size=4)
    assert not backbone.extraction_engine.failed, "still on ONNX Runtime"
    assert backbone.extraction_engine._session[1].graph_name.endswith("-eager.onnx")
    np.testing.assert_allclose(fast, torch_features(backbone, TEXTS), atol=1e-5)


def test_an_optimized_graph_that_fails_the_parity_check_is_replaced_by_the_plain_one(tmp_path: Path):
    torch.manual_seed(0)
    module, other, example = nn.Linear(4, 3), nn.Linear(4, 3), torch.randn(5, 4)

    def wrong(graph: Path, out: Path) -> None:  # a graph of other weights stands for a bad rewrite
        engine._export(other, {"input": example}, {"input": {0: "batch"}}, out)

    with caching(tmp_path), pytest.warns(HeadstartWarning, match="optimized ONNX graph cannot be used"):
        session = engine.OnnxEngine(module, example, key="linear", optimize=wrong)
    assert session.graph_name == "linear.onnx"
    with torch.inference_mode():
        np.testing.assert_allclose(session(example), module(example).numpy(), atol=1e-6)


def test_fusion_reads_heads_and_width_from_the_config():
    from transformers import BertConfig, GPT2Config

    assert TransformerFusion.of(BertConfig(hidden_size=48, num_attention_heads=3)) == TransformerFusion(3, 48)
    assert TransformerFusion.of(GPT2Config(n_embd=64, n_head=4)) == TransformerFusion(4, 64), "aliased names"
    assert TransformerFusion.of(object()) is None


def test_length_buckets_cap_the_batch_and_split_where_lengths_drop():
    lengths = np.array([40, 12, 11, 11, 10, 10, 10, 3])
    buckets = length_buckets(lengths, 3)
    assert [lengths[b].tolist() for b in buckets] == [[40], [12, 11, 11], [10, 10, 10], [3]]
    assert length_buckets(lengths, 100, min_fill=0.0) == [slice(0, 8)]
    assert length_buckets(np.array([], dtype=np.int64), 4) == []


def test_texts_are_embedded_in_their_own_order_whatever_the_buckets(tiny_bert: Path):
    backbone = create_backbone(f"hf:{tiny_bert}")
    backbone.engine = "torch"
    one_by_one = np.concatenate([backbone.embed([text]) for text in TEXTS])
    np.testing.assert_allclose(backbone.embed(TEXTS, batch_size=3), one_by_one, atol=1e-5)


def test_a_saved_model_predicts_with_the_engine_it_was_fitted_with(text_csv, tiny_bert, tmp_path):
    with caching(tmp_path / "cache"):
        model = headstart.fit(text_csv, backbone=f"hf:{tiny_bert}", engine="int8", out=tmp_path / "model",
                              progress=False)
        loaded = headstart.load(tmp_path / "model")
        assert loaded.backbone.engine == "int8"
        np.testing.assert_allclose(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS), atol=1e-6)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["backbone"]["engine"] = "fast"
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="config.json: engine must be one of"):
        headstart.load(tmp_path / "model")
