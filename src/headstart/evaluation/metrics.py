"""Classification metrics as plain, JSON-ready Python values, and class-imbalance checks.

Computed with numpy from the confusion matrix, with scikit-learn's definitions (tests check them against
``sklearn.metrics``): importing scikit-learn costs about a second of start-up (it loads SciPy's statistics and
pandas), which a command that only evaluates a model does not need.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from headstart.errors import DataError
from headstart.evaluation.calibration import expected_calibration_error, validate_predictions

# Top-k accuracy is only informative when k is well below the number of classes.
TOP_K = 5
# Largest/smallest class count above which results need balanced metrics (and a warning).


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def log_loss(proba: np.ndarray, y_true: np.ndarray) -> float:
    """Mean negative log probability of the true classes, probabilities clipped to ``[eps, 1 - eps]`` (as
    scikit-learn's ``log_loss``)."""
    eps = np.finfo(proba.dtype).eps
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y_true)), y_true], eps, 1 - eps))))


def balanced_accuracy_of(counts: np.ndarray) -> np.ndarray:
    """Balanced accuracy of confusion matrices ``counts`` (``[..., K, K]``, rows true classes): the mean recall
    over the classes present in each matrix, as scikit-learn's."""
    support = counts.sum(axis=-1)
    recall = np.divide(np.diagonal(counts, axis1=-2, axis2=-1), support, out=np.zeros(support.shape),
                       where=support > 0)
    return recall.sum(axis=-1) / np.maximum((support > 0).sum(axis=-1), 1)


def macro_f1_of(counts: np.ndarray) -> np.ndarray:
    """Macro F1 of confusion matrices ``counts`` (``[..., K, K]``), as scikit-learn's macro average: over the
    classes that are true or predicted at least once."""
    true_positive = np.diagonal(counts, axis1=-2, axis2=-1)
    support, predicted = counts.sum(axis=-1), counts.sum(axis=-2)
    denominator = support + predicted
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(denominator.shape), where=denominator > 0)
    return f1.sum(axis=-1) / np.maximum((denominator > 0).sum(axis=-1), 1)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, per-class scores, confusion matrix, log loss and ECE.

    Classes absent from ``y_true`` are handled: their recall is ``None`` (undefined) and they are left out
    of balanced accuracy; macro F1 averages over the classes that occur in ``y_true`` or in the
    predictions (scikit-learn's default), so a class that is neither true nor predicted does not count as
    a zero.

    Args:
        y_true: ``[N]`` integer labels indexing ``class_names``.
        proba: ``[N, K]`` predicted probabilities, ``K == len(class_names)``.
        class_names: Name of each class, indexed by label.

    Returns:
        Dict of plain Python values: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``log_loss``,
        ``ece``, ``per_class`` (class name -> ``precision``, ``recall``, ``f1``, ``support``; ``None``
        where undefined), ``confusion_matrix`` (rows are true classes, columns predictions, in
        ``class_names`` order), ``n_examples``, and ``top5_accuracy`` when there are more than 5 classes.

    Example:
        >>> classification_metrics([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["cat", "dog"])["accuracy"]
        1.0
    """
    proba, y = validate_predictions(proba, y_true)
    names = list(class_names)
    if proba.shape[1] != len(names):
        raise DataError(f"proba has {proba.shape[1]} columns but there are {len(names)} class names")
    y_pred = proba.argmax(axis=1)
    confusion = np.bincount(y * len(names) + y_pred, minlength=len(names) ** 2).reshape(len(names), len(names))
    hits, support, predicted = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):  # undefined scores are NaN, then None
        precision, recall, f1 = hits / predicted, hits / support, 2 * hits / (support + predicted)
    result = {
        "n_examples": len(y),
        "accuracy": float(np.mean(y == y_pred)),
        "balanced_accuracy": float(balanced_accuracy_of(confusion)),
        "macro_f1": float(macro_f1_of(confusion)),
        "log_loss": log_loss(proba, y),
        "ece": expected_calibration_error(proba, y),
        "per_class": {
            name: {"precision": _none_if_nan(p), "recall": _none_if_nan(r), "f1": _none_if_nan(f),
                   "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion.tolist(),
    }
    if len(names) > TOP_K:
        # Ties rank the later class first, as scikit-learn's top_k_accuracy_score does.
        top = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :TOP_K]
        result[f"top{TOP_K}_accuracy"] = float(np.mean((top == y[:, None]).any(axis=1)))
    return result
