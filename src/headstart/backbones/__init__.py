"""Backbones: a registry of pre-trained feature extractors, found by reference string.

References:
    ``efficientnet_lite0``, ``minilm``, ``glove``   bundled weights, work offline
    ``timm:<model-name>``                          any timm model (weights from the Hugging Face hub, or a
                                                   local file: ``timm:<model-name>@/path/weights.safetensors``)
    ``hf:<hub-id-or-local-folder>``                a transformers / sentence-transformers text encoder
    ``ckpt:<folder>``                              the backbone of a model saved by headstart (a source model
                                                   you trained first on related data)
"""

from headstart.backbones import bundled, checkpoint, hf, timm, vectors  # noqa: F401  (each registers its backbones)
from headstart.backbones.base import Backbone, ImagePreprocess, SourceHead, TextPreprocess
from headstart.backbones.features import FeatureCache, extract_features
from headstart.backbones.references import (
    BACKBONES,
    BackboneSpec,
    create_backbone,
    list_backbones,
    register_backbone,
    with_image_size,
)

__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "FeatureCache", "ImagePreprocess", "SourceHead", "TextPreprocess",
           "create_backbone", "extract_features", "list_backbones", "register_backbone", "with_image_size"]
