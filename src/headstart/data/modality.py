"""The modality table: everything that differs between images, texts and audio, in one place.

A modality is one :class:`ModalitySpec` registered in :data:`MODALITIES`: its default backbone, the suffixes
of its files and the check that a file is usable (for modalities whose examples are files), the training
defaults every loop-trained strategy starts from, and per-strategy adjustments where a method needs other
values on this kind of data. Adding a modality is one entry here plus its data reader and its backbone;
class folders, tables of paths, splits and prediction inputs work from this entry (:mod:`headstart.data.files`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headstart.data.audio_io import AUDIO_SUFFIXES, audio_problem
from headstart.data.image_io import IMAGE_SUFFIXES, image_problem
from headstart.errors import ConfigError
from headstart.registry import Registry

#: A registered modality name (``"image"``, ``"text"``, ``"audio"``).
Modality = str


@dataclass(frozen=True)
class ModalitySpec:
    """Defaults for one kind of data.

    Attributes:
        default_backbone: The backbone ``fit`` uses when none is given (bundled, works offline).
        file_suffixes: Suffixes of example files (lower case), or empty for modalities whose examples are
            strings held in a table (text).
        screen: ``screen(path)`` says why a file of this modality cannot be used (unreadable, empty, ...),
            or returns ``None``; run on every file before any long work (a cheap check, not a full decode).
        training: Defaults of the shared training loop's settings (``epochs``, ``lr``, ``layer_decay``,
            ``augment``, ``head_epochs``, ``head_lr``, ...) for every strategy on this modality.
        strategies: Strategy name -> settings that differ from ``training`` for that strategy here.
    """

    default_backbone: str
    file_suffixes: frozenset[str] = frozenset()
    screen: Callable[[str], str | None] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def defaults_for(self, strategy: str) -> dict[str, Any]:
        """The training defaults of ``strategy`` on this modality."""
        return {**self.training, **self.strategies.get(strategy, {})}


MODALITIES: Registry[ModalitySpec] = Registry("modality", ConfigError)

MODALITIES.add("image", ModalitySpec(
    default_backbone="efficientnet_lite0",
    file_suffixes=IMAGE_SUFFIXES,
    screen=image_problem,
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
MODALITIES.add("audio", ModalitySpec(
    default_backbone="speech_embedding",
    file_suffixes=AUDIO_SUFFIXES,
    screen=audio_problem,
    # Transformer speech encoders (wav2vec2, HuBERT) fine-tune like text encoders, but their pooled hidden
    # states are not normalised (||x||_1 in the hundreds, as for images), hence the image head_lr.
    training={"epochs": 5, "lr": 5e-5, "layer_decay": 0.9, "augment": "off", "head_epochs": 1,
              "head_lr": 2e-3, "lora_dropout": 0.1},
    strategies={"lp-ft": {"lr": 1e-5}, "scratch": {"epochs": 6, "lr": 1e-4}},
))


def modality_spec(name: str) -> ModalitySpec:
    """The table entry of modality ``name``.

    Raises:
        ConfigError: Unknown modality (lists the registered ones).
    """
    return MODALITIES.get(name)
