"""Training from scratch: the backbone's architecture with random weights and the same training budget as
fine-tuning. The baseline that measures what the pre-trained weights bought."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from headstart.backbones import Backbone
from headstart.strategies.base import TrainedStrategy, register_strategy
from headstart.training import FitContext, Stage, TrainingConfig
from headstart.training.search_space import Dimension


class ScratchConfig(TrainingConfig):
    """Hyperparameters of training from random initialisation. The default epochs equal fine-tuning's
    (head stage + main stage), so the comparison spends the same budget."""

    strategy_defaults: ClassVar[dict[str, Any]] = {"layer_decay": 1.0}
    # Random weights have no pre-trained lower layers to protect: no layer-wise decay to search.
    search_space: ClassVar[dict[str, Dimension]] = {
        k: v for k, v in TrainingConfig.search_space.items() if k != "layer_decay"}


def reinitialize(module: nn.Module, seed: int) -> None:
    """Re-draw every weight of ``module`` from its layers' own initialisers, reproducibly.

    Each submodule's ``reset_parameters()`` runs (convolutions, linear layers, embeddings, normalization
    layers, whose running statistics reset too); Hugging Face models then apply their own ``_init_weights``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()
        for sub in module.modules():
            init = getattr(sub, "_init_weights", None)
            if callable(init) and hasattr(sub, "config"):
                sub.apply(init)
                break


@register_strategy("scratch")
class Scratch(TrainedStrategy):
    """The backbone's architecture re-initialised randomly and trained whole (no head-only stage)."""

    config_class = ScratchConfig

    def prepare(self, backbone: Backbone, cfg: Any, context: FitContext) -> dict[str, Any]:
        reinitialize(backbone.module, context.seed)
        return {}

    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        return [Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay)]
