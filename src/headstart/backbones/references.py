"""The registry of backbone names and ``scheme:`` prefixes, and the one resolver of reference strings.

References:
    ``efficientnet_lite0/1/2``, ``minilm``, ``glove``   bundled weights, work offline
    ``timm:<model-name>``                          any timm model (weights from the Hugging Face hub, or a
                                                   local file: ``timm:<model-name>@/path/weights.safetensors``)
    ``hf:<hub-id-or-local-folder>``                a transformers / sentence-transformers text encoder
    ``ckpt:<folder>``                              the backbone of a model saved by headstart (a source model
                                                   you trained first on related data)
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from headstart.backbones.base import Backbone, ImagePreprocess, preprocess_from_dict
from headstart.backbones.engine import ENGINES
from headstart.data.image_io import image_dimensions
from headstart.errors import BackboneError, ConfigError, option
from headstart.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone name or scheme.

    Attributes:
        name: Exact name (``"minilm"``) or scheme with a trailing colon (``"timm:"``).
        modality: A registered modality, or several joined by ``/`` for schemes that serve more than one.
        offline: Whether it works with no network (bundled weights or local files).
        bundled: Whether its weights ship with headstart's dependencies (what ``backbone="auto"`` ranks).
        description: One line for ``headstart backbones``.
        factory: ``factory(argument, preprocess) -> Backbone``; ``argument`` is what follows the scheme
            (``None`` for exact names), ``preprocess`` an optional saved preprocessing dict to restore. A factory
            that also takes the keywords ``pretrained`` and ``allow_download`` gets them (see
            :func:`create_backbone`); one that does not always builds with its own weights.
    """

    name: str
    modality: str
    offline: bool
    description: str
    factory: Callable[[str | None, dict[str, Any] | None], Backbone]
    bundled: bool = False


#: Every backbone name and ``scheme:``; a family registers itself when its module is imported.
BACKBONES: Registry[BackboneSpec] = Registry("backbone", BackboneError)


def register_backbone(name: str, *, modality: str, offline: bool, description: str, bundled: bool = False
                      ) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator registering a backbone factory under an exact name or a ``scheme:``."""

    def add(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        BACKBONES.add(name, BackboneSpec(name, modality, offline, description, factory, bundled))
        return factory

    return add


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone name and scheme, bundled ones first."""
    return sorted((spec for _, spec in BACKBONES.items()), key=lambda s: (not s.offline, s.name.endswith(":"), s.name))


def create_backbone(ref: str, *, preprocess: dict[str, Any] | None = None, pretrained: bool = True,
                    allow_download: bool = True) -> Backbone:
    """Build the backbone that ``ref`` names.

    Args:
        ref: A bundled name or ``scheme:argument`` (see the module docstring).
        preprocess: A saved preprocessing dict to restore instead of the weights' default.
        pretrained: ``False`` builds the network without reading its weights file or downloading its weights
            (the caller loads weights it holds, as a saved model folder does); bundled weights are read anyway.
        allow_download: ``False`` uses only local files and the hub's local cache, never the network.

    Raises:
        BackboneError: Unknown name, or weights that cannot be found or loaded.
    """
    options = {"pretrained": pretrained, "allow_download": allow_download}
    if ref in BACKBONES and not ref.endswith(":"):
        return _build(BACKBONES.get(ref).factory, None, preprocess, options)
    scheme, sep, argument = ref.partition(":")
    if sep and f"{scheme}:" in BACKBONES and argument:
        return _build(BACKBONES.get(f"{scheme}:").factory, argument, preprocess, options)
    names = ", ".join(s.name + ("<name>" if s.name.endswith(":") else "") for s in list_backbones())
    raise BackboneError(f"unknown backbone {ref!r}; use one of: {names} (see `headstart backbones`)")


def with_preprocess(backbone: str | Backbone, overrides: dict[str, Any] | None) -> Backbone:
    """``backbone`` built (or rebuilt) with some of its preprocessing settings changed.

    The settings are those of the backbone's preprocessing record (``headstart backbones`` and the saved
    ``config.json`` show them), e.g. ``{"max_seconds": 10, "long_clips": "windows"}`` for an audio backbone;
    they are saved with the model and are part of feature-cache keys. Values may be strings (from a
    command line); they are converted to the settings' types.

    Args:
        backbone: A reference or a built backbone. A built one whose preprocessing changes is rebuilt from its
            reference, so its weights are reloaded: change preprocessing before changing weights, not after.
        overrides: Setting name -> value; ``None`` or empty keeps the backbone as it is.

    Raises:
        ConfigError: A setting the backbone's preprocessing does not have, or a value it does not allow.
    """
    net = create_backbone(backbone) if isinstance(backbone, str) else backbone
    if not overrides:
        return net
    current = net.preprocess.to_dict()
    # The record's fields, not its dict: a setting left at a default may be left out of the dict.
    names = [f.name for f in dataclasses.fields(net.preprocess)]
    unknown = sorted(set(overrides) - set(names) | ({"kind"} & set(overrides)))
    if unknown:
        settings = ", ".join(name for name in names if name != "kind")
        raise ConfigError(f"the {net.modality} backbone {net.ref!r} has no preprocessing setting "
                          f"{', '.join(unknown)}; its settings are {settings}")
    merged = {**current, **overrides}
    if preprocess_from_dict(merged) == net.preprocess:
        return net
    return create_backbone(net.ref, preprocess=merged)


def _build(factory: Callable[..., Backbone], argument: str | None, preprocess: dict[str, Any] | None,
           options: dict[str, bool]) -> Backbone:
    """``factory``'s backbone, passing ``options`` only to a factory that takes them (a family written before
    they existed keeps working)."""
    parameters = inspect.signature(factory).parameters
    if set(options) <= parameters.keys() or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return factory(argument, preprocess, **options)
    return factory(argument, preprocess)


def is_bundled(ref: str) -> bool:
    """Whether ``ref`` names weights that ship with headstart's dependencies (present wherever it is
    installed, so a saved model need not copy them)."""
    return ref in BACKBONES and not ref.endswith(":") and BACKBONES.get(ref).bundled


#: The input size ``--image-size auto`` picks for images much smaller than the backbone's input: measured on
#: Fashion-MNIST (28 px), 128 px costs no accuracy against 224 px and fine-tunes about 2.5x faster.
SMALL_IMAGE_SIZE = 128
# "Much smaller": every training image's longer side at most this fraction of the backbone's input side.
_SMALL_FRACTION = 0.25


def auto_image_size(net: Backbone, examples: Sequence[Any]) -> int:
    """The input size ``--image-size auto`` gives ``net``: :data:`SMALL_IMAGE_SIZE` when every example is much
    smaller than its input (longer side at most a quarter of it, e.g. 28 px against 224), its own otherwise.
    Only the image headers are read."""
    own = net.preprocess.input_size
    if own <= SMALL_IMAGE_SIZE:
        return own
    largest = max((max(image_dimensions(item)) for item in examples), default=own)
    return SMALL_IMAGE_SIZE if largest <= _SMALL_FRACTION * own else own


def with_image_size(backbone: str | Backbone, image_size: int | str | None,
                    examples: Sequence[Any] | None = None) -> Backbone:
    """``backbone`` built (or rebuilt) so that it takes ``image_size``-pixel square inputs.

    Pre-trained convolutional networks work at other resolutions than the one they were trained at; small
    source images (28 px Fashion-MNIST) lose nothing at 128 px, and a step costs about a third of one at
    224 px. The size is part of the preprocessing, so it is saved with the model and in feature-cache keys.

    Args:
        backbone: A reference or a built backbone. A built one whose size differs is rebuilt from its
            reference, so its weights are reloaded: resize before changing weights, not after.
        image_size: Side of the model input in pixels; ``"auto"`` chooses from ``examples``
            (:func:`auto_image_size`); ``None`` keeps the backbone's own.
        examples: The training images, for ``"auto"``.

    Raises:
        ConfigError: ``image_size`` for a text backbone, below 16 pixels, or ``"auto"`` without examples.
    """
    net = create_backbone(backbone) if isinstance(backbone, str) else backbone
    if image_size is None:
        return net
    if net.modality != "image" or not isinstance(net.preprocess, ImagePreprocess):
        raise ConfigError(f"{option('image_size', image_size)} applies to image backbones; {net.ref!r} is a "
                          f"{net.modality} backbone")
    if image_size == "auto":
        if examples is None:
            raise ConfigError(f"{option('image_size', 'auto')} chooses from the training images, which only fit "
                              f"reads; give a size in pixels here (e.g. {option('image_size', 128)})")
        image_size = auto_image_size(net, examples)
    if not isinstance(image_size, int) or image_size < 16:
        raise ConfigError(f"{option('image_size', image_size)} is too small: an image backbone needs 'auto' or at "
                          "least 16 pixels")
    return with_preprocess(net, {"input_size": image_size})


def with_engine(backbone: Backbone, engine: str | None) -> Backbone:
    """``backbone`` with its frozen features computed by ``engine`` (``None``: as it is).

    Args:
        backbone: A built backbone; it is left as it is, and a copy sharing its network gets the engine.
        engine: ``"auto"`` (ONNX Runtime while the weights are the loaded ones), ``"onnx"``, ``"int8"``
            (quantized ONNX Runtime: statically for image backbones, calibrated on the first images they extract,
            dynamically for the others; its features are cached apart) or ``"torch"``. ``"auto"`` and
            ``"torch"`` suit every backbone.

    Raises:
        ConfigError: An unknown engine, or ONNX Runtime for a backbone that runs in PyTorch only.
    """
    if engine is None or engine == backbone.engine:
        return backbone
    if engine not in ENGINES:
        raise ConfigError(f"{option('engine', engine)} is not an extraction engine; use one of {', '.join(ENGINES)}")
    if backbone.extraction_engine is None:
        if engine in ("auto", "torch"):
            return backbone
        raise ConfigError(f"{option('engine', engine)}: backbone {backbone.ref!r} runs in PyTorch only; use "
                          f"{option('engine', 'torch')} or leave the engine to 'auto'")
    chosen = copy.copy(backbone)
    chosen.engine = engine
    return chosen


def build_backbone(backbone: str | Backbone, *, image_size: int | str | None = None,
                   preprocess: dict[str, Any] | None = None, examples: Sequence[Any] | None = None,
                   engine: str | None = None, prefer: dict[str, Any] | None = None) -> Backbone:
    """``backbone`` built with a run's image size (:func:`with_image_size`; ``"auto"`` chooses from the training
    ``examples``), preprocessing changes (:func:`with_preprocess`), the preprocessing settings in ``prefer``
    where ``preprocess`` leaves them open (:func:`with_preferred`; a reference only: a built backbone is taken as
    it is) and extraction engine (:func:`with_engine`)."""
    net = with_preprocess(with_image_size(backbone, image_size, examples), preprocess)
    if prefer and isinstance(backbone, str):
        net = with_preferred(net, {name: value for name, value in prefer.items() if name not in (preprocess or {})})
    return with_engine(net, engine)


def with_preferred(net: Backbone, prefer: dict[str, Any]) -> Backbone:
    """``net`` with those preprocessing settings of ``prefer`` that its record has and its network can take;
    as it is where none applies (another modality, a network without feature stages). A ``ckpt:`` source model
    is left as it is: its classifier, which the forgetting measure reads, was fitted on its last features."""
    names = {field.name for field in dataclasses.fields(net.preprocess)}
    wanted = {name: value for name, value in prefer.items() if name in names}
    if not wanted or net.ref.startswith("ckpt:"):
        return net
    try:
        return with_preprocess(net, wanted)
    except ConfigError:  # the network cannot (e.g. stages="last2" on a timm model without feature stages)
        return net
