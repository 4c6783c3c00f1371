"""Prototypes: the few-shot classifier that needs no training — each class is the mean of its examples'
frozen features, and an input belongs to the nearest class mean by cosine (Snell et al. 2017; SimpleShot,
Wang et al. 2019). Costs little more than feature extraction, works from one example per class, and needs
no validation split."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from headstart.backbones import Backbone, extract_features
from headstart.data import Dataset
from headstart.model import TransferModel
from headstart.strategies.base import FROZEN_FEATURES, Strategy, register_strategy
from headstart.strategies.heads import prototype_head
from headstart.training import FitContext, StrategyConfig
from headstart.training.search_space import Dimension, FloatRange


class PrototypesConfig(StrategyConfig):
    """Settings of the nearest-class-mean classifier."""

    search_space: ClassVar[dict[str, Dimension]] = {"standardize": FloatRange(0.0, 1.0)}

    standardize: float = Field(0.5, ge=0, le=1, description="Scale each feature dimension by this share toward "
                               "unit variance before the cosine (0: plain cosine; 1: every dimension weighs the "
                               "same, noisy on few examples).")


@register_strategy("prototypes")
class Prototypes(Strategy):
    """Nearest class mean on cached frozen features by cosine (each dimension first scaled part-way to unit
    variance, ``standardize``), with a temperature fitted by leave-one-out. No training: the few-shot baseline,
    usable from one example per class."""

    config_class = PrototypesConfig
    preferred_preprocess = FROZEN_FEATURES

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> TransferModel:
        cfg = self.config
        features = extract_features(backbone, train, cache=context.cache, batch_size=cfg.batch_size,
                                    progress=context.progress)
        head, info = prototype_head(features, train.labels, len(train.class_names),
                                      standardize=cfg.standardize)
        return TransferModel(backbone, head, train.class_names, strategy=self.name,
                             strategy_config={**cfg.model_dump(), "seed": context.seed, "scale": info["scale"]},
                             metrics={"train": {"loo_accuracy": info["loo_accuracy"]}})
