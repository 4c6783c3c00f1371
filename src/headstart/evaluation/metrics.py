"""Classification metrics as plain, JSON-ready Python values, and class-imbalance checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    recall_score,
    top_k_accuracy_score,
)

from headstart.errors import DataError
from headstart.evaluation.calibration import expected_calibration_error, validate_predictions

# Top-k accuracy is only informative when k is well below the number of classes.
TOP_K = 5
# Largest/smallest class count above which results need balanced metrics (and a warning).


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


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
    labels = np.arange(len(names))
    y_pred = proba.argmax(axis=1)
    present = np.unique(y)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, y_pred, labels=labels, zero_division=np.nan)
    result = {
        "n_examples": len(y),
        "accuracy": float(accuracy_score(y, y_pred)),
        # Mean recall over the classes present, which is what balanced accuracy is; asking recall_score
        # for the present labels avoids scikit-learn's warning about predicted-only classes.
        "balanced_accuracy": float(recall_score(y, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(y, y_pred, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y, proba, labels=labels)),
        "ece": expected_calibration_error(proba, y),
        "per_class": {
            name: {"precision": _none_if_nan(p), "recall": _none_if_nan(r), "f1": _none_if_nan(f),
                   "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(y, y_pred, labels=labels).tolist(),
    }
    if len(names) > TOP_K:
        result[f"top{TOP_K}_accuracy"] = float(top_k_accuracy_score(y, proba, k=TOP_K, labels=labels))
    return result
