"""Head-only stages on cached frozen features.

A head-only stage (the first stage of ``finetune``, ``gradual``, ``lora``, ``l2sp``) trains a linear layer on a
backbone that does not change, so running the backbone on every batch of every epoch recomputes the same
features: on small data, where ``min_steps`` raises the stage to a hundred epochs, that is nearly all of its
time. When the batches are not augmented (text always; images with ``augment="off"``), the stage instead
trains on the features computed once (through the feature cache and the fast extraction engine, so a linear
probe's features are reused) and validates on cached validation features.

The batches are drawn exactly as the backbone path draws them (same sampler, seed and batch size), so a run
stays seeded and resumable. One thing differs on purpose: the features are the evaluation-mode ones, so a text
encoder's dropout does not perturb the frozen features the head sees (as in a linear probe).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from headstart.backbones.base import Backbone
from headstart.backbones.features import FeatureCache, extract_features
from headstart.data.base import Dataset
from headstart.training.batches import shuffled_batches
from headstart.training.stages import Stage
from headstart.training.validation import validate_head


def uses_frozen_features(stage: Stage, augment: str | None, processes: int, cross_entropy: bool) -> bool:
    """Whether ``stage`` trains on cached features: it trains the head only, its batches are not augmented,
    the run has one process (several would each need their shard's features and DDP around the head), and
    the loss is cross-entropy on the head's logits."""
    return stage.trained_groups == 0 and (augment or "off") == "off" and processes == 1 and cross_entropy


class FrozenFeatures:
    """The training (and validation) examples' frozen features, with the loader and validation of a head-only
    stage on them.

    Args:
        backbone: The (frozen) backbone.
        train_data: Training examples.
        val_data: Validation examples, or ``None``.
        batch_size: Examples per forward pass while extracting.
        cache: Feature cache (a linear probe on the same data and weights has already filled it), or ``None``.
        progress: Show extraction progress.
    """

    def __init__(self, backbone: Backbone, train_data: Dataset, val_data: Dataset | None, *, batch_size: int,
                 cache: FeatureCache | None, progress: bool) -> None:
        self.fingerprint = backbone.fingerprint()

        def features(data: Dataset, label: str) -> torch.Tensor:
            return torch.from_numpy(extract_features(backbone, data, cache=cache, batch_size=batch_size,
                                                     progress=progress, label=label))

        self.train, self.train_labels = features(train_data, "train"), torch.from_numpy(train_data.labels)
        self.val = None if val_data is None else (features(val_data, "validation"), torch.from_numpy(val_data.labels))

    def loader(self, batch_size: int, *, seed: int, lengths: np.ndarray | None = None
               ) -> tuple[DataLoader, DistributedSampler]:
        """Shuffled ``(features, labels)`` batches, drawn in the order the backbone path draws examples (given
        the same input ``lengths``, :func:`~headstart.training.batches.grouping_lengths`)."""
        def collate(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            return self.train[indices], self.train_labels[indices]

        return shuffled_batches(len(self.train), collate, batch_size, seed=seed, rank=0, world=1, lengths=lengths)

    def validate(self, head: torch.nn.Module) -> dict[str, Any]:
        """Validation loss and accuracy of ``head`` on the cached validation features (there must be some)."""
        features, labels = self.val or (torch.empty(0), torch.empty(0))
        return validate_head(head, features, labels)
