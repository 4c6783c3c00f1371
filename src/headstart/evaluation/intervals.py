"""Confidence intervals of test metrics, from the confusion matrix a model's metrics already hold.

Accuracy gets the Wilson score interval (a binomial proportion; well-behaved near 0 and 1 and for the small
test sets headstart is made for). Balanced accuracy and macro F1 are not proportions, so they get a
percentile bootstrap over the test examples: each resample draws ``n`` (true, predicted) pairs from the
confusion matrix's cells, which is the same as resampling the examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from headstart.errors import DataError
from headstart.evaluation.metrics import balanced_accuracy_of, macro_f1_of


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``.

    Example:
        >>> wilson_interval(45, 50)
        (0.7864..., 0.9565...)
    """
    if n <= 0:
        raise DataError("a confidence interval needs at least one example")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 or n successes a bound is exactly 0 or 1; the formula leaves rounding residue (1e-17) there.
    lower = 0.0 if successes == 0 else max(0.0, float(centre - half))
    upper = 1.0 if successes == n else min(1.0, float(centre + half))
    return lower, upper


def metric_intervals(confusion: Sequence[Sequence[int]] | np.ndarray, *, confidence: float = 0.95,
                     resamples: int = 2000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% (``confidence``) intervals of accuracy, balanced accuracy and macro F1.

    Args:
        confusion: ``[K, K]`` counts, rows true classes, columns predictions (``metrics["confusion_matrix"]``).
        confidence: Level of the intervals.
        resamples: Bootstrap resamples for balanced accuracy and macro F1.
        seed: Seed of the bootstrap, so a model card is reproducible.

    Returns:
        ``{"accuracy": (low, high), "balanced_accuracy": ..., "macro_f1": ...}``.

    Raises:
        DataError: The matrix is not square or holds no examples.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise DataError(f"a confusion matrix must be square, got shape {counts.shape}")
    n = int(counts.sum())
    if n == 0:
        raise DataError("a confidence interval needs at least one example")
    rng = np.random.default_rng(seed)
    samples = rng.multinomial(n, counts.ravel() / n, size=resamples).reshape(resamples, *counts.shape)
    tail = (1 - confidence) / 2 * 100
    intervals = {"accuracy": wilson_interval(int(np.trace(counts)), n, confidence)}
    for name, metric in (("balanced_accuracy", balanced_accuracy_of), ("macro_f1", macro_f1_of)):
        low, high = np.percentile(metric(samples), [tail, 100 - tail])
        intervals[name] = (float(low), float(high))
    return intervals
