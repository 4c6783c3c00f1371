"""AdaBN (Li et al., 2016, "Revisiting batch normalization for practical domain adaptation"): a network's
BatchNorm layers are given statistics re-estimated on each domain, so that each domain is normalised by its
own mean and variance.

Here the linear probe is fitted on the source training images' cached frozen features, and the saved model
carries statistics re-estimated on the unlabeled target images; by default only the first BatchNorm layer's,
where a change of brightness or contrast lives (the first BatchNorm undoes a per-channel affine change of the
pixels exactly; for shifts no such map describes, e.g. inverted images, it helps less). No weight is trained:
re-estimating costs a pass over the target images that stops after the last re-estimated layer. Optionally
(``source_statistics``) the source images are normalised by their own statistics too, at the cost of one more
forward pass over them.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, ClassVar

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

    source_statistics: bool = Field(False, description="Re-estimate BatchNorm statistics on the source training "
                                    "images too and extract their features again, so each domain is normalised by "
                                    "its own statistics; False fits the head on the backbone's cached features. On "
                                    "Fashion-MNIST -> low contrast (efficientnet_lite0, first layer, 3 seeds) True "
                                    "gained 2.5 points of target accuracy (79.8% against 77.3%) for one more "
                                    "forward pass over the training images (median CPU time 38% above the linear "
                                    "probe's, against 19%).")
    layers: int | None = Field(1, ge=1, description="Re-estimate only this many BatchNorm layers, counted from "
                               "the input (a change of contrast or brightness lives in the first one); None "
                               "re-estimates all of them, as AdaBN does. On Fashion-MNIST -> low contrast "
                               "(efficientnet_lite0, 3 seeds) the first layer gave 79.8% target accuracy (source "
                               "statistics) or 77.3% (backbone statistics), all layers 57.7% or 12%, the linear "
                               "probe 68.3%: re-normalising deep layers on a few hundred images of one kind "
                               "damages the features the head reads.")
    forgetting: bool = Field(False, description="Measure what the re-estimated statistics changed in the "
                             "backbone's features (forgetting: the source and the adapted backbone on the bundled "
                             "reference set and the test split) during the fit. Off by default: on Fashion-MNIST "
                             "-> low contrast it added 1.2 CPU seconds (median of 3 seeds), 11% of the linear "
                             "probe's time, more than the adaptation itself; `headstart evaluate MODEL DATA "
                             "--forgetting` measures it later on the saved model.")


def batch_norms(module: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``module``, in order."""
    return [layer for layer in module.modules() if isinstance(layer, _BatchNorm)]


class _LastLayerDone(Exception):
    """Raised by a hook on the last re-estimated BatchNorm layer: the layers after it cannot change its
    statistics, so the rest of the forward pass is skipped."""


@torch.no_grad()
def reestimate_batch_norm(backbone: Backbone, items: list[Any], *, layers: int | None = None, batch_size: int = 64,
                          progress: bool = False, label: str = "") -> None:
    """Replace the running mean and variance of the first ``layers`` BatchNorm layers of ``backbone`` (all of
    them for ``None``; in place) by their averages over ``items`` (evaluation preprocessing); every other weight
    and statistic stays as it is. Each batch runs only up to the last of those layers."""
    layers = batch_norms(backbone.module)[:layers]
    if not layers:
        raise ValueError(f"backbone {backbone.ref!r} has no BatchNorm layer to re-estimate")
    saved = [(layer.momentum, layer.training) for layer in layers]
    backbone.module.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.train()

    def stop(*_: Any) -> None:
        raise _LastLayerDone

    hook = layers[-1].register_forward_hook(stop)
    seen = 0
    try:
        for batch in track(backbone.batches(items, batch_size), total=-(-len(items) // batch_size),
                           unit="batches", description=f"BatchNorm statistics {label}", enabled=progress):
            seen += len(batch)
            for layer in layers:  # an average over examples: a short last batch weighs what its examples do
                layer.momentum = len(batch) / seen
            with contextlib.suppress(_LastLayerDone):
                backbone.forward(backbone.collate(batch))
    finally:
        hook.remove()
        for layer, (momentum, training) in zip(layers, saved, strict=True):
            layer.momentum = momentum
            layer.train(training)
        backbone.module.eval()


@register_strategy("adabn")
class AdaBN(LinearProbe):
    """Linear probe whose backbone normalises each domain with its own BatchNorm statistics (AdaBN): the saved
    model's statistics are re-estimated on unlabeled target images. Needs a backbone with BatchNorm."""

    config_class = AdaBNConfig
    # The pooled pre-logits: domain adaptation has not been measured on two-stage features.
    preferred_preprocess: ClassVar[dict[str, Any]] = {}
    needs_target = True

    def unsupported(self, backbone: Backbone) -> str | None:
        if not batch_norms(backbone.module):
            return (f"strategy 'adabn' re-estimates BatchNorm statistics, and backbone {backbone.ref!r} has no "
                    "BatchNorm layer; use coral or dann, which work with any backbone")
        return None

    def forgetting_skipped(self) -> str | None:
        if self.config.forgetting:
            return None
        return ("adabn changes only BatchNorm statistics, and measuring what that changed costs "
                "more than adapting them; set forgetting=true (CLI: --set forgetting=true) to measure it during "
                "the fit, or run `headstart evaluate MODEL DATA --forgetting` on the saved model")

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
