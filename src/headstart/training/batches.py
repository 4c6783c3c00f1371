"""How training examples reach the loop: each process's shard of every epoch, batched and collated by the
backbone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from headstart.backbones.base import Backbone
from headstart.data.base import Dataset
from headstart.training.config import TrainingConfig


def train_loader(data: Dataset, backbone: Backbone, config: TrainingConfig, *, seed: int, rank: int,
                 world: int) -> tuple[DataLoader, DistributedSampler]:
    """This process's shuffled, augmented training batches and the sampler that shuffles them.

    Args:
        data: The training examples.
        backbone: Collates (and augments) examples into a batch.
        config: Batch size, augmentation, loader workers and length grouping.
        seed: Seed of the shuffling (call ``sampler.set_epoch`` before each epoch).
        rank: This process's index.
        world: Number of processes.

    Returns:
        The loader, yielding ``(batch, labels)``, and its sampler.
    """
    items, labels, augment = data.items, data.labels, config.augment or "off"

    def collate(indices: list[int]) -> tuple[Any, torch.Tensor]:
        return backbone.collate([items[i] for i in indices], augment=augment), torch.from_numpy(labels[indices])

    # Worker processes draw their random streams from the generators re-seeded at each epoch's start, so
    # augmentation stays reproducible (and resumable) with them.
    return shuffled_batches(len(data), collate, config.batch_size, seed=seed, rank=rank, world=world,
                            workers=config.loader_workers, lengths=grouping_lengths(data, backbone, config))


def grouping_lengths(data: Dataset, backbone: Backbone, config: TrainingConfig) -> np.ndarray | None:
    """The input lengths training batches are grouped by (:func:`shuffled_batches`), or ``None`` when they
    are not: ``group_by_length`` is off, or the backbone's inputs have one size."""
    return backbone.input_lengths(data.items) if config.group_by_length else None


def shuffled_batches(n: int, collate: Callable[[list[int]], Any], batch_size: int, *, seed: int, rank: int,
                     world: int, workers: int = 0, lengths: np.ndarray | None = None
                     ) -> tuple[DataLoader, DistributedSampler]:
    """Batches of this process's shard of ``range(n)``, reshuffled each epoch (``sampler.set_epoch``), each
    turned into a batch by ``collate(indices)``: the one batching of every training loader, so examples and
    their cached features are drawn in the same order.

    With ``lengths`` (each example's input length), examples of similar length are batched together, as
    transformers' Trainer does with ``group_by_length``: each epoch's shuffled order is cut into mega-batches
    of up to 50 batches, each sorted by length. A batch is padded to its longest example, so on texts of
    varied length this saves most of the padding's compute; below 8 batches of data the mega-batches are
    single batches and the batches are the plain shuffled ones.

    Returns:
        The loader and its sampler.
    """
    # Disjoint shards: with several processes the few examples that do not divide evenly are dropped
    # (a different few each epoch) rather than repeated.
    if lengths is None:
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                     drop_last=world > 1)
    else:
        from transformers.trainer_pt_utils import DistributedLengthGroupedSampler

        sampler = DistributedLengthGroupedSampler(batch_size, num_replicas=world, rank=rank, seed=seed,
                                                  drop_last=world > 1, lengths=lengths.tolist())
    per_rank = len(sampler)
    # BatchNorm cannot train on a batch of one example: such a last batch is dropped.
    loader = DataLoader(range(n), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                        drop_last=per_rank % batch_size == 1 and per_rank > 1, num_workers=workers)
    return loader, sampler
