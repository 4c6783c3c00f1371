"""The Backbone interface: where transferred knowledge comes from.

A backbone turns raw examples (image paths or arrays, texts, audio files) into fixed-size feature vectors. It owns its
preprocessing, which is saved with every model built on it, so training and inference can never preprocess
differently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import pydantic
import torch
from torch import nn

from headstart.data.modality import Modality
from headstart.errors import BackboneError, ConfigError
from headstart.progress import track
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
    """

    input_size: int = 224
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


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


@dataclass(frozen=True)
class SourceHead:
    """The classifier a backbone was pre-trained with (used by LEEP); logits = features @ weight.T + bias."""

    weight: np.ndarray
    bias: np.ndarray
    class_names: list[str] = field(default_factory=list)


class Backbone(ABC):
    """A pre-trained feature extractor.

    Subclasses set ``ref`` (the string that rebuilds them through :func:`headstart.backbones.create_backbone`),
    ``modality``, ``feature_dim``, ``preprocess`` and ``module`` (the ``nn.Module`` whose parameters fine-tuning
    trains), and implement :meth:`collate` and :meth:`forward`.

    ``architecture`` is set when ``ref`` alone does not name the network (``ckpt:`` backbones): then it is the
    reference that builds the same network, into which saved weights are loaded.
    """

    ref: str
    architecture: str | None = None
    modality: Modality
    feature_dim: int
    preprocess: Preprocess
    module: nn.Module
    #: Whether training can change the weights (``False`` for a backbone that runs in ONNX Runtime only).
    trainable: bool = True

    @abstractmethod
    def collate(self, items: Sequence[Any], *, augment: str = "off") -> Any:
        """Turn raw examples into one model-input batch.

        Args:
            items: Raw examples.
            augment: ``"off"`` for evaluation preprocessing; ``"light"`` / ``"strong"`` for training-time
                augmentation presets built on the same preprocessing (images; text backbones ignore it).
        """

    @abstractmethod
    def forward(self, batch: Any) -> torch.Tensor:
        """Features ``[batch, feature_dim]`` for a collated batch; differentiable (used by fine-tuning)."""

    @abstractmethod
    def layer_groups(self) -> list[nn.Module]:
        """The backbone's layer groups ordered bottom (input) to top, for gradual unfreezing and
        layer-wise learning rates. Every trainable parameter of ``module`` is in exactly one group."""

    def config(self) -> dict[str, Any]:
        """What rebuilds this backbone: its reference (and architecture, when set) and its preprocessing."""
        config = {"ref": self.ref, "modality": self.modality, "feature_dim": self.feature_dim,
                  "preprocess": self.preprocess.to_dict()}
        if self.architecture is not None:
            config["architecture"] = self.architecture
        return config

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``state`` (strictly) as this backbone's own pre-trained weights, as if it had been built with
        them: a saved model folder restores the weights it holds this way."""
        self.module.load_state_dict(state, strict=True)

    def fingerprint(self) -> str:
        """A content hash of the weights and preprocessing; feature caches are keyed by it."""
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for name, tensor in sorted(self.module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]

    def describe_inputs(self, items: Sequence[Any]) -> dict[str, Any]:
        """What the metrics should say about how this backbone treats ``items`` (e.g. how many audio clips were
        longer than its input limit, and what was done with them); empty by default."""
        return {}

    def source_head(self) -> SourceHead | None:
        """The pre-training classifier, where the weights ship one; ``None`` otherwise."""
        return None

    def progress_description(self, label: str = "") -> str:
        """What the progress display of :meth:`embed` says, e.g. ``"features train (efficientnet_lite0)"``."""
        return f"features {label} ({self.ref})" if label else f"features ({self.ref})"

    def batches(self, items: Sequence[Any], batch_size: int) -> Iterator[Sequence[Any]]:
        """Consecutive slices of ``items``."""
        for start in range(0, len(items), batch_size):
            yield items[start:start + batch_size]

    @torch.inference_mode()
    def embed(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False, label: str = ""
              ) -> np.ndarray:
        """Frozen features ``[len(items), feature_dim]`` as float32, in evaluation mode.

        Args:
            items: Raw examples (image paths / arrays / PIL images, or texts).
            batch_size: Examples per forward pass.
            progress: Show progress.
            label: Which examples these are (``"train"``, ``"test"``), named in the progress display.
        """
        self.module.eval()
        out = np.empty((len(items), self.feature_dim), dtype=np.float32)
        done = 0
        for batch in track(self.batches(items, batch_size), total=-(-len(items) // batch_size), unit="batches",
                           description=self.progress_description(label), enabled=progress):
            feats = self.forward(self.collate(batch)).float().cpu().numpy()
            out[done:done + len(feats)] = feats
            done += len(feats)
        return out
