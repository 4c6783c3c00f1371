"""The Backbone interface: where transferred knowledge comes from.

A backbone turns raw examples (image paths or arrays, or texts) into fixed-size feature vectors. It owns its
preprocessing, which is saved with every model built on it, so training and inference can never preprocess
differently.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from headstart.data.modality import Modality
from headstart.errors import BackboneError
from headstart.progress import track

P = TypeVar("P", bound="ImagePreprocess | TextPreprocess")


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


Preprocess = ImagePreprocess | TextPreprocess


def preprocess_from_dict(data: dict[str, Any]) -> Preprocess:
    """Rebuild a preprocessing record saved with :meth:`ImagePreprocess.to_dict` / ``TextPreprocess``."""
    data = dict(data)
    kind = data.get("kind")
    if kind == "image":
        data["mean"] = tuple(data["mean"])
        data["std"] = tuple(data["std"])
        return ImagePreprocess(**data)
    if kind == "text":
        return TextPreprocess(**data)
    raise ValueError(f"unknown preprocessing kind {kind!r}")


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
    """

    ref: str
    modality: Modality
    feature_dim: int
    preprocess: Preprocess
    module: nn.Module

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
        """What rebuilds this backbone: its reference and its preprocessing."""
        return {"ref": self.ref, "modality": self.modality, "feature_dim": self.feature_dim,
                "preprocess": self.preprocess.to_dict()}

    def fingerprint(self) -> str:
        """A content hash of the weights and preprocessing; feature caches are keyed by it."""
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for name, tensor in sorted(self.module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]

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
