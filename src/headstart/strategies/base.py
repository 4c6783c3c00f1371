"""The Strategy interface, its registry, and the prologue every loop-trained strategy shares.

A strategy is registered by name (``@register_strategy("finetune")``; the name is the key and is not
repeated) and declares its settings as a typed config. A loop-trained strategy is a short composition: it
says which stages to run (head only, then more of the backbone) and, where it needs them, how to prepare
the backbone, which parameters may train, a regulariser and how to finish; :class:`TrainedStrategy` does the
rest (resolve settings, copy the backbone, a fresh head, the loop, the saved model).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from pydantic import ValidationError
from torch import nn

from headstart.backbones import Backbone, extract_features
from headstart.data import Dataset
from headstart.errors import ConfigError, option
from headstart.model import TransferModel
from headstart.registry import Registry
from headstart.strategies.heads import prototype_head
from headstart.training import FitContext, Stage, StrategyConfig, TrainingConfig, TrainResult, train
from headstart.training.network import Regularizer

#: What the frozen-feature strategies prefer: image features pooled from the last two feature stages, which beat
#: the pooled pre-logits on every image task of ``benchmarks/last2_stages.py`` (+2.6 points for the probe).
FROZEN_FEATURES: dict[str, Any] = {"stages": "last2"}


class Strategy(ABC):
    """A way of training a :class:`~headstart.model.TransferModel` from a backbone and labeled data.

    Args:
        config: A complete config, or ``None`` for defaults.
        **overrides: Individual settings, validated against ``config_class``.

    Raises:
        ConfigError: An unknown setting (the valid ones are listed) or a value that is not allowed.
    """

    #: The registered name (set by :func:`register_strategy`).
    name: ClassVar[str]
    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: Whether ``fit`` selects models on validation data (then ``headstart fit`` carves a validation split
    #: from the training data when the data set has none).
    uses_validation: ClassVar[bool] = False
    #: Whether ``fit`` changes the backbone's weights (then the backbone must be trainable).
    trains_backbone: ClassVar[bool] = False
    #: Whether ``fit`` adapts to unlabeled target data (``FitContext.target``), which is then required.
    needs_target: ClassVar[bool] = False
    #: Backbone preprocessing settings this strategy's runs use where the user leaves them open and the
    #: backbone takes them (:func:`~headstart.backbones.with_preferred`).
    preferred_preprocess: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: StrategyConfig | None = None, **overrides: Any) -> None:
        fields = self.config_class.model_fields
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ConfigError(f"strategy {self.name!r} has no setting {', '.join(map(repr, unknown))}; its settings "
                              f"are: {', '.join(fields)} (see `headstart strategies {self.name}`)")
        base = (config or self.config_class()).model_dump()
        try:
            self.config = self.config_class(**{**base, **overrides})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"invalid settings for strategy {self.name!r}: {problems}") from None

    def resolve(self, modality: str, n_examples: int) -> StrategyConfig:
        """The settings a fit on ``n_examples`` of ``modality`` would run with (defaults filled in)."""
        return self.config

    def unsupported(self, backbone: Backbone) -> str | None:
        """Why this strategy cannot work with ``backbone`` (e.g. it has no BatchNorm to adapt), or ``None``."""
        return None

    def forgetting_skipped(self) -> str | None:
        """Why a fit leaves out the forgetting measure of this strategy's models (a note saying how to ask for
        it), or ``None`` when it measures it."""
        return None

    @abstractmethod
    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        """Train and return a model; ``val`` (if given) is for model selection, never for training. The
        caller's ``backbone`` is not modified."""


#: Every strategy, by name; ``headstart strategies``, the CLI's choices and the contract tests read it.
STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator registering a strategy under ``name`` (which becomes its ``name``)."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        return STRATEGIES.add(name, cls)

    return add


def get_strategy(name: str, **settings: Any) -> Strategy:
    """An instance of the strategy ``name`` with ``settings`` (validated)."""
    return STRATEGIES.get(name)(**settings)


def shared_preprocess(names: Iterable[str]) -> dict[str, Any]:
    """The preprocessing settings every strategy in ``names`` prefers (runs that share features share them)."""
    preferences = [STRATEGIES.get(name).preferred_preprocess for name in names]
    return {key: value for key, value in (preferences[0] if preferences else {}).items()
            if all(key in other and other[key] == value for other in preferences[1:])}


def check_settings(settings: dict[str, Any] | None, arguments: Iterable[str], function: str) -> dict[str, Any]:
    """``settings`` (a copy), checked not to name one of ``function``'s own ``arguments``: run arguments and
    strategy settings are separate namespaces.

    Raises:
        ConfigError: Names the argument and where it belongs.
    """
    settings = dict(settings or {})
    taken = sorted(set(settings) & set(arguments))
    if taken:
        raise ConfigError(f"{', '.join(taken)} {'is an argument' if len(taken) == 1 else 'are arguments'} of "
                          f"{function}, not strategy settings: pass {option(taken[0])} to {function}, not in "
                          f"{option('settings', cli='--set')}")
    return settings


def require_target(strategy: Strategy, context: FitContext) -> Dataset:
    """The unlabeled target data of the run, which ``strategy`` adapts to.

    Raises:
        ConfigError: There is none; names the option that gives it.
    """
    if context.target is None or len(context.target) == 0:
        raise missing_target(strategy)
    return context.target


def missing_target(strategy: Strategy) -> ConfigError:
    """The error for ``strategy`` run without the target data it adapts to."""
    return ConfigError(f"strategy {strategy.name!r} adapts to a target domain: give unlabeled target data with "
                       "target=... (CLI: --target FOLDER_OR_TABLE)")


def list_strategies() -> list[tuple[str, type[Strategy]]]:
    """``(name, class)`` of every registered strategy, in registration order."""
    return STRATEGIES.items()


def new_head(feature_dim: int, n_classes: int, seed: int) -> nn.Linear:
    """A freshly initialised linear head; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(feature_dim, n_classes)


def head_stage(cfg: Any) -> Stage:
    """The head-only stage on the frozen backbone that starts head-first strategies."""
    return Stage("head", cfg.head_epochs, 0, cfg.head_lr)


class TrainedStrategy(Strategy):
    """A strategy that runs the shared training loop; subclasses declare :meth:`stages` and, if they need
    them, :meth:`prepare`, :attr:`trainable`, :meth:`regularizer` and :meth:`finish`."""

    config_class: ClassVar[type[TrainingConfig]] = TrainingConfig
    uses_validation = True
    trains_backbone = True
    #: Restricts which backbone parameters (by name) may train; ``None`` lets every trained group train.
    trainable: ClassVar[Callable[[str], bool] | None] = None

    @abstractmethod
    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        """The phases of training, in order."""

    def prepare(self, backbone: Backbone, cfg: Any, context: FitContext) -> dict[str, Any]:
        """Change the (copied) backbone before training; returns what :meth:`finish` needs."""
        return {}

    def regularizer(self, backbone: Backbone, cfg: Any, context: FitContext) -> Regularizer | None:
        """An extra loss term on the network, or ``None``."""
        return None

    def final_head(self, head: nn.Module) -> nn.Linear:
        """The linear head the saved model keeps of the trained ``head`` (itself, unless training used more)."""
        return head

    def finish(self, backbone: Backbone, head: nn.Linear, prepared: dict[str, Any]) -> dict[str, Any]:
        """Undo what :meth:`prepare` did to the backbone after training; returns extra metrics."""
        return {}

    def initial_head(self, backbone: Backbone, train_data: Dataset, cfg: Any, context: FitContext) -> nn.Linear:
        """A fresh head (seeded), or the prototype head of the frozen features when ``head_init="prototypes"``."""
        n_classes = len(train_data.class_names)
        if getattr(cfg, "head_init", "random") == "prototypes":
            features = extract_features(backbone, train_data, cache=context.cache, batch_size=cfg.batch_size,
                                        progress=context.progress)
            return prototype_head(features, train_data.labels, n_classes)[0]
        return new_head(backbone.feature_dim, n_classes, context.seed)

    def resolve(self, modality: str, n_examples: int) -> Any:
        """The settings with every per-modality default filled in (and epochs raised to ``min_steps``)."""
        return self.config.resolve(modality, n_examples, self.name)

    def loop_config(self, cfg: Any) -> TrainingConfig:
        """The settings the loop runs with (a strategy may change some, e.g. weight decay under L2-SP)."""
        return cfg

    def fit(self, backbone: Backbone, train_data: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        cfg = self.resolve(backbone.modality, len(train_data))
        backbone = copy.deepcopy(backbone)
        prepared = self.prepare(backbone, cfg, context)
        head = self.initial_head(backbone, train_data, cfg, context)
        stages = self.stages(backbone, cfg)
        result = train(backbone, head, train_data, val, stages, self.loop_config(cfg), context,
                       run_key=run_key(self, cfg), trainable=self.trainable,
                       regularizer=self.regularizer(backbone, cfg, context))
        extra = self.finish(backbone, head, prepared)
        head = self.final_head(head)
        # A run the time budget stopped in a head-only stage leaves the backbone as it was loaded.
        trained = any(s.trained_groups != 0 for s in stages if s.name in result.stages_run)
        return trained_model(self, backbone, head, train_data, cfg, result, context,
                             extra_config=prepared.get("config"), backbone_trained=trained,
                             extra_metrics={"stages": [s.name for s in stages], **extra})


def run_key(strategy: Strategy, config: StrategyConfig) -> dict[str, Any]:
    """What identifies a run for checkpoint matching: the strategy and its resolved settings (how often it
    checkpoints changes no result, so it is left out)."""
    return {"strategy": strategy.name, "config": config.model_dump(exclude={"checkpoint_seconds"})}


def trained_model(strategy: Strategy, backbone: Backbone, head: nn.Linear, train_data: Dataset,
                  config: StrategyConfig, result: TrainResult, context: FitContext, *,
                  extra_config: dict[str, Any] | None = None, extra_metrics: dict[str, Any] | None = None,
                  backbone_trained: bool = True) -> TransferModel:
    """The :class:`TransferModel` of a loop-trained strategy, with its settings, seed and training history."""
    return TransferModel(backbone, head, train_data.class_names, strategy=strategy.name,
                         strategy_config={**config.model_dump(), "seed": context.seed, **(extra_config or {}),
                                          "stages_run": result.stages_run, "stop_reason": result.stop_reason},
                         backbone_trained=backbone_trained,
                         metrics={"train": {**result.metrics(), **(extra_metrics or {})}})
