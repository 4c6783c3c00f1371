"""Contrastive fine-tuning for few-shot data (as SetFit, Tunstall et al. 2022, and FastFit, Yehudai & Bendel
2024, do for sentence encoders): first pull the embeddings of examples of the same class together and push other
classes apart over each batch's pairs, with SetFit's cosine-similarity pair loss (the default) or the supervised
contrastive loss (``loss="supcon"``, Khosla et al. 2020); then average the tuned weights with the pretrained ones
(WiSE-FT, ``interpolate``, 0.5 by default) and fit the linear probe on the resulting embeddings.

Every batch of the shared training loop compares all its examples with each other (in-batch positives and
negatives), so the work is linear in the number of steps, and the steps grow linearly with the data up to a
cap: no list of O(n^2) pairs is ever built (SetFit's pair generation runs out of memory on a few thousand
examples).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.model import TransferModel
from headstart.progress import status
from headstart.strategies.base import TrainedStrategy, register_strategy, run_key, trained_model
from headstart.strategies.heads import prototype_head
from headstart.strategies.linear import fit_linear_head, head_fit_status
from headstart.training import FitContext, Stage, TrainingConfig, train


class ContrastiveConfig(TrainingConfig):
    """Settings of contrastive fine-tuning; the number of steps follows the data size (``passes``) within
    ``min_steps`` and ``max_steps``, unless ``epochs`` is given."""

    strategy_defaults: ClassVar[dict[str, Any]] = {"layer_decay": 1.0, "augment": "off"}

    min_steps: int = Field(20, ge=0, description="Fewest optimisation steps of the contrastive stage.")
    max_steps: int = Field(300, ge=1, description="Most optimisation steps of the contrastive stage (keeps the "
                                                  "cost linear and bounded on larger data).")
    passes: float = Field(20.0, gt=0, description="Passes over the training data the contrastive stage aims "
                                                  "at, within min_steps..max_steps.")
    loss: Literal["supcon", "cosine"] = Field("cosine", description="Loss over the batch's pairs: 'cosine' "
                                              "SetFit's squared error of the cosine similarity to 1 (same class) "
                                              "or 0, positive and negative pairs weighted equally; 'supcon' the "
                                              "supervised contrastive loss (Khosla et al.). The default with "
                                              "interpolate=0.5 was chosen on selection data (benchmarks/"
                                              "fewshot_selection.py: mean 63.1 against 62.2 for supcon at 0.75) "
                                              "and measured at 8 examples per class, 3 seeds: 82.3 +- 0.6 on "
                                              "WordNet nouns and 35.8 +- 1.2 on verbs against SetFit's 82.0 +- "
                                              "0.5 and 35.0 +- 1.8 at 0.28x its CPU time (python benchmarks/"
                                              "fewshot.py --tasks noun verb --methods contrastive).")
    temperature: float = Field(0.07, gt=0, description="Temperature of the supervised contrastive loss.")
    interpolate: float = Field(0.5, ge=0, le=1, description="Weight of the tuned backbone in the final one: "
                               "1 keeps the tuned weights, below 1 averages them with the pretrained ones "
                               "(WiSE-FT, Wortsman et al. 2022), which keeps some of what tuning on a few "
                               "examples would forget (0.5 chosen with loss='cosine', see loss).")
    head: Literal["probe", "prototypes"] = Field("probe", description="The classifier fitted on the tuned "
                                                 "embeddings: 'probe' the linear probe (C by cross-validation "
                                                 "unless probe_c is given), 'prototypes' the nearest class mean "
                                                 "by cosine (what the contrastive loss pulls examples towards).")
    probe_c: float | None = Field(None, gt=0, description="C of the final linear probe; None chooses it by "
                                                          "cross-validation.")


def supervised_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Khosla et al.'s SupCon loss of one batch: for every example with another of its class in the batch, the
    mean negative log-probability of those positives among all other examples, by cosine similarity /
    ``temperature``.

    Example:
        >>> supervised_contrastive_loss(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), 0.1)
    """
    unit = nn.functional.normalize(features, dim=1)
    logits = unit @ unit.T / temperature
    self_mask = torch.eye(len(labels), dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    anchors = positives.any(dim=1)
    if not anchors.any():  # no two examples of one class in this batch: nothing to pull together
        return features.sum() * 0.0
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1).clamp(min=1)
    return per_anchor[anchors].mean()


def cosine_pair_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SetFit's cosine-similarity loss over every pair of one batch: the squared difference between the pair's
    cosine similarity and 1 (same class) or 0 (different classes), the mean over positive pairs and the mean
    over negative pairs weighted equally (in-batch pairs are mostly negative; SetFit samples them 1:1).

    Example:
        >>> cosine_pair_loss(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    """
    unit = nn.functional.normalize(features, dim=1)
    errors = (unit @ unit.T - (labels[:, None] == labels[None, :]).to(unit.dtype)) ** 2
    pairs = ~torch.eye(len(labels), dtype=torch.bool, device=features.device)
    same = (labels[:, None] == labels[None, :]) & pairs
    parts = [errors[mask].mean() for mask in (same, pairs & ~same) if mask.any()]
    return torch.stack(parts).mean() if parts else features.sum() * 0.0


def interpolate_weights(tuned: Backbone, pretrained: Backbone, weight: float) -> None:
    """Give ``tuned`` the weights ``weight * tuned + (1 - weight) * pretrained`` (WiSE-FT, Wortsman et al.
    2022): floating-point weights and buffers only; both backbones have the same architecture."""
    original = pretrained.module.state_dict()
    tuned.load_weights({name: weight * value + (1.0 - weight) * original[name].to(value.device)
                        if value.is_floating_point() else value
                        for name, value in tuned.module.state_dict().items()})


@register_strategy("contrastive")
class Contrastive(TrainedStrategy):
    """Few-shot: contrastive fine-tuning of the backbone on in-batch pairs, averaged with the pretrained weights,
    then the linear probe on the tuned embeddings (SetFit-style, bounded steps, no pair list)."""

    config_class = ContrastiveConfig
    # SetFit selects nothing on validation data either: few-shot data is too small to spare a split.
    uses_validation = False

    def resolve(self, modality: str, n_examples: int) -> Any:
        cfg = self.config.resolve(modality, None, self.name)
        if self.config.epochs is not None:
            return cfg
        per_epoch = max(math.ceil(n_examples / cfg.batch_size), 1)
        steps = min(cfg.max_steps, max(cfg.min_steps, math.ceil(cfg.passes * n_examples / cfg.batch_size)))
        return cfg.model_copy(update={"epochs": max(math.ceil(steps / per_epoch), 1)})

    @staticmethod
    def criterion(cfg: Any) -> Any:
        """The loss of a batch's embeddings and labels that ``cfg.loss`` names."""
        if cfg.loss == "cosine":
            return cosine_pair_loss
        return lambda outputs, labels: supervised_contrastive_loss(outputs, labels, cfg.temperature)

    def stages(self, backbone: Backbone, cfg: Any) -> list[Stage]:
        return [Stage("contrastive", cfg.epochs, None, cfg.lr, cfg.layer_decay)]

    def fit(self, backbone: Backbone, train_data: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        cfg = self.resolve(backbone.modality, len(train_data))
        tuned = copy.deepcopy(backbone)
        stages = self.stages(tuned, cfg)
        result = train(tuned, nn.Identity(), train_data, None, stages, cfg, context,
                       run_key=run_key(self, cfg),
                       criterion=self.criterion(cfg))
        if cfg.interpolate < 1.0:
            interpolate_weights(tuned, backbone, cfg.interpolate)
        features = tuned.embed(train_data.items, batch_size=cfg.batch_size, progress=context.progress,
                               label="train")
        n_classes = len(train_data.class_names)
        if cfg.head == "prototypes":
            head, fitted = prototype_head(features, train_data.labels, n_classes)
            chosen = {"scale": fitted["scale"]}
        else:
            with status(head_fit_status(cfg.probe_c, 12, 5), enabled=context.progress):
                head, fitted = fit_linear_head(features, train_data.labels, n_classes, c=cfg.probe_c,
                                               seed=context.seed)
            chosen = {"probe_C": fitted["C"]}
        return trained_model(self, tuned, head.float(), train_data, cfg, result, context, extra_config=chosen,
                             extra_metrics={"stages": [s.name for s in stages], cfg.head: fitted})
