"""Transferability scores: how well a frozen backbone suits a target task, without fine-tuning.

Every score takes frozen target features (:mod:`~headstart.transferability.feature_scores`) or the source
model's predictions on the target examples (:mod:`~headstart.transferability.source_scores`), and the
target labels, and is higher for a better backbone. This module registers them by name, computes several
at once, and validates rankings of backbones by them against fine-tuned accuracies (:func:`kendall_tau`).

Example:
    >>> scores = score_features(features, labels)
    >>> scores["logme"]["value"], scores["logme"]["seconds"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from headstart.errors import ConfigError
from headstart.registry import Registry
from headstart.transferability.feature_scores import hscore, knn_accuracy, linear_probe_accuracy, logme
from headstart.transferability.source_scores import leep, nce, nce_from_source_probs

# The score functions are re-exported: this module is where a user looks for them.
__all__ = ["SCORES", "ScoreSpec", "check_score_names", "hscore", "kendall_tau", "knn_accuracy", "leep",
           "linear_probe_accuracy", "logme", "nce", "score_features"]


class ScoreSpec(NamedTuple):
    """A registered transferability score: the function, what it is computed from, and its direction."""

    function: Callable[[np.ndarray, np.ndarray], float]
    needs: Literal["features", "source_probs"]
    higher_is_better: bool


#: Every transferability score, by name; ``rank --score`` and ``--scores`` choose among them.
SCORES: Registry[ScoreSpec] = Registry("transferability score")
SCORES.add("logme", ScoreSpec(logme, "features", True))
SCORES.add("hscore", ScoreSpec(hscore, "features", True))
SCORES.add("knn", ScoreSpec(knn_accuracy, "features", True))
SCORES.add("linear_probe", ScoreSpec(linear_probe_accuracy, "features", True))
SCORES.add("leep", ScoreSpec(leep, "source_probs", True))
SCORES.add("nce", ScoreSpec(nce_from_source_probs, "source_probs", True))


def check_score_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list; raises :class:`ConfigError` naming every one that is not in :data:`SCORES`."""
    names = list(names)
    unknown = [name for name in names if name not in SCORES]
    if unknown:
        raise ConfigError(f"unknown transferability score(s) {', '.join(unknown)}; "
                          f"choose from: {', '.join(SCORES)}")
    return names


def score_features(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None,
                   scores: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
    """Compute transferability scores of one backbone on one target data set, timing each.

    Args:
        features: ``[N, D]`` frozen target features.
        labels: ``[N]`` target labels.
        source_probs: ``[N, Z]`` source-model probabilities on the target examples; without them the
            scores that need them (LEEP, NCE) are skipped unless asked for by name.
        scores: Names from :data:`SCORES` to compute; default all applicable ones.

    Returns:
        Score name -> ``{"value": score, "seconds": time it took}``.

    Raises:
        ConfigError: For an unknown score name, or a score that needs ``source_probs`` when none are given.
    """
    if scores is None:
        names = [name for name, spec in SCORES.items()
                 if spec.needs == "features" or source_probs is not None]
    else:
        names = check_score_names(scores)
        missing = [name for name in names if SCORES.get(name).needs == "source_probs" and source_probs is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)} need the source model's class probabilities "
                              f"(source_probs); pass them or drop these scores")
    inputs = {"features": features, "source_probs": source_probs}
    results = {}
    # One BLAS thread: small problems, and multi-threaded OpenBLAS was measured far slower on 2 loaded cores.
    with threadpool_limits(limits=1, user_api="blas"):
        for name in names:
            spec = SCORES.get(name)
            start = time.perf_counter()
            value = spec.function(inputs[spec.needs], labels)
            results[name] = {"value": float(value), "seconds": time.perf_counter() - start}
    return results


def kendall_tau(scores: Iterable[float], accuracies: Iterable[float]) -> float:
    """Kendall's tau-b between transferability scores and fine-tuned accuracies of the same backbones.

    The standard way to validate a transferability score (as in the LogME and LEEP papers): 1 means the
    score ranks the backbones exactly as fine-tuning does, -1 the reverse.

    Args:
        scores: One score per backbone.
        accuracies: The fine-tuned accuracy of each backbone, in the same order.

    Returns:
        tau in ``[-1, 1]`` (``nan`` if either input is constant).
    """
    from scipy.stats import kendalltau

    scores, accuracies = list(scores), list(accuracies)
    if len(scores) != len(accuracies) or len(scores) < 2:
        raise ConfigError(f"need the same number (at least 2) of scores and accuracies, "
                          f"got {len(scores)} and {len(accuracies)}")
    return float(kendalltau(scores, accuracies).statistic)
