"""What ``auto`` weighs before it fine-tunes: the probe's learning curve and the cost of a training step.

Kept apart from the strategy so that each stays readable: these are measurements on the user's data, the strategy
decides with them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from headstart.backbones import Backbone
from headstart.strategies.linear import linear_out_of_fold

#: Examples of the timed training pass (after an untimed one over the same) from which a full batch's cost is scaled.
TIMED_EXAMPLES = 4
#: Timed passes over them; the fastest counts.
TIMED_PASSES = 3


def learning_curve_gain(features: np.ndarray, labels: np.ndarray, c: float, *, folds: int, seed: int,
                        full_accuracy: float | None = None) -> float | None:
    """Cross-validated accuracy of the probe at ``c`` on all examples minus on a stratified half (``None`` when
    the half is too small to cross-validate). ``full_accuracy``: the first term when already known (``auto``'s
    candidates were scored on the same folds at the same ``c``), saving one cross-validation."""
    half = np.sort(np.concatenate([np.random.default_rng(seed).permutation(np.flatnonzero(labels == k))
                                   [: max(1, int(np.sum(labels == k)) // 2)] for k in np.unique(labels)]))
    scores = []
    for x, y in ((features, labels), (features[half], labels[half])):
        if full_accuracy is not None and not scores:
            scores.append(full_accuracy)
            continue
        proba = linear_out_of_fold(x, y, c=c, folds=folds, seed=seed)
        if proba is None:
            return None
        scores.append(float(np.mean(np.unique(y)[proba.argmax(axis=1)] == y)))
    return scores[0] - scores[1]


def training_batch_seconds(backbone: Backbone, items: list[Any], batch_size: int) -> tuple[float, int]:
    """Estimated CPU seconds (this process) of one forward and backward pass of ``backbone`` over ``batch_size`` of
    ``items`` (what a fine-tuning step costs, near enough), and how many examples the pass timed.

    Timing a cold full batch would mostly time one-off costs (allocations, kernel selection: 18 s for a cold batch
    of 32 images at 224 px where a warm one took 1.5 s), so ``TIMED_EXAMPLES`` (:func:`timed_sample`) go through
    once untimed (a pass over fewer was measured to leave that shape's pass 1.5x slower) and then
    ``TIMED_PASSES`` times timed; the fastest is scaled per example to the batch size. Other programs on the
    machine only ever add time to a pass this short (by the clock, up to 4x; in CPU time too, as threads spin
    waiting for each other), so the fastest of a few, in CPU time, is the least disturbed. A small batch costs at
    least as much per example as a full one (1.4x for efficientnet_lite0 on a quiet CPU), so the estimate errs
    high: auto then skips fine-tuning sooner, never later. Normalisation statistics are not updated and the
    gradients are discarded.
    """
    module, was_training = backbone.module, backbone.module.training
    module.eval()
    timed = min(TIMED_EXAMPLES, batch_size, len(items))
    sample = timed_sample(items, timed, backbone.modality)
    try:
        with torch.enable_grad():
            _training_pass(backbone, sample)
            passes = []
            for _ in range(TIMED_PASSES):
                started = time.process_time()
                _training_pass(backbone, sample)
                passes.append(time.process_time() - started)
        return min(passes) * batch_size / timed, timed
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)


def timed_sample(items: list[Any], k: int, modality: str) -> list[Any]:
    """The ``k`` examples a training pass is timed on: for text, the ones at evenly spaced length percentiles
    from the 50th to the 97th (characters); otherwise the first ``k``.

    A text's training cost grows faster than its length (attention), and the batch is padded to its longest: on
    fortunes (mean 211 characters, longest 1000) the first four texts put a training epoch at 6 s where it took
    about 26 s, and these four at 24 s. On WordNet glosses (short, even) they put it at 8.5 s against about 7 s.
    """
    if modality != "text" or not items:
        return items[:k]
    order = np.argsort([len(item) for item in items], kind="stable")
    return [items[order[int(q * (len(items) - 1))]] for q in np.linspace(0.5, 0.97, k)]


def _training_pass(backbone: Backbone, items: list[Any]) -> None:
    out = backbone.forward(backbone.collate(items))
    if out.requires_grad:
        out.float().square().mean().backward()

