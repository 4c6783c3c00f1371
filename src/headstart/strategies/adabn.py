"""AdaBN (Li et al., 2016, "Revisiting batch normalization for practical domain adaptation"): a network's
BatchNorm layers are given statistics re-estimated on each domain, so that each domain is normalised by its
own mean and variance.

Here the source training images are normalised by their own statistics while the linear probe is fitted on
their features, and the saved model carries statistics re-estimated on the unlabeled target images. No weight
is trained: re-estimating costs one forward pass over each domain. For a change of brightness or contrast the
first BatchNorm undoes the shift exactly; for shifts no per-channel affine map describes (e.g. inverted
images) it helps less.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from headstart.backbones import Backbone, extract_features
from headstart.data import Dataset
from headstart.errors import ConfigError
from headstart.progress import track
from headstart.strategies.base import register_strategy, require_target
from headstart.strategies.linear import LinearConfig, LinearProbe
from headstart.training import FitContext


class AdaBNConfig(LinearConfig):
    """The linear probe's settings, and which statistics the source features are computed with."""

    source_statistics: bool = Field(True, description="Re-estimate BatchNorm statistics on the source training "
                                                      "images before extracting their features, so each domain "
                                                      "is normalised by its own statistics (as in AdaBN); False "
                                                      "keeps the backbone's own (pre-training) statistics for "
                                                      "them and reuses cached features.")
    layers: int | None = Field(None, ge=1, description="Adapt only this many BatchNorm layers, counted from the "
                                                      "input (a change of contrast or brightness lives in the "
                                                      "first one); None adapts all of them, as AdaBN does.")


def batch_norms(module: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``module``, in order."""
    return [layer for layer in module.modules() if isinstance(layer, _BatchNorm)]


@torch.no_grad()
def reestimate_batch_norm(backbone: Backbone, items: list[Any], *, layers: int | None = None, batch_size: int = 64,
                          progress: bool = False, label: str = "") -> None:
    """Replace the running mean and variance of the first ``layers`` BatchNorm layers of ``backbone`` (all of
    them for ``None``; in place) by their averages over ``items`` (evaluation preprocessing); every other weight
    and statistic stays as it is."""
    layers = batch_norms(backbone.module)[:layers]
    saved = [(layer.momentum, layer.training) for layer in layers]
    backbone.module.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over every batch, not an exponential one
        layer.train()
    try:
        for batch in track(backbone.batches(items, batch_size), total=-(-len(items) // batch_size),
                           unit="batches", description=f"BatchNorm statistics {label}", enabled=progress):
            backbone.forward(backbone.collate(batch))
    finally:
        for layer, (momentum, training) in zip(layers, saved, strict=True):
            layer.momentum = momentum
            layer.train(training)
        backbone.module.eval()


@register_strategy("adabn")
class AdaBN(LinearProbe):
    """Linear probe whose backbone normalises each domain with its own BatchNorm statistics (AdaBN): the saved
    model's statistics are re-estimated on unlabeled target images. Needs a backbone with BatchNorm."""

    config_class = AdaBNConfig
    needs_target = True

    def unsupported(self, backbone: Backbone) -> str | None:
        if not batch_norms(backbone.module):
            return (f"strategy 'adabn' re-estimates BatchNorm statistics, and backbone {backbone.ref!r} has no "
                    "BatchNorm layer; use coral or dann, which work with any backbone")
        return None

    def adapt(self, backbone: Backbone, train: Dataset, context: FitContext
              ) -> tuple[Backbone, np.ndarray, dict[str, Any]]:
        """A copy of the backbone with target statistics, and the source features under source statistics."""
        reason = self.unsupported(backbone)
        if reason is not None:
            raise ConfigError(reason)
        target = require_target(self, context)
        cfg = self.config
        adapted = copy.deepcopy(backbone)
        if cfg.source_statistics:
            reestimate_batch_norm(adapted, train.items, layers=cfg.layers, batch_size=cfg.batch_size,
                                  progress=context.progress, label="train")
            features = extract_features(adapted, train, cache=context.cache, batch_size=cfg.batch_size,
                                        progress=context.progress, label="train")
        else:
            features = super().adapt(backbone, train, context)[1]
        reestimate_batch_norm(adapted, target.items, layers=cfg.layers, batch_size=cfg.batch_size,
                              progress=context.progress, label="target")
        adapted_layers = len(batch_norms(adapted.module)[:cfg.layers])
        return adapted, features, {"n_target": len(target), "adapted_batch_norm_layers": adapted_layers}
