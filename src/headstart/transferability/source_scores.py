"""Transferability scores computed from the source model's predictions on the target examples.

They need a backbone with its pre-training classifier (the source model): LEEP uses its class
probabilities, NCE its hard predictions. Both are higher for a better backbone.
"""

from __future__ import annotations

import numpy as np

from headstart.transferability.inputs import check_source_probs, encode_labels


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP, the log expected empirical prediction (Nguyen et al., ICML 2020).

    With ``theta_i`` the source model's distribution over its ``Z`` classes for target example ``i``, the
    empirical joint is ``P(y, z) = 1/N sum_{i: y_i = y} theta_iz``, the conditional
    ``P(y | z) = P(y, z) / P(z)``, and ``LEEP = 1/N sum_i log sum_z P(y_i | z) theta_iz``.

    Args:
        source_probs: ``[N, Z]`` source-model probabilities on the target examples.
        labels: ``[N]`` target labels (at least 2 classes).

    Returns:
        LEEP, a log-likelihood ``<= 0``; higher is better.
    """
    probs = check_source_probs(source_probs)
    codes, n_classes = encode_labels(labels, probs.shape[0])
    joint = np.zeros((n_classes, probs.shape[1]))
    np.add.at(joint, codes, probs)
    joint /= probs.shape[0]
    marginal = joint.sum(axis=0)
    # A source class no example puts mass on has P(z) = 0; its P(y|z) never matters, so set it to 0.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = np.einsum("iz,iz->i", probs, conditional[codes])
    return float(np.mean(np.log(expected)))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy ``-H(Y | Z)`` (Tran, Nguyen & Hassner, ICCV 2019).

    ``Z`` is the source model's hard prediction (its argmax source class) for each target example, ``Y``
    the target label; the entropy is that of the empirical joint distribution.

    Args:
        source_labels: ``[N]`` predicted source classes.
        labels: ``[N]`` target labels (at least 2 classes).

    Returns:
        ``-H(Y|Z) <= 0``; 0 when the source prediction determines the target label.
    """
    codes, n_classes = encode_labels(labels, len(np.asarray(source_labels)))
    _, z = np.unique(np.asarray(source_labels), return_inverse=True)
    joint = np.zeros((n_classes, z.max() + 1))
    np.add.at(joint, (codes, z), 1.0)
    joint /= len(codes)
    conditional = joint / joint.sum(axis=0)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(conditional[nonzero])))


def nce_from_source_probs(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """:func:`nce` of the source model's argmax predictions, given its ``[N, Z]`` probabilities."""
    return nce(check_source_probs(source_probs).argmax(axis=1), labels)

