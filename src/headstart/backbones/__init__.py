"""Backbones: a registry of pre-trained feature extractors, found by reference string.

References:
    ``efficientnet_lite0``, ``minilm``, ``glove``   bundled weights, work offline
    ``timm:<model-name>``                          any timm model (weights from the Hugging Face hub, or a
                                                   local file: ``timm:<model-name>@/path/weights.safetensors``)
    ``hf:<hub-id-or-local-folder>``                a transformers / sentence-transformers text encoder
    ``ckpt:<folder>``                              the backbone of a model saved by headstart (a source model
                                                   you trained first on related data)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headstart.backbones.base import Backbone, ImagePreprocess, SourceHead, TextPreprocess
from headstart.errors import BackboneError, ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone name or scheme.

    Attributes:
        name: Exact name (``"minilm"``) or scheme with a trailing colon (``"timm:"``).
        modality: ``"image"``, ``"text"`` or ``"image/text"`` for schemes that serve both.
        offline: Whether it works with no network (bundled weights or local files).
        bundled: Whether its weights ship with headstart's dependencies (what ``backbone="auto"`` ranks).
        description: One line for ``headstart backbones``.
        factory: ``factory(argument, preprocess) -> Backbone``; ``argument`` is what follows the scheme
            (``None`` for exact names), ``preprocess`` an optional saved preprocessing dict to restore.
    """

    name: str
    modality: str
    offline: bool
    description: str
    factory: Callable[[str | None, dict[str, Any] | None], Backbone]
    bundled: bool = False


_SPECS: dict[str, BackboneSpec] = {}


def register_backbone(name: str, *, modality: str, offline: bool, description: str, bundled: bool = False
                      ) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator registering a backbone factory under an exact name or a ``scheme:``."""

    def add(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _SPECS:
            raise ValueError(f"backbone {name!r} is already registered")
        _SPECS[name] = BackboneSpec(name, modality, offline, description, factory, bundled)
        return factory

    return add


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone name and scheme, bundled ones first."""
    _load_builtin()
    return sorted(_SPECS.values(), key=lambda s: (not s.offline, s.name.endswith(":"), s.name))


def create_backbone(ref: str, *, preprocess: dict[str, Any] | None = None) -> Backbone:
    """Build the backbone that ``ref`` names.

    Args:
        ref: A bundled name or ``scheme:argument`` (see the module docstring).
        preprocess: A saved preprocessing dict to restore instead of the weights' default.

    Raises:
        BackboneError: Unknown name, or weights that cannot be found or loaded.
    """
    _load_builtin()
    if ref in _SPECS and not ref.endswith(":"):
        return _SPECS[ref].factory(None, preprocess)
    scheme, sep, argument = ref.partition(":")
    if sep and f"{scheme}:" in _SPECS and argument:
        return _SPECS[f"{scheme}:"].factory(argument, preprocess)
    names = ", ".join(s.name + ("<name>" if s.name.endswith(":") else "") for s in list_backbones())
    raise BackboneError(f"unknown backbone {ref!r}; use one of: {names} (see `headstart backbones`)")


def with_image_size(backbone: str | Backbone, image_size: int | None) -> Backbone:
    """``backbone`` built (or rebuilt) so that it takes ``image_size``-pixel square inputs.

    Pre-trained convolutional networks work at other resolutions than the one they were trained at; small
    source images (28 px Fashion-MNIST) lose nothing at 128 px, and a step costs about a third of one at
    224 px. The size is part of the preprocessing, so it is saved with the model and in feature-cache keys.

    Args:
        backbone: A reference or a built backbone. A built one whose size differs is rebuilt from its
            reference, so its weights are reloaded: resize before changing weights, not after.
        image_size: Side of the model input in pixels; ``None`` keeps the backbone's own.

    Raises:
        ConfigError: ``image_size`` for a text backbone, or below 16 pixels.
    """
    net = create_backbone(backbone) if isinstance(backbone, str) else backbone
    if image_size is None:
        return net
    if net.modality != "image" or not isinstance(net.preprocess, ImagePreprocess):
        raise ConfigError(f"--image-size applies to image backbones; {net.ref!r} is a {net.modality} backbone")
    if image_size < 16:
        raise ConfigError(f"--image-size must be at least 16 pixels, not {image_size}")
    if net.preprocess.input_size == image_size:
        return net
    return create_backbone(net.ref, preprocess={**net.preprocess.to_dict(), "input_size": image_size})


def _load_builtin() -> None:
    # Importing the modules runs their @register_backbone decorators; deferred so that importing
    # headstart stays cheap.
    from headstart.backbones import bundled, checkpoint, text, vectors, vision  # noqa: F401


__all__ = ["Backbone", "BackboneSpec", "ImagePreprocess", "SourceHead", "TextPreprocess", "create_backbone",
           "list_backbones", "register_backbone", "with_image_size"]
