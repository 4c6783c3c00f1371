"""Training from scratch: the backbone's architecture with random weights and the same training budget as
fine-tuning. The baseline that measures what the pre-trained weights bought."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from headstart.backbones.base import Backbone
from headstart.data.base import Dataset
from headstart.model import TransferModel
from headstart.strategies import STRATEGIES
from headstart.strategies.base import FitContext, Strategy
from headstart.strategies.finetune import new_head, run_key, trained_model
from headstart.training import Stage, TrainingConfig, train
from headstart.training.config import extend_defaults


class ScratchConfig(TrainingConfig):
    """Hyperparameters of training from random initialisation. The default epochs equal fine-tuning's
    (head stage + main stage), so the comparison spends the same budget."""

    modality_defaults: ClassVar[dict[str, dict[str, Any]]] = extend_defaults(
        TrainingConfig.modality_defaults, image={"epochs": 6, "lr": 2e-3, "layer_decay": 1.0},
        text={"epochs": 4, "lr": 1e-4, "layer_decay": 1.0})


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


@STRATEGIES.register("scratch")
class Scratch(Strategy):
    """The backbone's architecture re-initialised randomly and trained whole (no head-only stage)."""

    name = "scratch"
    uses_validation = True
    config_class = ScratchConfig

    def fit(self, backbone: Backbone, train_data: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        cfg = self.config.resolve(backbone.modality, len(train_data))
        backbone = copy.deepcopy(backbone)
        reinitialize(backbone.module, cfg.seed)
        head = new_head(backbone.feature_dim, len(train_data.class_names), cfg.seed)
        result = train(backbone, head, train_data, val, [Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay)],
                       cfg, context, run_key=run_key(self, cfg))
        return trained_model(self, backbone, head, train_data, cfg, result)
