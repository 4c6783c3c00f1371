"""Calibration error, reliability bins and temperature scaling on hand-made and simulated cases."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.errors import ConfigError, DataError
from headstart.evaluation.calibration import expected_calibration_error, fit_temperature, reliability_bins, softmax

# Two predictions at confidence 0.9 (one right), two at 0.6 (both right).
HAND_PROBA = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
HAND_LABELS = np.array([0, 1, 1, 1])


def test_softmax_matches_the_formula_and_is_stable_for_large_logits():
    logits = np.array([[1.0, 2.0, 3.0]])
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum()
    np.testing.assert_allclose(softmax(logits, temperature=2.0), expected)
    np.testing.assert_allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])
    with pytest.raises(ConfigError, match="temperature"):
        softmax(logits, temperature=0.0)


def test_ece_on_hand_made_case():
    # Bin (0.8, 0.9]: confidence 0.9, accuracy 0.5 -> 0.4; bin (0.5, 0.6]: confidence 0.6, accuracy 1 -> 0.4.
    # Each bin holds half the examples: ECE = 0.5 * 0.4 + 0.5 * 0.4.
    assert expected_calibration_error(HAND_PROBA, HAND_LABELS, n_bins=10) == pytest.approx(0.4)


def test_ece_is_zero_when_confidence_equals_accuracy_and_one_bin_gives_the_global_gap():
    proba = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(proba, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # One bin: |mean accuracy - mean confidence| = |0.75 - 0.75|.
    assert expected_calibration_error(HAND_PROBA, HAND_LABELS, n_bins=1) == pytest.approx(0.0)


def test_reliability_bins_report_per_bin_confidence_accuracy_and_count():
    bins = reliability_bins(HAND_PROBA, HAND_LABELS, n_bins=10)
    assert len(bins["edges"]) == 11
    assert bins["count"] == [0, 0, 0, 0, 0, 2, 0, 0, 2, 0]
    assert bins["confidence"][5] == pytest.approx(0.6)
    assert bins["accuracy"][5] == 1.0
    assert bins["confidence"][8] == pytest.approx(0.9)
    assert bins["accuracy"][8] == 0.5
    assert bins["accuracy"][0] is None


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_fit_temperature_recovers_the_temperature_labels_were_sampled_with(true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(5000, 4))
    probs = softmax(logits, temperature=true_temperature)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.1)


def test_fit_temperature_is_about_one_for_calibrated_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(5000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits)])
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: expected_calibration_error(np.array([[2.0, 1.0]]), np.array([0])), DataError, "sum to 1"),
    (lambda: expected_calibration_error(HAND_PROBA, np.array([0, 1, 2, 1])), DataError, "labels must lie"),
    (lambda: fit_temperature(np.zeros((3, 2)), np.array([0, 1])), DataError, "one per row"),
    (lambda: reliability_bins(HAND_PROBA, HAND_LABELS, n_bins=0), ConfigError, "n_bins"),
], ids=["not-probabilities", "label-out-of-range", "labels-per-row", "no-bins"])
def test_inputs_are_validated(call, error, message):
    with pytest.raises(error, match=message):
        call()
