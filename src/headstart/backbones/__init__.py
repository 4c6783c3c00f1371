"""Backbones: a registry of pre-trained feature extractors, found by reference string.

References:
    ``efficientnet_lite0/1/2``, ``minilm``, ``glove``   bundled weights, work offline
    ``timm:<model-name>``                          any timm model (weights from the Hugging Face hub, or a
                                                   local file: ``timm:<model-name>@/path/weights.safetensors``)
    ``speech_embedding``                           bundled audio backbone (ONNX), works offline
    ``hf:<hub-id-or-local-folder>``                a transformers / sentence-transformers text encoder, or
                                                   an audio encoder (wav2vec2, HuBERT, AST)
    ``ckpt:<folder>``                              the backbone of a model saved by headstart (a source model
                                                   you trained first on related data)
"""

from headstart.backbones import (  # noqa: F401  (each registers its backbones)
    audio,
    bundled,
    checkpoint,
    hf,
    hf_audio,
    timm,
    vectors,
)
from headstart.backbones.audio import AudioPreprocess
from headstart.backbones.base import Backbone, ImagePreprocess, SourceHead, TextPreprocess
from headstart.backbones.features import FeatureCache, extract_features, timed_features
from headstart.backbones.references import (
    BACKBONES,
    BackboneSpec,
    build_backbone,
    create_backbone,
    list_backbones,
    register_backbone,
    with_engine,
    with_image_size,
    with_preferred,
    with_preprocess,
)

__all__ = ["BACKBONES", "AudioPreprocess", "Backbone", "BackboneSpec", "FeatureCache", "ImagePreprocess",
           "SourceHead", "TextPreprocess", "build_backbone", "create_backbone", "extract_features", "list_backbones",
           "register_backbone", "timed_features", "with_engine", "with_image_size", "with_preferred", "with_preprocess"]
