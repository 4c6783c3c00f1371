"""Transferability scores: how well a frozen backbone suits a target task, without fine-tuning.

Every score takes frozen target features (or the source model's predictions on the target examples) and
the target labels, and is higher for a better backbone. Rankings of backbones by these scores are
validated against fine-tuned accuracies with :func:`kendall_tau`.

Example:
    >>> scores = score_features(features, labels)
    >>> scores["logme"]["value"], scores["logme"]["seconds"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

import numpy as np
from scipy.stats import kendalltau
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from headstart.errors import ConfigError, DataError
from headstart.registry import Registry

# LogME's fixed-point iteration: it usually converges in fewer than 10 steps. The damping keeps alpha and
# beta finite when the weights or the residual vanish (it is the reference implementation's constant).
_LOGME_MAX_ITER = 100
_LOGME_TOL = 1e-6
_LOGME_DAMPING = 1e-5


def _encode_labels(labels: np.ndarray, n_examples: int) -> tuple[np.ndarray, int]:
    """Labels as codes ``0..C-1`` plus ``C``; raises :class:`DataError` unless there is one per example and C >= 2."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_examples:
        raise DataError(f"expected {n_examples} labels (one per example), got shape {labels.shape}")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"transferability needs at least 2 classes in the labels, found {len(classes)}")
    return codes, len(classes)


def _check_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise DataError(f"expected a [n_examples, feature_dim] feature matrix, got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise DataError("features contain NaN or infinite values; check the backbone's outputs")
    return features


def _check_source_probs(source_probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(source_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise DataError(f"expected source probabilities of shape [n_examples, n_source_classes], "
                        f"got {probs.shape}")
    if probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise DataError("source probabilities must be non-negative rows summing to 1; apply softmax to the "
                        "source model's logits first")
    return probs


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: the log maximum evidence of a Bayesian linear model on the features (You et al., ICML 2021).

    For each class ``c``, the one-hot target ``y = [label == c]`` is modelled as ``y = F w + noise`` with
    prior ``w ~ N(0, alpha^-1 I)`` and noise ``N(0, beta^-1)``. ``alpha`` and ``beta`` are set by
    MacKay's fixed-point iteration (the paper's Algorithm 1), evaluated cheaply in the eigenbasis of
    ``F^T F`` obtained from one SVD of ``F``; the score is the log evidence at the fixed point divided by
    ``N``, averaged over classes. Directions with a zero singular value (``D > N``) are kept, as in the
    paper's eigendecomposition of the full ``D x D`` matrix ``F^T F``. When ``D > N`` a class can be fitted
    exactly and the evidence keeps rising as ``beta -> inf``; the damped updates stop short of that
    supremum by well under ``1e-3``.

    Args:
        features: ``[N, D]`` frozen target features (used as they are; LogME is not scale invariant).
        labels: ``[N]`` target labels (any hashable values, at least 2 classes).

    Returns:
        The LogME score; higher means the features linearly explain the labels better.
    """
    f = _check_features(features)
    codes, n_classes = _encode_labels(labels, f.shape[0])
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = np.zeros(d)
    sigma[: len(s)] = s ** 2
    evidences = []
    for c in range(n_classes):
        y = (codes == c).astype(np.float64)
        proj = u.T @ y
        # Component of y outside the column space of F: the model can never fit it.
        residual_outside = float(y @ y - proj @ proj)
        x2 = np.zeros(d)
        x2[: len(proj)] = proj ** 2
        alpha, beta = 1.0, 1.0
        for _ in range(_LOGME_MAX_ITER):
            t = alpha / beta
            gamma = float(np.sum(sigma / (sigma + t)))
            # Posterior mean m = beta A^-1 F^T y in the eigenbasis gives |m|^2 and |y - F m|^2.
            m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
            res2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + residual_outside
            alpha = gamma / (m2 + _LOGME_DAMPING)
            beta = (n - gamma) / (res2 + _LOGME_DAMPING)
            if abs(alpha / beta - t) / t <= _LOGME_TOL:
                break
        t = alpha / beta
        m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
        res2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + residual_outside
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


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
    probs = _check_source_probs(source_probs)
    codes, n_classes = _encode_labels(labels, probs.shape[0])
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
    codes, n_classes = _encode_labels(labels, len(np.asarray(source_labels)))
    _, z = np.unique(np.asarray(source_labels), return_inverse=True)
    joint = np.zeros((n_classes, z.max() + 1))
    np.add.at(joint, (codes, z), 1.0)
    joint /= len(codes)
    conditional = joint / joint.sum(axis=0)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(conditional[nonzero])))


def _nce_from_source_probs(source_probs: np.ndarray, labels: np.ndarray) -> float:
    return nce(_check_source_probs(source_probs).argmax(axis=1), labels)


def hscore(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """H-score ``tr(cov(f)^-1 cov(E[f | y]))`` (Bao et al., ICIP 2019).

    Large when class means are far apart relative to the spread of the features. With ``shrinkage=True``
    (the default) it is the regularised H-score of Ibrahim, Ponomareva & Mazumder (ICLR 2023, "Newer is
    not always better"): ``tr(cov_a(f)^-1 (1 - a) cov(E[f | y]))`` with ``cov_a`` the Ledoit-Wolf
    shrinkage estimate and ``a`` its shrinkage, since with few examples per dimension the sample
    covariance is singular and the plain score is dominated by noise. Without shrinkage the inverse is a
    pseudo-inverse.

    Args:
        features: ``[N, D]`` frozen target features.
        labels: ``[N]`` target labels (at least 2 classes).
        shrinkage: Use the Ledoit-Wolf regularised variant.

    Returns:
        The H-score; higher is better.
    """
    f = _check_features(features)
    codes, n_classes = _encode_labels(labels, f.shape[0])
    f = f - f.mean(axis=0)
    class_means = np.zeros((n_classes, f.shape[1]))
    np.add.at(class_means, codes, f)
    class_means /= np.bincount(codes)[:, None]
    g = class_means[codes]
    # Both covariances use 1/N (as Ledoit-Wolf does); the unregularised score is invariant to the choice.
    cov_g = g.T @ g / len(g)
    if shrinkage:
        estimator = LedoitWolf(assume_centered=True).fit(f)
        cov_f, weight = estimator.covariance_, 1.0 - estimator.shrinkage_
    else:
        cov_f, weight = f.T @ f / len(f), 1.0
    return float(weight * np.trace(np.linalg.pinv(cov_f, rcond=1e-15, hermitian=True) @ cov_g))


def _stratified_folds(codes: np.ndarray, folds: int, seed: int) -> StratifiedKFold:
    """Stratified K folds with K capped by the smallest class, which must have at least 2 examples."""
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    smallest = int(np.bincount(codes).min())
    if smallest < 2:
        raise DataError("cross-validated scores need at least 2 examples in every class; "
                        "drop or merge classes with a single example")
    return StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5, seed: int = 0,
                 metric: Literal["cosine", "euclidean"] = "cosine") -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier on standardised frozen features.

    Args:
        features: ``[N, D]`` frozen target features.
        labels: ``[N]`` target labels (at least 2 classes, at least 2 examples per class).
        k: Neighbours; capped by the size of the smallest training fold.
        folds: Stratified folds, capped by the number of examples in the smallest class.
        seed: Seed of the fold shuffle.
        metric: ``"cosine"`` or ``"euclidean"`` distance.

    Returns:
        Mean accuracy over the folds.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    f = _check_features(features)
    codes, _ = _encode_labels(labels, f.shape[0])
    cv = _stratified_folds(codes, folds, seed)
    # A stratified test fold holds at most ceil(n_c / K) examples of each class c.
    smallest_train = len(codes) - int(np.ceil(np.bincount(codes) / cv.get_n_splits()).sum())
    model = make_pipeline(StandardScaler(),
                          KNeighborsClassifier(n_neighbors=min(k, smallest_train), metric=metric))
    return float(cross_val_score(model, f, codes, cv=cv).mean())


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of an L2-regularised logistic regression on standardised frozen features.

    Args:
        features: ``[N, D]`` frozen target features.
        labels: ``[N]`` target labels (at least 2 classes, at least 2 examples per class).
        folds: Stratified folds, capped by the number of examples in the smallest class.
        seed: Seed of the fold shuffle.

    Returns:
        Mean accuracy over the folds.
    """
    f = _check_features(features)
    codes, _ = _encode_labels(labels, f.shape[0])
    cv = _stratified_folds(codes, folds, seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(cross_val_score(model, f, codes, cv=cv).mean())


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
SCORES.add("nce", ScoreSpec(_nce_from_source_probs, "source_probs", True))


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
        names = list(scores)
        unknown = [name for name in names if name not in SCORES]
        if unknown:
            raise ConfigError(f"unknown transferability score(s) {', '.join(unknown)}; "
                              f"choose from: {', '.join(SCORES)}")
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
    scores, accuracies = list(scores), list(accuracies)
    if len(scores) != len(accuracies) or len(scores) < 2:
        raise ConfigError(f"need the same number (at least 2) of scores and accuracies, "
                          f"got {len(scores)} and {len(accuracies)}")
    return float(kendalltau(scores, accuracies).statistic)
