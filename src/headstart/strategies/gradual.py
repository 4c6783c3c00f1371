"""Gradual unfreezing (ULMFiT, Howard & Ruder 2018): the head first, then one more layer group per stage from
the top down, then the whole network; discriminative learning rates throughout."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from headstart.backbones import Backbone
from headstart.strategies.base import TrainedStrategy, head_stage, register_strategy
from headstart.training import HeadFirstConfig, Stage
from headstart.training.search_space import Dimension, IntRange


class GradualConfig(HeadFirstConfig):
    """Hyperparameters of gradual unfreezing."""

    strategy_defaults: ClassVar[dict[str, Any]] = {"epochs": 2}

    epochs: int | None = Field(None, ge=0, description="Epochs of the last stage, with everything unfrozen. "
                                                      "Default: 2, raised to reach `min_steps`.")
    search_space: ClassVar[dict[str, Dimension]] = {**HeadFirstConfig.search_space,
                                                    "epochs_per_stage": IntRange(1, 3)}

    epochs_per_stage: int = Field(1, ge=1, description="Epochs of each intermediate stage (each newly unfrozen "
                                                       "group).")
    groups_per_stage: int = Field(1, ge=1, description="Layer groups unfrozen at each stage, top down.")


def unfreezing_stages(n_groups: int, cfg: GradualConfig) -> list[Stage]:
    """Head only; then the top ``k``, ``2k``, ... groups; then everything (``k = groups_per_stage``)."""
    stages = [head_stage(cfg)]
    for top in range(cfg.groups_per_stage, n_groups, cfg.groups_per_stage):
        stages.append(Stage(f"top-{top}", cfg.epochs_per_stage, top, cfg.lr, cfg.layer_decay))
    stages.append(Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay))
    return stages


@register_strategy("gradual")
class GradualUnfreezing(TrainedStrategy):
    """ULMFiT's gradual unfreezing: each stage trains one more layer group than the last, top down, which
    protects lower layers from the large gradients of a still-random head."""

    config_class = GradualConfig

    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        return unfreezing_stages(len(backbone.layer_groups()), cfg)
