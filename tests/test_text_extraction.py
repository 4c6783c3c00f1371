"""Text extraction: batches by token count, and the engine a saved model was fitted with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import headstart
from headstart.backbones import create_backbone
from headstart.backbones.hf import length_buckets
from headstart.errors import ModelFileError
from headstart.io import caching

TEXTS = ["the cat sat on the mat", "stocks fell", "a", "the cat sat on the mat . the stocks fell sharply on monday",
         "monday", "the mat"]


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
    assert backbone.embed([]).shape == (0, backbone.feature_dim)


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
