"""Fine-tuning, fastai style: train the new head on the frozen backbone, then unfreeze everything and train
with discriminative (layer-wise) learning rates under a warmup + cosine or one-cycle schedule.

``l2sp`` is the same strategy with L2-SP regularisation on (Li et al. 2018, "Explicit inductive bias for
transfer learning with convolutional networks"): the backbone is pulled toward its pre-trained weights
instead of toward zero.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from headstart.backbones.base import Backbone
from headstart.data.base import Dataset
from headstart.model import TransferModel
from headstart.strategies import STRATEGIES
from headstart.strategies.base import FitContext, Strategy
from headstart.training import Classifier, Stage, TrainingConfig, TrainResult, train
from headstart.training.config import HeadFirstConfig


class FinetuneConfig(HeadFirstConfig):
    """Hyperparameters of fastai-style fine-tuning (head first, then the whole network)."""

    l2sp: float = Field(0.0, ge=0, description="L2-SP strength alpha: adds alpha/2 * ||w - w_pretrained||^2 "
                                               "over backbone weights to the loss (and replaces weight decay). "
                                               "0 disables it.")
    l2sp_beta: float = Field(0.01, ge=0, description="With L2-SP on: beta/2 * ||w||^2 over the head's weights.")


class L2SPConfig(FinetuneConfig):
    """Fine-tuning with L2-SP regularisation toward the pre-trained weights on by default."""

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


def new_head(feature_dim: int, n_classes: int, seed: int) -> nn.Linear:
    """A freshly initialised linear head; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(feature_dim, n_classes)


def run_key(strategy: Strategy, config: TrainingConfig) -> dict[str, Any]:
    """What identifies a run for checkpoint matching: the strategy and its resolved settings."""
    return {"strategy": strategy.name, "config": config.model_dump()}


def trained_model(strategy: Strategy, backbone: Backbone, head: nn.Linear, train_data: Dataset,
                  config: TrainingConfig, result: TrainResult, *, extra_config: dict[str, Any] | None = None,
                  extra_metrics: dict[str, Any] | None = None, backbone_trained: bool = True) -> TransferModel:
    """The :class:`TransferModel` of a loop-trained strategy, with its settings and training history."""
    return TransferModel(backbone, head, train_data.class_names, strategy=strategy.name,
                         strategy_config={**config.model_dump(), **(extra_config or {})},
                         backbone_trained=backbone_trained,
                         metrics={"train": {**result.metrics(), **(extra_metrics or {})}})


@STRATEGIES.register("finetune")
class Finetune(Strategy):
    """Head on the frozen backbone, then the whole network with layer-wise learning rates; the best epoch
    on validation is kept. The caller's backbone is not modified (a copy is trained)."""

    name = "finetune"
    uses_validation = True
    config_class = FinetuneConfig

    def fit(self, backbone: Backbone, train_data: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        cfg = self.config.resolve(backbone.modality, len(train_data))
        backbone = copy.deepcopy(backbone)
        head = new_head(backbone.feature_dim, len(train_data.class_names), cfg.seed)
        stages = [Stage("head", cfg.head_epochs, 0, cfg.head_lr),
                  Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay)]
        regularizer = None
        loop_cfg = cfg
        if cfg.l2sp > 0:
            regularizer = L2SP(backbone.module, cfg.l2sp, cfg.l2sp_beta)
            loop_cfg = cfg.model_copy(update={"weight_decay": 0.0})
        result = train(backbone, head, train_data, val, stages, loop_cfg, context, run_key=run_key(self, cfg),
                       regularizer=regularizer)
        return trained_model(self, backbone, head, train_data, cfg, result)


@STRATEGIES.register("l2sp")
class FinetuneL2SP(Finetune):
    """``finetune`` with L2-SP on: weights are pulled toward the pre-trained ones rather than toward zero,
    which keeps more of the source knowledge on small target data."""

    name = "l2sp"
    config_class = L2SPConfig
