"""Transferability scores against hand-computed values and independent formulas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal
from sklearn.covariance import LedoitWolf

from headstart.errors import ConfigError, DataError
from headstart.transferability.scores import (
    SCORES,
    hscore,
    kendall_tau,
    knn_accuracy,
    leep,
    linear_probe_accuracy,
    logme,
    nce,
    score_features,
)


def _clusters(n_per_class: int = 20, n_classes: int = 3, dim: int = 4, spread: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    centers = rng.normal(scale=3.0, size=(n_classes, dim))
    return centers[labels] + rng.normal(scale=spread, size=(len(labels), dim)), labels


# --- LEEP and NCE on tiny joint tables ---------------------------------------------------------------

def test_leep_matches_hand_computed_joint_table():
    theta = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])
    # Joint P(y, z) = column sums of theta per label / 4: [[0.35, 0.15], [0.10, 0.40]]; P(z) = [0.45, 0.55].
    p_y_given_z = np.array([[0.35 / 0.45, 0.15 / 0.55], [0.10 / 0.45, 0.40 / 0.55]])
    expected = np.mean(np.log([
        0.8 * p_y_given_z[0, 0] + 0.2 * p_y_given_z[0, 1],
        0.6 * p_y_given_z[0, 0] + 0.4 * p_y_given_z[0, 1],
        0.3 * p_y_given_z[1, 0] + 0.7 * p_y_given_z[1, 1],
        0.1 * p_y_given_z[1, 0] + 0.9 * p_y_given_z[1, 1],
    ]))
    assert leep(theta, labels) == pytest.approx(expected, rel=1e-12)


def test_leep_is_zero_when_source_classes_determine_target_and_ignores_unused_source_classes():
    theta = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert leep(theta, np.array([0, 0, 1])) == pytest.approx(0.0, abs=1e-12)


def test_nce_matches_hand_computed_conditional_entropy():
    source = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([0, 0, 1, 1, 1, 1])
    # Z = 0 (prob 1/2): Y is 0 w.p. 2/3 and 1 w.p. 1/3; Z = 1: Y is always 1 (entropy 0).
    expected = 0.5 * (2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    assert nce(source, labels) == pytest.approx(expected, rel=1e-12)
    assert nce(np.array([7, 7, 3, 3]), np.array(["a", "a", "b", "b"])) == pytest.approx(0.0)


def test_nce_in_registry_uses_the_argmax_source_class():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]])
    labels = np.array([0, 0, 1, 1, 1, 1])
    assert SCORES.get("nce").function(probs, labels) == pytest.approx(nce(probs.argmax(axis=1), labels))


# --- H-score ---------------------------------------------------------------------------------------

def test_hscore_one_dimensional_case_by_hand():
    # Class 0 at {0, 2}, class 1 at {4, 6}: var(f) = (9+1+1+9)/4 = 5, var(E[f|y]) = 4, H = 4/5.
    features = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert hscore(features, np.array([0, 0, 1, 1]), shrinkage=False) == pytest.approx(0.8)


def test_hscore_matches_direct_covariance_formula_on_two_class_toy():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 50)
    features = rng.multivariate_normal([0, 0, 0], np.diag([1.0, 2.0, 0.5]), size=100)
    features[labels == 1] += [2.0, 0.0, 1.0]
    class_means = np.stack([features[labels == c].mean(axis=0) for c in (0, 1)])
    cov_f = np.cov(features, rowvar=False)
    cov_g = np.cov(class_means[labels], rowvar=False)
    assert hscore(features, labels, shrinkage=False) == pytest.approx(np.trace(np.linalg.inv(cov_f) @ cov_g))


def test_regularised_hscore_is_the_shrunk_formula_and_stays_finite_when_dim_exceeds_examples():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 4)
    features = rng.normal(size=(12, 30)) + 2.0 * np.eye(30)[labels]
    centered = features - features.mean(axis=0)
    shrink = LedoitWolf().fit(features).shrinkage_
    sample_cov = centered.T @ centered / 12
    shrunk = (1 - shrink) * sample_cov + shrink * np.trace(sample_cov) / 30 * np.eye(30)
    means = np.stack([centered[labels == c].mean(axis=0) for c in range(3)])[labels]
    expected = (1 - shrink) * np.trace(np.linalg.solve(shrunk, means.T @ means / 12))
    assert hscore(features, labels) == pytest.approx(expected, rel=1e-8)


# --- LogME -----------------------------------------------------------------------------------------

def _brute_force_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """Max over (alpha, beta) of log N(y; 0, I/beta + F F^T / alpha), per class, / N, averaged."""
    n = len(labels)
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(float)

        def negative_evidence(log_params, y=y):
            alpha, beta = np.exp(log_params)
            cov = np.eye(n) / beta + features @ features.T / alpha
            return -multivariate_normal(np.zeros(n), cov).logpdf(y)

        best = min((minimize(negative_evidence, start, method="Nelder-Mead",
                             options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
                    for start in ([0.0, 0.0], [-3.0, 2.0], [3.0, 1.0])), key=lambda r: r.fun)
        evidences.append(-best.fun / n)
    return float(np.mean(evidences))


def _informative_problem(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 3, size=n)
    return rng.normal(size=(n, dim)) + 3.0 * np.eye(3, dim)[labels], labels


def test_logme_svd_fixed_point_matches_brute_force_evidence_maximisation():
    features, labels = _informative_problem(40, 5)
    assert logme(features, labels) == pytest.approx(_brute_force_logme(features, labels), abs=1e-6)


def test_logme_with_more_dimensions_than_examples_stays_within_the_iteration_damping_of_the_maximum():
    # With D > N a class can be fitted exactly, so the evidence peaks as beta -> infinity; the 1e-5 damping
    # of the fixed-point updates (as in the reference algorithm) stops short of it by well under 1e-3.
    features, labels = _informative_problem(12, 20)
    score, best = logme(features, labels), _brute_force_logme(features, labels)
    assert best - 1e-3 < score <= best + 1e-9


def test_logme_ranks_separating_features_above_noise():
    features, labels = _clusters()
    noise = np.random.default_rng(3).normal(size=features.shape)
    assert logme(features, labels) > logme(noise, labels)
    assert hscore(features, labels) > hscore(noise, labels)


def test_logme_does_not_depend_on_label_values():
    features, labels = _clusters()
    assert logme(features, labels) == pytest.approx(logme(features, np.array(["c", "a", "b"])[labels]))


# --- cross-validated probes ----------------------------------------------------------------------

def test_knn_and_linear_probe_are_perfect_on_separated_clusters_and_near_chance_on_noise():
    features, labels = _clusters(spread=0.1)
    assert knn_accuracy(features, labels) == 1.0
    assert knn_accuracy(features, labels, metric="euclidean") == 1.0
    assert linear_probe_accuracy(features, labels) == 1.0
    noise = np.random.default_rng(4).normal(size=(300, 4))
    noise_labels = np.repeat([0, 1, 2], 100)
    assert abs(knn_accuracy(noise, noise_labels) - 1 / 3) < 0.12
    assert abs(linear_probe_accuracy(noise, noise_labels) - 1 / 3) < 0.12


def test_probes_cap_folds_and_k_by_the_smallest_class():
    features, labels = _clusters(n_per_class=2, spread=0.1)
    assert knn_accuracy(features, labels, k=1, folds=10) == 1.0
    # 2 folds of one example per class: k is capped at the 3 examples of a training fold.
    assert knn_accuracy(features, labels, k=50, folds=10) == knn_accuracy(features, labels, k=3, folds=2)
    assert linear_probe_accuracy(features, labels, folds=10) == 1.0
    with pytest.raises(DataError, match="at least 2 examples in every class"):
        knn_accuracy(features[1:], labels[1:])


# --- registry, scoring and validation -------------------------------------------------------------

def test_score_features_computes_applicable_scores_with_timings():
    features, labels = _clusters()
    without = score_features(features, labels)
    assert set(without) == {"logme", "hscore", "knn", "linear_probe"}
    assert without["logme"]["value"] == pytest.approx(logme(features, labels))
    assert all(set(result) == {"value", "seconds"} for result in without.values())
    probs = np.exp(features) / np.exp(features).sum(axis=1, keepdims=True)
    with_probs = score_features(features, labels, source_probs=probs, scores=["leep", "nce"])
    assert with_probs["leep"]["value"] == pytest.approx(leep(probs, labels))
    assert set(score_features(features, labels, source_probs=probs)) == set(SCORES)


def test_score_features_rejects_unknown_scores_and_missing_source_probs():
    features, labels = _clusters()
    with pytest.raises(ConfigError, match="unknown transferability score"):
        score_features(features, labels, scores=["logmee"])
    with pytest.raises(ConfigError, match="source_probs"):
        score_features(features, labels, scores=["leep"])


@pytest.mark.parametrize("score", [logme, hscore, knn_accuracy, linear_probe_accuracy])
def test_scores_reject_a_single_class_and_mismatched_labels(score):
    features = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(DataError, match="at least 2 classes"):
        score(features, np.zeros(6, dtype=int))
    with pytest.raises(DataError, match="one per example"):
        score(features, np.array([0, 1, 0]))


def test_leep_rejects_non_probabilities():
    with pytest.raises(DataError, match="softmax"):
        leep(np.array([[2.0, -1.0], [0.5, 0.5]]), np.array([0, 1]))


def test_kendall_tau():
    assert kendall_tau([0.1, 0.5, 0.9], [0.6, 0.7, 0.8]) == pytest.approx(1.0)
    assert kendall_tau([0.1, 0.5, 0.9], [0.8, 0.7, 0.6]) == pytest.approx(-1.0)
    with pytest.raises(ConfigError):
        kendall_tau([0.1, 0.2], [0.5])
