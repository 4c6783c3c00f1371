"""Gradual unfreezing (ULMFiT, Howard & Ruder 2018): the head first, then one more layer group per stage from
the top down, then the whole network; discriminative learning rates throughout."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from pydantic import Field

from headstart.backbones.base import Backbone
from headstart.data.base import Dataset
from headstart.model import TransferModel
from headstart.strategies import STRATEGIES
from headstart.strategies.base import FitContext, Strategy
from headstart.strategies.finetune import new_head, run_key, trained_model
from headstart.training import Stage, train
from headstart.training.config import HeadFirstConfig, extend_defaults


class GradualConfig(HeadFirstConfig):
    """Hyperparameters of gradual unfreezing."""

    modality_defaults: ClassVar[dict[str, dict[str, Any]]] = extend_defaults(
        HeadFirstConfig.modality_defaults, image={"epochs": 2}, text={"epochs": 2, "layer_decay": 1 / 2.6})

    epochs: int | None = Field(None, ge=0, description="Epochs of the last stage, with everything unfrozen. "
                                                      "Default: 2, raised to reach `min_steps`.")
    epochs_per_stage: int = Field(1, ge=1, description="Epochs of each intermediate stage (each newly unfrozen "
                                                       "group).")
    groups_per_stage: int = Field(1, ge=1, description="Layer groups unfrozen at each stage, top down.")


def unfreezing_stages(n_groups: int, cfg: GradualConfig) -> list[Stage]:
    """Head only; then the top ``k``, ``2k``, ... groups; then everything (``k = groups_per_stage``)."""
    stages = [Stage("head", cfg.head_epochs, 0, cfg.head_lr)]
    for top in range(cfg.groups_per_stage, n_groups, cfg.groups_per_stage):
        stages.append(Stage(f"top-{top}", cfg.epochs_per_stage, top, cfg.lr, cfg.layer_decay))
    stages.append(Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay))
    return stages


@STRATEGIES.register("gradual")
class GradualUnfreezing(Strategy):
    """ULMFiT's gradual unfreezing: each stage trains one more layer group than the last, top down, which
    protects lower layers from the large gradients of a still-random head."""

    name = "gradual"
    uses_validation = True
    config_class = GradualConfig

    def fit(self, backbone: Backbone, train_data: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        cfg = self.config.resolve(backbone.modality, len(train_data))
        backbone = copy.deepcopy(backbone)
        head = new_head(backbone.feature_dim, len(train_data.class_names), cfg.seed)
        stages = unfreezing_stages(len(backbone.layer_groups()), cfg)
        result = train(backbone, head, train_data, val, stages, cfg, context, run_key=run_key(self, cfg))
        return trained_model(self, backbone, head, train_data, cfg, result,
                             extra_metrics={"stages": [s.name for s in stages]})
