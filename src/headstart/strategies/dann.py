"""DANN (Ganin et al., 2016, "Domain-adversarial training of neural networks"): fine-tuning in which a domain
discriminator learns to tell source features from target features while a gradient-reversal layer makes the
backbone learn features it cannot tell apart.

It runs on the shared training loop (resume, early stopping on the source validation split, progress,
time budget): the discriminator is part of the head, so the loop trains and checkpoints it, and the domain
loss is the loop's regulariser. Each step, the source batch's features are those the head just saw, and a
target batch is drawn from the unlabeled target data with a generator seeded by the run's seed and the step,
so a resumed run draws what an uninterrupted one would. The reversal strength follows the usual schedule
``lambda(p) = 2 / (1 + exp(-10 p)) - 1`` over training progress ``p`` in ``[0, 1]``, times ``domain_weight``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.io import process_count
from headstart.strategies.base import TrainedStrategy, head_stage, register_strategy, require_target
from headstart.training import Classifier, FitContext, HeadFirstConfig, Stage
from headstart.training.network import Regularizer


class DANNConfig(HeadFirstConfig):
    """Fine-tuning settings, and those of the domain discriminator."""

    domain_weight: float = Field(1.0, gt=0, description="Strength of the reversed domain gradient at the end of "
                                                        "training (the schedule 2/(1+exp(-10p))-1 rises to it).")
    discriminator_width: int = Field(256, ge=1, description="Hidden units of the two-layer domain "
                                                            "discriminator.")


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-strength`` backward."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(features: torch.Tensor, strength: float) -> torch.Tensor:
    """``features`` unchanged, with their gradient multiplied by ``-strength`` on the way back."""
    return _ReverseGradient.apply(features, strength)


def reversal_strength(progress: float) -> float:
    """DANN's schedule ``2 / (1 + exp(-10 p)) - 1``: 0 at the start, about 1 at the end of training."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class AdversarialHead(nn.Module):
    """The class head and the domain discriminator; remembers the features of its last input (the source batch)
    and counts training steps (a buffer, so a checkpoint resumes the schedule) out of ``total_steps``."""

    def __init__(self, classifier: nn.Linear, width: int, total_steps: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.total_steps = max(total_steps, 1)
        self.discriminator = nn.Sequential(nn.Linear(classifier.in_features, width), nn.ReLU(), nn.Linear(width, 1))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.last_features: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.last_features = features
        return self.classifier(features)


class DomainLoss:
    """The regulariser: the discriminator's loss on the last source batch and a target batch, through reversal.

    Args:
        target: Unlabeled target examples.
        backbone: The backbone being trained (collates target batches).
        batch_size: Target examples per step.
        weight: ``domain_weight``.
        seed: The run's seed.
    """

    def __init__(self, target: Dataset, backbone: Backbone, batch_size: int, weight: float, seed: int) -> None:
        self.target, self.backbone, self.batch_size = target, backbone, batch_size
        self.weight, self.seed = weight, seed

    def __call__(self, net: Classifier) -> torch.Tensor:
        head: AdversarialHead = net.head
        source = head.last_features
        step = int(head.steps)
        rng = np.random.default_rng([self.seed, step])
        chosen = rng.choice(len(self.target), size=min(self.batch_size, len(self.target)), replace=False)
        device = source.device
        batch = self.backbone.collate([self.target.items[i] for i in chosen])
        batch = {k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict) else batch.to(device)
        features = torch.cat([source, self.backbone.forward(batch).float()])
        domains = torch.cat([torch.zeros(len(source)), torch.ones(len(chosen))]).to(device)
        strength = self.weight * reversal_strength(step / head.total_steps)
        logits = head.discriminator(reverse_gradient(features, strength)).squeeze(1)
        head.steps += 1
        head.last_features = None
        return nn.functional.binary_cross_entropy_with_logits(logits, domains)


@register_strategy("dann")
class DANN(TrainedStrategy):
    """Domain-adversarial fine-tuning (DANN): head first, then the whole network learns features a domain
    discriminator cannot tell apart between source and unlabeled target data (gradient reversal)."""

    config_class = DANNConfig
    needs_target = True

    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        return [head_stage(cfg), Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay)]

    def initial_head(self, backbone: Backbone, train_data: Dataset, cfg: Any, context: FitContext) -> nn.Module:
        require_target(self, context)
        # The schedule counts this process's steps: with several processes each trains on its shard only.
        processes = process_count()
        shard = len(train_data) // processes if processes > 1 else len(train_data)
        steps = sum(stage.epochs for stage in self.stages(backbone, cfg)) * -(-shard // cfg.batch_size)
        classifier = super().initial_head(backbone, train_data, cfg, context)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed + 1)  # the classifier keeps the seed's own initialisation
            return AdversarialHead(classifier, cfg.discriminator_width, steps)

    def regularizer(self, backbone: Backbone, cfg: Any, context: FitContext) -> Regularizer | None:
        return DomainLoss(require_target(self, context), backbone, cfg.batch_size, cfg.domain_weight, context.seed)

    def final_head(self, head: nn.Module) -> nn.Linear:
        return head.classifier
