"""The feature cache and exported ONNX graphs: verified on load, placed where the options say, never fatal."""

from __future__ import annotations

import io

import numpy as np
import pytest

import headstart
from conftest import TINY_PREPROCESS
from headstart.backbones import FeatureCache, create_backbone
from headstart.data import load_dataset
from headstart.errors import HeadstartWarning


@pytest.fixture
def fresh_backbone(tiny_timm_ref):
    """The tiny backbone built anew, so that it has no ONNX session from another test."""
    return create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)


def test_cached_features_with_the_right_shape_but_other_content_are_not_used(tmp_path, image_folder,
                                                                            fresh_backbone):
    dataset = load_dataset(image_folder).train
    cache = FeatureCache(tmp_path / "cache")
    features = np.ones((len(dataset), fresh_backbone.feature_dim), dtype=np.float32)
    cache.store(fresh_backbone, dataset, features)
    np.testing.assert_array_equal(cache.load(fresh_backbone, dataset), features)
    buffer = io.BytesIO()
    np.save(buffer, features * 2, allow_pickle=False)
    cache.path(fresh_backbone, dataset).write_bytes(buffer.getvalue())
    with pytest.warns(HeadstartWarning, match="checksum"):
        assert cache.load(fresh_backbone, dataset) is None


def test_unwritable_cache_folder_falls_back_to_no_cache_with_a_warning(tmp_path, image_folder, fresh_backbone):
    (tmp_path / "file").write_text("not a folder")
    with pytest.warns(HeadstartWarning, match="cannot write to the cache folder"):
        model = headstart.fit(image_folder, backbone=fresh_backbone, cache=tmp_path / "file" / "cache",
                              progress=False, test_fraction=0.2)
    assert model.metrics["test"]["accuracy"] >= 0.8


def test_no_cache_and_cache_dir_also_decide_where_the_onnx_graph_goes(tmp_path, image_folder, tiny_timm_ref,
                                                                     monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "default"))
    backbone = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    headstart.fit(image_folder, backbone=backbone, cache=False, progress=False)
    assert backbone.extraction_engine._session is not None, "ONNX Runtime still runs without a cache"
    assert not (tmp_path / "default").exists()
    backbone = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    headstart.fit(image_folder, backbone=backbone, cache=tmp_path / "chosen", progress=False)
    assert len(list((tmp_path / "chosen" / "onnx").glob("*.onnx"))) == 1
    assert not (tmp_path / "default").exists()
