"""Image features from the last two network stages (preprocessing setting ``stages="last2"``): their width, the
same on both engines and in an exported graph, cached apart, saved with a model and reloaded exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from typer.testing import CliRunner

import headstart
from conftest import TINY_PREPROCESS
from headstart.backbones import create_backbone, with_preprocess
from headstart.backbones.deferred import DeferredModule
from headstart.backbones.preprocess import preprocess_from_dict
from headstart.backbones.references import with_engine
from headstart.backbones.stages import features_width, keep_stages
from headstart.backbones.timm import TimmBackbone, read_state_dict, timm_from_state_dict
from headstart.cli import app
from headstart.data import load_dataset
from headstart.errors import ConfigError

LAST2 = {**TINY_PREPROCESS, "stages": "last2"}


def test_the_features_are_the_last_two_stages_pooled_and_what_follows_them_is_pruned(tiny_timm_ref, image_folder):
    plain = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    both = create_backbone(tiny_timm_ref, preprocess=LAST2)
    # test_efficientnet: feature stages of 48 and 64 channels, then a 256-channel head convolution.
    assert [info["num_chs"] for info in plain.module.feature_info[-2:]] == [48, 64]
    assert plain.feature_dim == 256 and both.feature_dim == 48 + 64
    assert isinstance(both.module.conv_head, torch.nn.Identity) and both.source_head() is None
    assert set(both.module.state_dict()) < set(plain.module.state_dict()), "no parameter left without a use"
    items = load_dataset(image_folder).train.items[:5]
    batch = plain.collate(items)
    with torch.inference_mode():
        stages = plain.module.forward_intermediates(batch, indices=2, intermediates_only=True)
        expected = torch.cat([stage.mean((2, 3)) for stage in stages], dim=1)
        np.testing.assert_allclose(both.forward(batch).numpy(), expected.numpy(), atol=1e-6)


def test_a_deferred_network_stays_unbuilt_and_its_source_head_goes_with_the_pruned_layers(tiny_timm_ref):
    path = tiny_timm_ref.partition("@")[2]
    deferred = DeferredModule(lambda: timm_from_state_dict("test_efficientnet", read_state_dict(path), path),
                              files=(), source_head=True)
    # feature_dim is the width of the two stages, as a family that defers its network knows it.
    net = TimmBackbone(deferred, ref=tiny_timm_ref, preprocess=preprocess_from_dict(LAST2), feature_dim=112)
    assert "_deferred" in net.__dict__, "a run whose features are cached never builds the network"
    assert net.feature_dim == 112 and not net.has_source_head()
    assert net.fingerprint() == create_backbone(tiny_timm_ref, preprocess=LAST2).fingerprint()
    assert net.source_head() is None and features_width(net.module, "last2", 32, "tiny") == net.feature_dim


def test_other_timm_families_pool_their_last_two_stages_too():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False).eval()
    channels = [info["num_chs"] for info in model.feature_info]
    keep_stages(model, "last2", "timm:test_resnet")
    assert features_width(model, "last2", 32, "timm:test_resnet") == channels[-1] + channels[-2]
    assert not any(name.startswith("fc.") for name in model.state_dict()), "the classifier is pruned"


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_both_engines_give_the_two_stage_features(tiny_timm_ref, image_folder, engine):
    items = load_dataset(image_folder).train.items[:5]
    reference = create_backbone(tiny_timm_ref, preprocess=LAST2)
    with torch.inference_mode():
        expected = reference.forward(reference.collate(items)).numpy()
    net = with_engine(create_backbone(tiny_timm_ref, preprocess=LAST2), engine)
    np.testing.assert_allclose(net.embed(items, batch_size=4), expected, atol=1e-4)
    assert not net.extraction_engine.failed, "the ONNX graph passed its parity check"


def test_a_saved_model_reloads_with_its_stages_and_predicts_identically(tmp_path, tiny_backbone, image_folder):
    model = headstart.fit(image_folder, backbone=tiny_backbone, strategy="linear", preprocess={"stages": "last2"},
                          out=tmp_path / "run", progress=False, cache=tmp_path / "cache")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["backbone"]["preprocess"]["stages"] == "last2" and saved["feature_dim"] == 112
    reloaded = headstart.load(tmp_path / "run")
    assert reloaded.backbone.preprocess.stages == "last2" and reloaded.backbone.feature_dim == 112
    items = load_dataset(image_folder).train.items
    np.testing.assert_allclose(reloaded.predict_proba(items), model.predict_proba(items), atol=1e-5)
    report = headstart.export(tmp_path / "run")
    assert report.parity.max_abs_diff < 1e-4 and report.parity.top1_agreement == 1.0, \
        "the exported graph computes both stages too"


def test_fine_tuning_trains_through_both_stages(tmp_path, tiny_backbone, image_folder):
    model = headstart.fit(image_folder, backbone=tiny_backbone, strategy="finetune", preprocess={"stages": "last2"},
                          settings={"epochs": 1}, out=tmp_path / "run", progress=False, cache=False)
    assert model.backbone_trained and model.head.in_features == 112
    items = load_dataset(image_folder).train.items
    np.testing.assert_allclose(headstart.load(tmp_path / "run").predict_proba(items), model.predict_proba(items),
                               atol=1e-5)


def test_bad_values_and_networks_without_stages_are_refused(tmp_path, tiny_timm_ref, image_folder):
    with pytest.raises(ConfigError, match="last2"):
        with_preprocess(tiny_timm_ref, {"stages": "last3"})
    result = CliRunner().invoke(app, ["fit", str(image_folder), "--backbone", tiny_timm_ref, "--preprocess",
                                      "stages=all", "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, ConfigError) and "'last' or 'last2'" in str(result.exception)
    with pytest.raises(ConfigError, match="stages=last2.*forward_intermediates"):
        keep_stages(torch.nn.Linear(3, 2), "last2", "custom")


@pytest.mark.e2e
@pytest.mark.parametrize("variant", [1, 2])
def test_the_bundled_widths_of_the_last_two_stages_are_the_built_networks(variant):
    net = with_preprocess(f"efficientnet_lite{variant}", {"stages": "last2"})
    known = net.feature_dim
    assert known == features_width(net.module, "last2", net.preprocess.input_size, net.ref)


@pytest.mark.e2e
def test_the_bundled_efficientnet_pools_its_last_two_block_stages_on_onnx_runtime(image_folder):
    net = with_preprocess("efficientnet_lite0", {"stages": "last2"})
    assert net.feature_dim == 112 + 320 and not net.has_source_head()
    assert net.feature_dim == features_width(net.module, "last2", 224, net.ref), "the width known before building"
    items = load_dataset(image_folder).train.items[:3]
    with torch.inference_mode():
        expected = net.forward(net.collate(items)).numpy()
    np.testing.assert_allclose(net.embed(items), expected, atol=1e-4)
    assert not net.extraction_engine.failed, "the ONNX graph of the pruned network passed its parity check"
