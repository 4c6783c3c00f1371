"""Checked inputs of the transferability scores: feature matrices, source-model probabilities, labels."""

from __future__ import annotations

import numpy as np

from headstart.errors import DataError


def encode_labels(labels: np.ndarray, n_examples: int) -> tuple[np.ndarray, int]:
    """Labels as codes ``0..C-1`` plus ``C``; raises :class:`DataError` unless there is one per example and C >= 2."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_examples:
        raise DataError(f"expected {n_examples} labels (one per example), got shape {labels.shape}")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"transferability needs at least 2 classes in the labels, found {len(classes)}")
    return codes, len(classes)


def check_features(features: np.ndarray) -> np.ndarray:
    """``features`` as a float64 ``[N, D]`` matrix; raises :class:`DataError` if it is not one or is not finite."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise DataError(f"expected a [n_examples, feature_dim] feature matrix, got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise DataError("features contain NaN or infinite values; check the backbone's outputs")
    return features


def check_source_probs(source_probs: np.ndarray) -> np.ndarray:
    """``source_probs`` as a float64 ``[N, Z]`` matrix; raises :class:`DataError` unless its rows are
    probability distributions."""
    probs = np.asarray(source_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise DataError(f"expected source probabilities of shape [n_examples, n_source_classes], "
                        f"got {probs.shape}")
    if probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise DataError("source probabilities must be non-negative rows summing to 1; apply softmax to the "
                        "source model's logits first")
    return probs
