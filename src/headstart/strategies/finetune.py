"""Fine-tuning, fastai style: train the new head on the frozen backbone, then unfreeze everything and train
with discriminative (layer-wise) learning rates under a warmup + cosine or one-cycle schedule.

``l2sp`` is the same strategy with L2-SP regularisation on (Li et al. 2018, "Explicit inductive bias for
transfer learning with convolutional networks"): the backbone is pulled toward its pre-trained weights
instead of toward zero.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from headstart.backbones import Backbone
from headstart.strategies.base import TrainedStrategy, head_stage, register_strategy
from headstart.training import Classifier, FitContext, HeadFirstConfig, Stage, TrainingConfig
from headstart.training.network import Regularizer
from headstart.training.search_space import Dimension, FloatRange


class FinetuneConfig(HeadFirstConfig):
    """Hyperparameters of fastai-style fine-tuning (head first, then the whole network)."""

    l2sp: float = Field(0.0, ge=0, description="L2-SP strength alpha: adds alpha/2 * ||w - w_pretrained||^2 "
                                               "over backbone weights to the loss (and replaces weight decay). "
                                               "0 disables it.")
    l2sp_beta: float = Field(0.01, ge=0, description="With L2-SP on: beta/2 * ||w||^2 over the head's weights.")


class L2SPConfig(FinetuneConfig):
    """Fine-tuning with L2-SP regularisation toward the pre-trained weights on by default."""

    search_space: ClassVar[dict[str, Dimension]] = {
        **{k: v for k, v in FinetuneConfig.search_space.items() if k != "weight_decay"},  # replaced by L2-SP
        "l2sp": FloatRange(1e-3, 1.0, log=True)}

    l2sp: float = Field(0.1, ge=0, description="L2-SP strength alpha: adds alpha/2 * ||w - w_pretrained||^2 "
                                               "over backbone weights to the loss (and replaces weight decay).")


class L2SP:
    """The L2-SP penalty ``alpha/2 * ||w - w0||^2`` (backbone) ``+ beta/2 * ||w_head||^2`` (head weights).

    Args:
        module: The backbone module; its current parameters are the anchor ``w0``.
        alpha: Strength of the pull toward the anchor.
        beta: Strength of the head's plain L2 penalty.
    """

    def __init__(self, module: nn.Module, alpha: float, beta: float) -> None:
        self.anchor = {name: p.detach().clone() for name, p in module.named_parameters()}
        self.alpha, self.beta = alpha, beta

    def __call__(self, net: Classifier) -> torch.Tensor:
        """The penalty for the network's current weights (differentiable)."""
        penalty = self.beta / 2 * (net.head.weight ** 2).sum()
        for name, p in net.body.named_parameters():
            if p.requires_grad:  # frozen weights cannot drift; skipping them saves the work
                penalty = penalty + self.alpha / 2 * ((p - self.anchor[name].to(p.device)) ** 2).sum()
        return penalty


@register_strategy("finetune")
class Finetune(TrainedStrategy):
    """Head on the frozen backbone, then the whole network with layer-wise learning rates; the best epoch
    on validation is kept."""

    config_class = FinetuneConfig

    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        return [head_stage(cfg), Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay)]

    def regularizer(self, backbone: Backbone, cfg: Any, context: FitContext) -> Regularizer | None:
        return L2SP(backbone.module, cfg.l2sp, cfg.l2sp_beta) if cfg.l2sp > 0 else None

    def loop_config(self, cfg: Any) -> TrainingConfig:
        # L2-SP replaces weight decay: decay would pull the weights toward zero, away from the anchor.
        return cfg.model_copy(update={"weight_decay": 0.0}) if cfg.l2sp > 0 else cfg


@register_strategy("l2sp")
class FinetuneL2SP(Finetune):
    """``finetune`` with L2-SP on: weights are pulled toward the pre-trained ones rather than toward zero,
    which keeps more of the source knowledge on small target data."""

    config_class = L2SPConfig
