"""Test-time views: image features averaged over the mirror image (and corner crops), the same at fit and at
predict time of a saved model, cached apart from single-view features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import headstart
from conftest import TINY_PREPROCESS
from headstart.backbones import FeatureCache, ImagePreprocess, create_backbone, extract_features, with_preprocess
from headstart.backbones.references import with_engine
from headstart.backbones.timm import build_image_transform
from headstart.backbones.views import VIEW_COUNTS, view_transform
from headstart.cli import app
from headstart.data import load_dataset
from headstart.errors import ConfigError

# Non-square, and a crop smaller than the resized image, so that corner crops differ from the centre one.
CROPPED = ImagePreprocess(input_size=16, crop_pct=0.8, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)


def _photo(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (27, 35, 3), dtype=np.uint8))


@pytest.mark.parametrize("views", ["none", "flip", "flip+crops"])
def test_the_first_view_is_the_evaluation_crop_and_each_view_is_followed_by_its_mirror(views):
    preprocess = ImagePreprocess(**{**CROPPED.to_dict(), "views": views})
    stack = view_transform(preprocess)(_photo())
    assert stack.shape == (VIEW_COUNTS[views], 3, 16, 16)
    torch.testing.assert_close(stack[0], build_image_transform(CROPPED)(_photo()), rtol=0, atol=1e-6)
    for plain, mirrored in zip(stack[0::2], stack[1::2], strict=False):
        torch.testing.assert_close(mirrored, plain.flip(-1), rtol=0, atol=0)
    if views == "flip+crops":
        corners = stack[2::2]
        assert all(not torch.equal(corner, stack[0]) for corner in corners), "corner crops differ from the centre"
        assert len({tuple(c.flatten()[:20].tolist()) for c in corners}) == 4


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_features_are_the_mean_over_the_views_on_either_engine(tiny_timm_ref, image_folder, engine):
    items = load_dataset(image_folder).train.items[:5]
    plain = with_engine(create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS), engine)
    flipped = with_engine(with_preprocess(plain, {"views": "flip"}), engine)
    batch = plain.collate(items)
    with torch.inference_mode():
        expected = ((plain.forward(batch) + plain.forward(batch.flip(-1))) / 2).numpy()
    np.testing.assert_allclose(flipped.embed(items, batch_size=4), expected, atol=1e-4)
    assert not np.allclose(plain.embed(items), expected, atol=1e-3), "the mirror image changes the features"


@pytest.mark.parametrize(("setting", "value", "default"), [("views", "flip", "none"), ("stages", "last2", "last")])
def test_an_image_feature_setting_is_part_of_the_cache_key_and_its_default_keeps_the_old_key(
        tmp_path, tiny_timm_ref, image_folder, setting, value, default):
    dataset = load_dataset(image_folder).train
    cache = FeatureCache(tmp_path / "cache")
    plain = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    changed = with_preprocess(plain, {setting: value})
    assert cache.path(plain, dataset) != cache.path(changed, dataset)
    first = extract_features(plain, dataset, cache=cache)
    second = extract_features(changed, dataset, cache=cache)
    np.testing.assert_allclose(second, changed.embed(dataset.items), atol=1e-5, err_msg="not the plain ones")
    assert second.shape != first.shape or not np.allclose(second, first, atol=1e-3)
    explicit = create_backbone(tiny_timm_ref, preprocess={**TINY_PREPROCESS, setting: default})
    assert setting not in explicit.config()["preprocess"]
    assert explicit.features_key() == plain.features_key(), f"records from before {setting} keep their cache keys"


def test_a_saved_model_predicts_with_the_views_it_was_fitted_with(tmp_path, tiny_timm_ref, image_folder):
    backbone = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    model = headstart.fit(image_folder, backbone=backbone, preprocess={"views": "flip"}, out=tmp_path / "run",
                          progress=False, cache=tmp_path / "cache")
    items = load_dataset(image_folder).train.items
    reloaded = headstart.load(tmp_path / "run")
    assert reloaded.backbone.preprocess.views == "flip"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backbone"]["preprocess"][
        "views"] == "flip"
    np.testing.assert_allclose(reloaded.predict_proba(items), model.predict_proba(items), atol=1e-5)
    single = reloaded.logits_from_features(backbone.embed(items))
    assert not np.allclose(reloaded.logits(items), single, atol=1e-4), "predict applies the views too"


def test_the_cli_takes_views_as_a_preprocessing_setting_and_refuses_unknown_ones(tmp_path, tiny_timm_ref,
                                                                                 image_folder):
    runner = CliRunner()
    result = runner.invoke(app, ["fit", str(image_folder), "--backbone", tiny_timm_ref, "--preprocess",
                                 "views=flip+crops", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert headstart.load(tmp_path / "run").backbone.preprocess.views == "flip+crops"
    result = runner.invoke(app, ["fit", str(image_folder), "--backbone", tiny_timm_ref, "--preprocess",
                                 "views=rotate", "--out", str(tmp_path / "other")])
    assert isinstance(result.exception, ConfigError) and "flip+crops" in str(result.exception)


def test_views_are_refused_for_other_modalities_and_by_onnx_export(tmp_path, tiny_backbone, image_folder,
                                                                     tiny_text_ref):
    with pytest.raises(ConfigError, match="no preprocessing setting views"):
        with_preprocess(tiny_text_ref, {"views": "flip"})
    headstart.fit(image_folder, backbone=tiny_backbone, preprocess={"views": "flip"}, out=tmp_path / "run",
                  progress=False)
    with pytest.raises(ConfigError, match="views=none"):
        headstart.export(tmp_path / "run")
