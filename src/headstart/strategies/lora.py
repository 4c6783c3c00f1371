"""LoRA (Hu et al. 2021) through Hugging Face PEFT: low-rank adapters on the backbone's projection layers,
the rest of the backbone frozen, the head trained fully. After training the adapters are merged into the
backbone's weights, so the saved model is a plain backbone + head that reloads exactly."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from headstart.backbones import Backbone
from headstart.errors import ConfigError
from headstart.strategies.base import TrainedStrategy, head_stage, register_strategy
from headstart.training import FitContext, HeadFirstConfig, Stage
from headstart.training.search_space import Choice, Dimension, FloatRange

# Attention projections LoRA adapts by default (query and value, as in the LoRA paper) across text model
# families: BERT-like, LLaMA/BART-like, DistilBERT, T5, GPT-2.
_ATTENTION_TARGETS = {"query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "q", "v", "c_attn"}


class LoraConfig(HeadFirstConfig):
    """Hyperparameters of LoRA fine-tuning: a head-only stage, then adapters and head together."""

    strategy_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "layer_decay": 1.0}
    search_space: ClassVar[dict[str, Dimension]] = {**HeadFirstConfig.search_space,
                                                    "rank": Choice((4, 8, 16, 32)),
                                                    "lora_alpha": FloatRange(4.0, 64.0, log=True)}

    rank: int = Field(8, ge=1, description="Rank r of each low-rank update.")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling alpha (the update is scaled by alpha / r).")
    lora_dropout: float | None = Field(None, ge=0, lt=1, description="Dropout on the adapters' input. "
                                                                     "Default: per modality (0 for images, 0.1 "
                                                                     "for text).")
    target_modules: list[str] | None = Field(None, description="Names (or name suffixes) of the backbone's "
                                             "modules to adapt. Default: chosen from the module types: attention "
                                             "query/value projections for text, every Linear and non-grouped "
                                             "Conv2d for images.")


def lora_targets(module: nn.Module, modality: str) -> list[str]:
    """The module names LoRA adapts by default in ``module`` (see :class:`LoraConfig.target_modules`)."""
    if modality == "text":
        attention = [name for name, sub in module.named_modules()
                     if name.rsplit(".", 1)[-1] in _ATTENTION_TARGETS and not list(sub.children())]
        if attention:
            return attention
        return [name for name, sub in module.named_modules() if isinstance(sub, nn.Linear)]
    return [name for name, sub in module.named_modules()
            if isinstance(sub, nn.Linear) or (isinstance(sub, nn.Conv2d) and sub.groups == 1)]


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter name belongs to a LoRA adapter."""
    return "lora_" in name


@register_strategy("lora")
class Lora(TrainedStrategy):
    """Low-rank adapters on the frozen backbone plus a fully trained head; a few percent of the parameters
    train, so it fits in less memory and overfits less on small data."""

    config_class = LoraConfig
    trainable = staticmethod(is_adapter_parameter)

    def prepare(self, backbone: Backbone, cfg: Any, context: FitContext) -> dict[str, Any]:
        from peft import LoraConfig as PeftLoraConfig
        from peft import LoraModel

        targets = cfg.target_modules or lora_targets(backbone.module, backbone.modality)
        if not targets:
            raise ConfigError(f"found no Linear or Conv2d layers for LoRA in backbone {backbone.ref!r}; "
                              "name them with target_modules")
        peft_config = PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                     target_modules=targets)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            try:
                adapted = LoraModel(backbone.module, peft_config, "default")
            except ValueError as err:
                raise ConfigError(f"cannot apply LoRA to backbone {backbone.ref!r}: {err}") from None
        adapter_params = sum(p.numel() for name, p in backbone.module.named_parameters()
                             if is_adapter_parameter(name))
        return {"adapted": adapted, "adapter_parameters": adapter_params, "config": {"target_modules": targets}}

    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        # The head is trained alone first: a random head's gradients would otherwise steer the adapters.
        return [head_stage(cfg), Stage("lora", cfg.epochs, None, cfg.lr, cfg.layer_decay)]

    def finish(self, backbone: Backbone, head: nn.Linear, prepared: dict[str, Any]) -> dict[str, Any]:
        # Merged adapters make the saved model a plain backbone + head that reloads exactly.
        backbone.module = prepared["adapted"].merge_and_unload()
        return {"adapter_parameters": prepared["adapter_parameters"],
                "head_parameters": sum(p.numel() for p in head.parameters()),
                "backbone_parameters": sum(p.numel() for p in backbone.module.parameters())}
