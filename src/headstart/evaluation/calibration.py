"""Calibration: how far predicted confidences are from observed accuracy, and temperature scaling.

References:
    Naeini, Cooper & Hauskrecht, "Obtaining well calibrated probabilities using Bayesian binning", AAAI 2015
    (expected calibration error); Guo, Pleiss, Sun & Weinberger, "On calibration of modern neural
    networks", ICML 2017 (reliability diagrams, temperature scaling).
"""

from __future__ import annotations

import numpy as np

from headstart.errors import ConfigError, DataError

# Temperatures outside this range mean the logits carry no usable scale (or a bug upstream), not a
# calibration fix; the optimiser searches log T within it.
_MIN_TEMPERATURE = 1e-2
_MAX_TEMPERATURE = 1e2


def validate_predictions(scores: np.ndarray, y_true: np.ndarray, *,
                         probabilities: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Check a ``[N, K]`` score matrix against ``N`` integer labels and return them as numpy arrays.

    Args:
        scores: Predicted class probabilities (rows sum to 1) or, with ``probabilities=False``, logits.
        y_true: True labels, integers in ``range(K)``.
        probabilities: Whether ``scores`` must be probability rows.

    Returns:
        ``(scores as float64 [N, K], labels as int64 [N])``.

    Raises:
        DataError: On mismatched shapes, labels outside ``range(K)``, or rows that are not probabilities.
    """
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y_true)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] < 2:
        raise DataError(f"expected a [n_examples, n_classes] score matrix with at least 2 classes, "
                        f"got shape {scores.shape}")
    if y.ndim != 1 or len(y) != scores.shape[0]:
        raise DataError(f"expected {scores.shape[0]} labels (one per row of scores), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integers indexing the classes, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= scores.shape[1]:
        raise DataError(f"labels must lie in 0..{scores.shape[1] - 1}, got values from {y.min()} to {y.max()}")
    if not np.all(np.isfinite(scores)):
        raise DataError("scores contain NaN or infinite values")
    if probabilities and (scores.min() < 0 or not np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)):
        raise DataError("probabilities must be non-negative and each row must sum to 1; "
                        "apply softmax to logits first")
    return scores, y.astype(np.int64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, computed stably.

    Args:
        logits: ``[N, K]`` (or ``[K]``) unnormalised scores.
        temperature: Positive divisor; above 1 softens, below 1 sharpens.

    Returns:
        Probabilities with the shape of ``logits``, summing to 1 along the last axis.

    Example:
        >>> softmax(np.array([[0.0, 0.0]]))
        array([[0.5, 0.5]])
    """
    if not temperature > 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    from scipy.special import log_softmax

    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1))


def _bin_statistics(proba: np.ndarray, y_true: np.ndarray, n_bins: int,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: edges, summed confidence, summed correctness, count."""
    if not (isinstance(n_bins, int | np.integer) and n_bins >= 1):
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}")
    proba, y = validate_predictions(proba, y_true)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    # Bins are (lo, hi], as in Guo et al.; a confidence of exactly 0 cannot occur for a probability row.
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct, minlength=n_bins)
    return np.linspace(0.0, 1.0, n_bins + 1), conf_sum, acc_sum, count


def expected_calibration_error(proba: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error (Naeini et al., 2015; Guo et al., 2017).

    Predictions are grouped by confidence (the top probability) into ``n_bins`` equal-width bins
    ``(i/n_bins, (i+1)/n_bins]``; the ECE is ``sum_b |B_b|/N * |accuracy(B_b) - mean confidence(B_b)|``.

    Args:
        proba: ``[N, K]`` predicted probabilities.
        y_true: ``[N]`` integer labels.
        n_bins: Number of confidence bins.

    Returns:
        ECE in ``[0, 1]``; 0 means confidences match accuracy in every bin.
    """
    _, conf_sum, acc_sum, count = _bin_statistics(proba, y_true, n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / count.sum())


def reliability_bins(proba: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> dict[str, list]:
    """The data of a reliability diagram (Guo et al., 2017): per confidence bin, mean confidence and accuracy.

    Args:
        proba: ``[N, K]`` predicted probabilities.
        y_true: ``[N]`` integer labels.
        n_bins: Number of equal-width confidence bins.

    Returns:
        JSON-ready dict with ``edges`` (``n_bins + 1`` floats) and, per bin, ``confidence``, ``accuracy``
        (``None`` for empty bins) and ``count``.
    """
    edges, conf_sum, acc_sum, count = _bin_statistics(proba, y_true, n_bins)
    filled = count > 0
    confidence = np.divide(conf_sum, count, out=np.zeros_like(conf_sum), where=filled)
    accuracy = np.divide(acc_sum, count, out=np.zeros_like(acc_sum), where=filled)
    return {
        "edges": edges.tolist(),
        "confidence": [float(c) if f else None for c, f in zip(confidence, filled, strict=True)],
        "accuracy": [float(a) if f else None for a, f in zip(accuracy, filled, strict=True)],
        "count": count.astype(int).tolist(),
    }


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the ``T > 0`` minimising the NLL of ``softmax(logits / T)``.

    The search is over ``log T`` in ``[log 0.01, log 100]`` (bounded Brent), so the result is always
    positive; the argmax, and hence accuracy, is unchanged by any ``T``.

    Args:
        logits: ``[N, K]`` validation logits of a trained model.
        y_true: ``[N]`` integer labels of the same examples.

    Returns:
        The fitted temperature; near 1.0 for logits that are already calibrated, above 1 for overconfident
        ones.

    Example:
        >>> t = fit_temperature(val_logits, val_labels)
        >>> calibrated = softmax(test_logits, temperature=t)
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    logits, y = validate_predictions(logits, y_true, probabilities=False)
    rows = np.arange(len(y))
    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y].mean())

    result = minimize_scalar(nll, bounds=(np.log(_MIN_TEMPERATURE), np.log(_MAX_TEMPERATURE)),
                             method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))
