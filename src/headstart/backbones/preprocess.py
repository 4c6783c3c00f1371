"""Preprocessing records: what a backbone does to raw examples before its network, saved with every model.

Each modality's record is a frozen dataclass registered by its ``kind``, so a saved model folder rebuilds the
exact preprocessing it was trained with (:func:`preprocess_from_dict`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, TypeVar, get_args

import pydantic

from headstart.errors import BackboneError, ConfigError
from headstart.registry import Registry


class Preprocess(Protocol):
    """A backbone's preprocessing record: a frozen dataclass whose ``kind`` names its class in
    :data:`PREPROCESSING`, saved with every model as :meth:`to_dict`."""

    kind: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""


P = TypeVar("P", bound=Preprocess)

#: Preprocessing record classes by ``kind``; each modality's backbone family registers its own.
PREPROCESSING: Registry[type] = Registry("preprocessing kind", BackboneError)


def register_preprocessing(cls: type[P]) -> type[P]:
    """Class decorator registering a preprocessing record under its ``kind`` default."""
    PREPROCESSING.add(cls.kind, cls)
    return cls


# Pillow resampling filters timm's transforms accept by name.
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
#: Test-time views an image's frozen features can be averaged over (see :mod:`headstart.backbones.views`).
ImageViews = Literal["none", "flip", "flip+crops"]
IMAGE_VIEWS: tuple[str, ...] = get_args(ImageViews)
#: Which feature stages an image's frozen features pool (see :mod:`headstart.backbones.stages`).
ImageStages = Literal["last", "last2"]
IMAGE_STAGES: tuple[str, ...] = get_args(ImageStages)
# Saved inputs larger than this are a damaged or edited file, not a model (4096 px is already 200 MB a batch item).
_LARGEST_INPUT = 4096


@register_preprocessing
@dataclass(frozen=True)
class ImagePreprocess:
    """Evaluation-time image preprocessing, as in timm's pretrained configs.

    Attributes:
        input_size: Side of the square model input, in pixels.
        crop_pct: Resize the shorter side to ``input_size / crop_pct``, then center-crop ``input_size``.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        mean: Per-channel mean subtracted after scaling pixels to [0, 1].
        std: Per-channel standard deviation divided by after that.
        views: What frozen features are averaged over (:mod:`headstart.backbones.views`): ``"none"`` the
            centre crop only; ``"flip"`` it and its mirror image; ``"flip+crops"`` the centre and four corner
            crops and their mirror images (ten views, ten times the extraction time).
        stages: What the features are (:mod:`headstart.backbones.stages`): ``"last"`` the network's pooled
            pre-logits; ``"last2"`` the global averages of its last two feature stages, concatenated (the
            network pruned to them).
    """

    input_size: int = 224
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    views: ImageViews = "none"
    stages: ImageStages = "last"
    kind: Literal["image"] = "image"

    def __post_init__(self) -> None:
        # A saved record beyond these bounds is a damaged or edited model folder, not a model.
        if not 1 <= self.input_size <= _LARGEST_INPUT:
            raise ConfigError(f"image input_size {self.input_size} is outside 1..{_LARGEST_INPUT}")
        if not 0 < self.crop_pct <= 1 or not all(math.isfinite(x) for x in (*self.mean, *self.std)) \
                or min(self.std) <= 0:
            raise ConfigError("image preprocessing needs crop_pct in (0, 1], a finite mean and a std above 0")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"interpolation {self.interpolation!r} is not one of {', '.join(_INTERPOLATIONS)}")
        if self.views not in IMAGE_VIEWS:
            raise ConfigError(f"views {self.views!r} is not one of {', '.join(IMAGE_VIEWS)}")
        if self.stages not in IMAGE_STAGES:
            raise ConfigError(f"stages {self.stages!r} is not one of {', '.join(IMAGE_STAGES)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``views`` and ``stages`` only when not at their defaults, so the weights fingerprints
        (and feature-cache keys) of records from before these settings existed stay what they were."""
        record = asdict(self)
        for name, default in (("views", "none"), ("stages", "last")):
            if record[name] == default:
                del record[name]
        return record


@register_preprocessing
@dataclass(frozen=True)
class TextPreprocess:
    """Text preprocessing: tokenization belongs to the backbone; this records what must stay fixed.

    Attributes:
        max_length: Texts are truncated to this many tokens.
        lowercase: Whether texts are lowercased before tokenization (static word vectors).
    """

    max_length: int = 256
    lowercase: bool = False
    kind: Literal["text"] = "text"

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ConfigError(f"text max_length {self.max_length} is below 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def preprocess_from_dict(data: dict[str, Any]) -> Preprocess:
    """Rebuild a preprocessing record saved with its ``to_dict()`` (values are converted to the fields' types,
    so ``{"input_size": "128"}`` from a command line works).

    Raises:
        BackboneError: Unknown ``kind``.
        ConfigError: A field that the kind does not have, or a value it does not allow.
    """
    if not isinstance(data, dict):
        raise BackboneError(f"the saved preprocessing {str(data)[:200]} is not a record; the model folder may have "
                            "been edited")
    cls = PREPROCESSING.get(str(data.get("kind")))
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{cls.kind} preprocessing has no setting {', '.join(unknown)}; its settings are "
                          f"{', '.join(sorted(fields - {'kind'}))}")
    try:
        return pydantic.TypeAdapter(cls).validate_python(dict(data))
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid {cls.kind} preprocessing: {problems}") from None


def restore_preprocess(saved: dict[str, Any] | None, expected: type[P], ref: str) -> P | None:
    """The preprocessing saved with a model (``None`` when nothing was saved), checked to be of the kind the
    backbone ``ref`` uses."""
    if not saved:
        return None
    restored = preprocess_from_dict(saved)
    if not isinstance(restored, expected):
        raise BackboneError(f"the saved preprocessing is of kind {restored.kind!r}, which backbone {ref} "
                            f"cannot use; the model folder may have been edited")
    return restored
