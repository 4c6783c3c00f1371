"""Validation after each epoch: loss and accuracy over the whole validation set, shared among the processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from headstart.data.base import Dataset
from headstart.training.network import Classifier
from headstart.training.processes import all_sum

if TYPE_CHECKING:
    from accelerate import Accelerator


@torch.no_grad()
def validate(net: Classifier, data: Dataset, batch_size: int, accelerator: Accelerator) -> dict[str, float]:
    """``val_loss`` and ``val_accuracy`` of ``net`` on ``data``; each process takes every ``world``-th example.

    Args:
        net: The network (put in eval mode).
        data: The validation examples.
        batch_size: Examples per forward pass.
        accelerator: Device, mixed precision and the processes.
    """
    from accelerate.utils import send_to_device

    net.eval()
    items, labels = data.items, data.labels
    shard = list(range(accelerator.process_index, len(items), accelerator.num_processes))
    loss_sum = correct = 0.0
    for start in range(0, len(shard), batch_size):
        idx = shard[start:start + batch_size]
        batch = send_to_device(net.backbone.collate([items[i] for i in idx], augment="off"), accelerator.device)
        target = torch.from_numpy(labels[idx]).to(accelerator.device)
        with accelerator.autocast():
            logits = net(batch).float()
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    loss_sum, correct, count = all_sum(accelerator, [loss_sum, correct, float(len(shard))])
    return {"val_loss": loss_sum / max(count, 1), "val_accuracy": correct / max(count, 1)}


@torch.no_grad()
def validate_head(head: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``val_loss`` and ``val_accuracy`` of ``head`` on frozen validation ``features`` (one process): what
    :func:`validate` measures while the backbone is frozen, without running it."""
    head.eval()
    logits = head(features.to(next(head.parameters()).device)).float().cpu()
    return {"val_loss": nn.functional.cross_entropy(logits, labels).item(),
            "val_accuracy": (logits.argmax(1) == labels).float().mean().item()}
