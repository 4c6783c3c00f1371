"""The network the loop trains: the backbone's module and a linear head as one ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from headstart.backbones.base import Backbone

Regularizer = Callable[["Classifier"], torch.Tensor]
#: A batch's loss from the network's outputs and the labels (cross-entropy on logits unless a strategy says).
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Classifier(nn.Module):
    """The backbone's module and a linear head as one ``nn.Module`` (what DDP wraps and checkpoints hold).

    Args:
        backbone: Its ``module`` becomes the ``body`` submodule; its ``forward`` is called on batches.
        head: Linear layer on the backbone's features.
    """

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.body = backbone.module
        self.head = head
        self.backbone = backbone  # not an nn.Module: a plain attribute, outside state_dict

    def forward(self, batch: Any) -> torch.Tensor:
        """Logits for a collated batch."""
        return self.head(self.backbone.forward(batch))
