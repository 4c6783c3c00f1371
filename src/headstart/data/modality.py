"""The modality table: everything that differs between images and texts, in one place.

A modality is one :class:`ModalitySpec` registered in :data:`MODALITIES`: its default backbone, the
training defaults every loop-trained strategy starts from, and per-strategy adjustments where a method
needs other values on this kind of data. Adding a modality is one entry here plus its data reader and its
backbone; nothing else names modalities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from headstart.errors import ConfigError
from headstart.registry import Registry

#: A registered modality name (``"image"``, ``"text"``).
Modality = str


@dataclass(frozen=True)
class ModalitySpec:
    """Defaults for one kind of data.

    Attributes:
        default_backbone: The backbone ``fit`` uses when none is given (bundled, works offline).
        file_suffixes: Suffixes of example files (lower case), or empty for modalities whose examples are
            strings held in a table (text).
        training: Defaults of the shared training loop's settings (``epochs``, ``lr``, ``layer_decay``,
            ``augment``, ``head_epochs``, ``head_lr``, ...) for every strategy on this modality.
        strategies: Strategy name -> settings that differ from ``training`` for that strategy here.
    """

    default_backbone: str
    file_suffixes: frozenset[str] = frozenset()
    training: dict[str, Any] = field(default_factory=dict)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def defaults_for(self, strategy: str) -> dict[str, Any]:
        """The training defaults of ``strategy`` on this modality."""
        return {**self.training, **self.strategies.get(strategy, {})}


MODALITIES: Registry[ModalitySpec] = Registry("modality", ConfigError)

MODALITIES.add("image", ModalitySpec(
    default_backbone="efficientnet_lite0",
    file_suffixes=frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}),
    # Adam moves each weight by about the learning rate per step, so a head's logits move by about
    # lr * ||x||_1: image backbones give unnormalised pooled activations (hundreds), hence a small head_lr.
    training={"epochs": 5, "lr": 1e-3, "layer_decay": 0.7, "augment": "light", "head_epochs": 1,
              "head_lr": 2e-3, "lora_dropout": 0.0},
    strategies={"lp-ft": {"lr": 1e-4}, "scratch": {"epochs": 6, "lr": 2e-3}},
))
MODALITIES.add("text", ModalitySpec(
    default_backbone="minilm",
    # Sentence embeddings are L2-normalised (||x||_1 about 15 for MiniLM), so the head takes a larger step.
    training={"epochs": 3, "lr": 5e-5, "layer_decay": 0.9, "augment": "off", "head_epochs": 1,
              "head_lr": 3e-2, "lora_dropout": 0.1},
    strategies={"lp-ft": {"lr": 1e-5}, "scratch": {"epochs": 4, "lr": 1e-4}, "gradual": {"layer_decay": 1 / 2.6}},
))


def modality_spec(name: str) -> ModalitySpec:
    """The table entry of modality ``name``.

    Raises:
        ConfigError: Unknown modality (lists the registered ones).
    """
    return MODALITIES.get(name)
