"""LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features and underperform
out-of-distribution"): fit a linear probe to convergence on frozen features, then fine-tune the whole network
from that head with a small learning rate, so early gradients do not distort the features. The probe is kept
instead when fine-tuning does not beat it on validation data."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from headstart.backbones import Backbone, extract_features
from headstart.data import Dataset
from headstart.model import TransferModel
from headstart.progress import status
from headstart.strategies.base import TrainedStrategy, register_strategy, run_key, trained_model
from headstart.strategies.linear import fit_linear_head, head_fit_status
from headstart.training import FitContext, Stage, TrainingConfig, train
from headstart.training.search_space import Dimension, FloatRange


class LPFTConfig(TrainingConfig):
    """Hyperparameters of LP-FT: the probe's, then fine-tuning's (small, uniform learning rate)."""

    strategy_defaults: ClassVar[dict[str, Any]] = {"layer_decay": 1.0}
    search_space: ClassVar[dict[str, Dimension]] = {**TrainingConfig.search_space,
                                                    "probe_c": FloatRange(1e-4, 1e2, log=True)}

    probe_c: float | None = Field(None, gt=0, description="Inverse regularization strength of the probe; None "
                                                          "chooses it by cross-validation.")
    probe_c_values: int = Field(12, ge=1, description="Candidate C values for the probe's cross-validation.")
    probe_folds: int = Field(5, ge=2, description="Cross-validation folds of the probe.")
    probe_max_iter: int = Field(1000, ge=10, description="Solver iterations of the probe.")


@register_strategy("lp-ft")
class LinearProbeThenFinetune(TrainedStrategy):
    """Linear probe on cached frozen features, then whole-network fine-tuning starting from the probe."""

    config_class = LPFTConfig

    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        return [Stage("all", cfg.epochs, None, cfg.lr, cfg.layer_decay)]

    def fit(self, backbone: Backbone, train_data: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        cfg = self.resolve(backbone.modality, len(train_data))
        features = extract_features(backbone, train_data, cache=context.cache, batch_size=cfg.batch_size,
                                    progress=context.progress, label="train")
        with status(head_fit_status(cfg.probe_c, cfg.probe_c_values, cfg.probe_folds), enabled=context.progress):
            head, probe = fit_linear_head(features, train_data.labels, len(train_data.class_names),
                                          c=cfg.probe_c, c_values=cfg.probe_c_values, folds=cfg.probe_folds,
                                          max_iter=cfg.probe_max_iter, seed=context.seed)
        head = head.float()
        probe_head = copy.deepcopy(head)
        tuned = copy.deepcopy(backbone)
        result = train(tuned, head, train_data, val, self.stages(tuned, cfg), cfg, context,
                       run_key=run_key(self, cfg))
        probe["val_accuracy"] = self._val_accuracy(backbone, probe_head, val, context, cfg.batch_size)
        tuned_accuracy = (result.best or {}).get("val_accuracy")
        # Fine-tuning on little data (or a short budget) can distort good features; the probe is a model in
        # its own right, so keep it when fine-tuning does not beat it on validation.
        if probe["val_accuracy"] is not None and (tuned_accuracy is None or tuned_accuracy <= probe["val_accuracy"]):
            return trained_model(self, backbone, probe_head, train_data, cfg, result, context,
                                 backbone_trained=False, extra_config={"probe_C": probe["C"], "kept": "probe"},
                                 extra_metrics={"probe": probe, "kept": "probe"})
        return trained_model(self, tuned, head, train_data, cfg, result, context,
                             extra_config={"probe_C": probe["C"], "kept": "fine-tuned"},
                             extra_metrics={"probe": probe, "kept": "fine-tuned"})

    @staticmethod
    def _val_accuracy(backbone: Backbone, head: nn.Linear, val: Dataset | None, context: FitContext,
                      batch_size: int) -> float | None:
        if val is None or len(val) == 0:
            return None
        features = extract_features(backbone, val, cache=context.cache, batch_size=batch_size)
        with torch.no_grad():
            predicted = head(torch.from_numpy(features)).argmax(1).numpy()
        return float((predicted == val.labels).mean())
