"""Transferability scores computed from a backbone's frozen features of the target examples.

LogME and H-score are closed-form statistics of the features; the k-NN and linear-probe accuracies are
cross-validated classifiers on them. Every score is higher for a better backbone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from headstart.errors import ConfigError, DataError
from headstart.transferability.inputs import check_features, encode_labels

if TYPE_CHECKING:
    from sklearn.model_selection import StratifiedKFold

# LogME's fixed-point iteration: it usually converges in fewer than 10 steps. The damping keeps alpha and
# beta finite when the weights or the residual vanish (it is the reference implementation's constant).
_LOGME_MAX_ITER = 100
_LOGME_TOL = 1e-6
_LOGME_DAMPING = 1e-5


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
    f = check_features(features)
    codes, n_classes = encode_labels(labels, f.shape[0])
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = np.zeros(d)
    sigma[: len(s)] = s ** 2
    evidences = []
    for c in range(n_classes):
        y = (codes == c).astype(np.float64)
        proj = u.T @ y
        x2 = np.zeros(d)
        x2[: len(proj)] = proj ** 2
        # Component of y outside the column space of F: the model can never fit it.
        evidences.append(_logme_evidence(sigma, x2, float(y @ y - proj @ proj), n))
    return float(np.mean(evidences))


def _logme_evidence(sigma: np.ndarray, x2: np.ndarray, residual_outside: float, n: int) -> float:
    """Log evidence / N of one class's target at MacKay's fixed point, in the eigenbasis of ``F^T F``
    (``sigma``: its eigenvalues; ``x2``: the target's squared projections on its eigenvectors)."""
    d = len(sigma)
    alpha, beta = 1.0, 1.0
    for _ in range(_LOGME_MAX_ITER):
        t = alpha / beta
        gamma = float(np.sum(sigma / (sigma + t)))
        m2, res2 = _fit_norms(sigma, x2, t, residual_outside)
        alpha = gamma / (m2 + _LOGME_DAMPING)
        beta = (n - gamma) / (res2 + _LOGME_DAMPING)
        if abs(alpha / beta - t) / t <= _LOGME_TOL:
            break
    m2, res2 = _fit_norms(sigma, x2, alpha / beta, residual_outside)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return evidence / n


def _fit_norms(sigma: np.ndarray, x2: np.ndarray, t: float, residual_outside: float) -> tuple[float, float]:
    # Posterior mean m = beta A^-1 F^T y in the eigenbasis gives |m|^2 and |y - F m|^2 (t = alpha / beta).
    m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
    res2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + residual_outside
    return m2, res2


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
    from sklearn.covariance import LedoitWolf

    f = check_features(features)
    codes, n_classes = encode_labels(labels, f.shape[0])
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
    from sklearn.model_selection import StratifiedKFold

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
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    f = check_features(features)
    codes, _ = encode_labels(labels, f.shape[0])
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
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = check_features(features)
    codes, _ = encode_labels(labels, f.shape[0])
    cv = _stratified_folds(codes, folds, seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(cross_val_score(model, f, codes, cv=cv).mean())
