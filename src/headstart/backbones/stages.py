"""Image features pooled from the last two feature stages of a timm network, not from its end alone.

A network's pooled pre-logits are tuned to its pre-training classes; its last feature stages are less so, and a
linear probe on a task far from those classes (digits, clothing) finds more in them. With the image
preprocessing setting ``stages="last2"`` (:class:`~headstart.backbones.preprocess.ImagePreprocess`) the
features are the global averages of the last two of timm's feature stages (``feature_info``: the stages where
the resolution halves), concatenated:

* EfficientNet (the bundled EfficientNet-Lite0): the last two block stages, 112 + 320 channels, without the
  1280-channel head convolution that follows them (measured the better pair: ``benchmarks/last2_stages.py``).
* ResNet: ``layer3`` and ``layer4`` (ResNet-50: 1024 + 2048; ``layer4`` pooled is the usual feature vector).

The network is pruned to those stages when the backbone is built (timm's ``prune_intermediate_layers``: the
head convolution, final norm and classifier go), so what it holds is what computes the features: the ONNX graph
that extracts them, fine-tuning (every parameter gets a gradient), saved weights and exported models agree.
The setting is saved with a model's preprocessing and is part of the feature-cache key. It needs a timm 1.x
model with ``forward_intermediates``; the pre-training classifier reads the pre-logits, so a backbone with
``stages="last2"`` has no source head.
"""

from __future__ import annotations

import torch
from torch import nn

from headstart.errors import ConfigError


class LastTwoStages(nn.Module):
    """The global averages of ``model``'s last two feature stages, concatenated ``[B, C1 + C2]``.

    Args:
        model: A timm model with ``forward_intermediates`` (shared, not copied: fine-tuning trains its weights).

    Example:
        >>> LastTwoStages(timm.create_model("tf_efficientnet_lite0"))(x).shape
        torch.Size([2, 432])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stages = self.model.forward_intermediates(x, indices=2, intermediates_only=True)
        return torch.cat([stage.mean(dim=tuple(range(2, stage.ndim))) for stage in stages], dim=1)


def keep_stages(model: nn.Module, stages: str, ref: str) -> None:
    """Prune ``model`` in place to what ``stages`` uses: nothing for ``"last"``; for ``"last2"``, everything after
    its last feature stage (head convolution, final norm, classifier).

    Raises:
        ConfigError: ``"last2"`` for a model without ``forward_intermediates`` (older timm families).
    """
    if stages == "last":
        return
    if not all(callable(getattr(model, name, None)) for name in ("forward_intermediates",
                                                                   "prune_intermediate_layers")):
        raise ConfigError(f"preprocessing setting stages=last2 needs a timm model with forward_intermediates, "
                          f"and {ref} has none; use stages=last")
    try:
        model.prune_intermediate_layers(indices=2, prune_norm=True, prune_head=True)
    except (NotImplementedError, RuntimeError, TypeError, AssertionError) as err:
        raise ConfigError(f"preprocessing setting stages=last2 does not work with {ref} ({type(err).__name__}: "
                          f"{str(err)[:200]}); use stages=last") from None


def stage_features(model: nn.Module, stages: str) -> nn.Module:
    """The module whose output is the frozen features ``stages`` names: ``model`` itself for ``"last"``, or
    :class:`LastTwoStages` around it for ``"last2"``."""
    return model if stages == "last" else LastTwoStages(model)


def features_width(model: nn.Module, stages: str, input_size: int, ref: str) -> int:
    """How many features :func:`stage_features` gives for ``model`` (pooled pre-logits: timm's
    ``head_hidden_size`` or ``num_features``; two stages: measured on one blank image)."""
    if stages == "last":
        return int(getattr(model, "head_hidden_size", None) or model.num_features)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            width = stage_features(model, stages)(torch.zeros(1, 3, input_size, input_size)).shape[1]
    except (NotImplementedError, RuntimeError, TypeError, AssertionError) as err:
        raise ConfigError(f"preprocessing setting stages={stages} does not work with {ref} "
                          f"({type(err).__name__}: {str(err)[:200]}); use stages=last") from None
    finally:
        model.train(was_training)
    return int(width)
