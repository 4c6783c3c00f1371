"""The frozen-feature candidates of ``auto`` scored on the same cross-validation folds: the linear probe, the
prototype classifier and blends of the two, with a temperature fitted on the out-of-fold predictions.

Both heads are linear in the backbone's raw features (:mod:`headstart.strategies.heads`, :func:`fit_linear_head`),
so a blend of their logits is one ``nn.Linear`` again: the chosen model saves, reloads and exports like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.strategies.heads import prototype_head
from headstart.strategies.linear import (
    cross_validation_folds,
    fit_linear_head,
    linear_out_of_fold,
    softmax_temperature,
)


@dataclass
class ProbeChoice:
    """The chosen frozen-feature head and what was tried for it.

    Attributes:
        head: The head (raw features to logits).
        name: ``linear``, ``prototypes`` or ``blend``.
        tried: Per candidate, its cross-validated accuracy and log loss (and the blend's weight).
        reason: Why this candidate won, in words.
        temperature: The softmax temperature folded into the head (1 when none was fitted).
        cv_accuracy: The winner's cross-validated accuracy (``nan`` without cross-validation).
        heads: The two candidates as fitted on all the data, ``linear`` and ``prototypes`` (for comparisons).
    """

    head: nn.Linear
    name: str
    tried: dict[str, dict[str, float]] = field(default_factory=dict)
    reason: str = ""
    temperature: float = 1.0
    cv_accuracy: float = float("nan")
    heads: dict[str, nn.Linear] = field(default_factory=dict)


def _scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from scipy.special import log_softmax

    log_p = log_softmax(logits, axis=1)
    return {"cv_accuracy": float(np.mean(logits.argmax(axis=1) == labels)),
            "cv_log_loss": float(-np.mean(log_p[np.arange(len(labels)), labels]))}


def _linear_logits(proba: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Out-of-fold log probabilities over all ``n_classes`` columns (absent classes: very low)."""
    logits = np.full((len(proba), n_classes), -1e4)
    logits[:, np.unique(labels)] = np.log(np.clip(proba, 1e-12, None))
    return logits


def _prototype_logits(features: np.ndarray, labels: np.ndarray, n_classes: int, cv: Any) -> np.ndarray:
    logits = np.zeros((len(labels), n_classes))
    for fit_index, held_index in cv.split(features, labels):
        head, _ = prototype_head(features[fit_index], labels[fit_index], n_classes)
        with torch.no_grad():
            logits[held_index] = head(torch.from_numpy(features[held_index]).to(head.weight.dtype)).numpy()
    return logits


def _combined(heads: tuple[nn.Linear, nn.Linear], weight: float, temperature: float) -> nn.Linear:
    linear, prototypes = heads
    head = nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        for name in ("weight", "bias"):
            mixed = weight * getattr(linear, name) + (1 - weight) * getattr(prototypes, name).to(linear.weight.dtype)
            getattr(head, name).copy_(mixed / temperature)
    return head


def choose_probe(features: np.ndarray, labels: np.ndarray, n_classes: int, *, folds: int = 5, seed: int = 0,
                 weights: int = 5, temperature: bool = True) -> ProbeChoice:
    """Fit the linear probe and the prototype head on all of ``features`` and keep the candidate — one of them or
    a blend ``w * linear + (1 - w) * prototypes`` of their logits, ``w`` on a grid of ``weights`` values — with
    the lowest cross-validated log loss (a proper score: it rewards accuracy and honest confidence).

    Args:
        features, labels, n_classes: Frozen training features and their labels in ``range(n_classes)``.
        folds, seed: Cross-validation folds (capped by the smallest class) and their seed.
        weights: Blend weights tried, evenly spaced over ``[0, 1]`` (at least 2: the two heads alone).
        temperature: Also fit a softmax temperature on the winner's out-of-fold logits and fold it in.

    Returns:
        The choice; prototypes alone when a class has a single example (nothing to cross-validate).
    """
    linear, info = fit_linear_head(features, labels, n_classes, folds=folds, seed=seed)
    prototypes, _ = prototype_head(features, labels, n_classes)
    cv = cross_validation_folds(labels, folds, seed)
    if cv is None:
        return ProbeChoice(prototypes, "prototypes", reason="a class has a single example, so nothing can be "
                                                            "cross-validated; prototypes work from one example",
                           heads={"linear": linear, "prototypes": prototypes})
    # The linear head carries the temperature its C was chosen with; its out-of-fold logits get it too.
    lin = _linear_logits(linear_out_of_fold(features, labels, c=info["C"], folds=folds, seed=seed), labels,
                         n_classes) / info["temperature"]
    proto = _prototype_logits(features, labels, n_classes, cv)
    grid = {float(w): w * lin + (1 - w) * proto for w in np.linspace(0.0, 1.0, max(weights, 2))}
    scored = {w: _scores(logits, labels) for w, logits in grid.items()}
    best = min(scored, key=lambda w: scored[w]["cv_log_loss"])
    name = {1.0: "linear", 0.0: "prototypes"}.get(best, "blend")
    tried = {"linear": scored[1.0] | {"C": info["C"]}, "prototypes": scored[0.0],
             "blend": min((scored[w] | {"weight": w} for w in scored if 0 < w < 1),
                          key=lambda s: s["cv_log_loss"], default={})}
    t = softmax_temperature(grid[best], labels) if temperature else 1.0
    reason = (f"lowest {cv.get_n_splits()}-fold cross-validated log loss ({scored[best]['cv_log_loss']:.3f}; "
              f"linear {scored[1.0]['cv_log_loss']:.3f}, prototypes {scored[0.0]['cv_log_loss']:.3f})")
    return ProbeChoice(_combined((linear, prototypes), best, t), name, tried, reason, t,
                       scored[best]["cv_accuracy"], {"linear": linear, "prototypes": prototypes})
