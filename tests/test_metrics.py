"""Classification metrics against hand-computed values, and imbalance checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headstart.data.balance import imbalance_ratio, imbalance_warning
from headstart.errors import DataError
from headstart.evaluation.metrics import classification_metrics

NAMES = ["cat", "dog", "fox"]
# Predictions (argmax): cat, cat, dog, dog, dog. "fox" never occurs and is never predicted.
Y_TRUE = np.array([0, 0, 1, 1, 0])
PROBA = np.array([
    [0.7, 0.2, 0.1],
    [0.6, 0.3, 0.1],
    [0.1, 0.8, 0.1],
    [0.2, 0.7, 0.1],
    [0.3, 0.5, 0.2],
])


def test_metrics_match_hand_computed_values_and_are_json_ready():
    result = classification_metrics(Y_TRUE, PROBA, NAMES)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert result["n_examples"] == 5
    assert result["accuracy"] == pytest.approx(4 / 5)
    # Recall: cat 2/3, dog 2/2; fox absent so left out.
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    # F1: cat = 2*1*(2/3)/(1+2/3) = 0.8; dog = 2*(2/3)*1/(2/3+1) = 0.8; fox neither true nor predicted.
    assert result["macro_f1"] == pytest.approx(0.8)
    assert result["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.8, 0.7, 0.3])))
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert result["per_class"]["cat"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                          "f1": pytest.approx(0.8), "support": 3}
    assert result["per_class"]["dog"]["precision"] == pytest.approx(2 / 3)
    assert result["per_class"]["fox"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    # Confidences 0.7 (twice, right), 0.6 and 0.8 (right), 0.5 (wrong) fall in four bins of the default 15:
    # ECE = 2/5 * 0.3 + 1/5 * (0.4 + 0.2 + 0.5).
    assert result["ece"] == pytest.approx(0.34)
    assert "top5_accuracy" not in result


def test_top5_accuracy_is_reported_with_more_than_five_classes():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(7), size=40)
    labels = rng.integers(0, 7, size=40)
    result = classification_metrics(labels, proba, [f"c{i}" for i in range(7)])
    ranks = (proba > proba[np.arange(40), labels][:, None]).sum(axis=1)
    assert result["top5_accuracy"] == pytest.approx(np.mean(ranks < 5))


def test_metrics_reject_a_class_name_count_that_does_not_match():
    with pytest.raises(DataError, match="class names"):
        classification_metrics(Y_TRUE, PROBA, ["cat", "dog"])


def test_imbalance_ratio_and_warning():
    assert imbalance_ratio([10, 10, 10]) == 1.0
    assert imbalance_ratio([50, 0, 5]) == 10.0
    assert imbalance_warning([50, 40, 5], ["a", "b", "c"]) is None
    message = imbalance_warning([120, 40, 6, 0], ["a", "b", "c", "d"])
    assert "'a' has 120" in message and "'c' only 6" in message and "20x" in message
    with pytest.raises(DataError):
        imbalance_ratio([0, 0])


@pytest.mark.parametrize("n_classes", [2, 3, 8])
def test_metrics_equal_scikit_learns_including_absent_and_unpredicted_classes(n_classes):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(n_classes)
    # Class 1 never occurs; the last class occurs but is rarely predicted; ties in the scores test top-5.
    y = rng.choice([c for c in range(n_classes) if c != 1], size=60)
    logits = rng.normal(size=(60, n_classes)).round(1)
    logits[:, -1] -= 2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(n_classes)]
    result = classification_metrics(y, proba, names)
    labels, y_pred = np.arange(n_classes), proba.argmax(axis=1)
    precision, recall, f1, support = sk.precision_recall_fscore_support(y, y_pred, labels=labels,
                                                                        zero_division=np.nan)
    assert result["accuracy"] == sk.accuracy_score(y, y_pred)
    assert result["balanced_accuracy"] == pytest.approx(
        sk.recall_score(y, y_pred, labels=np.unique(y), average="macro", zero_division=0), abs=1e-15)
    assert result["macro_f1"] == pytest.approx(sk.f1_score(y, y_pred, average="macro", zero_division=0), abs=1e-15)
    assert result["log_loss"] == pytest.approx(sk.log_loss(y, proba, labels=labels), abs=1e-15)
    assert result["confusion_matrix"] == sk.confusion_matrix(y, y_pred, labels=labels).tolist()
    for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True):
        expected = [None if np.isnan(v) else pytest.approx(v, abs=1e-15) for v in (p, r, f)] + [s]
        assert [result["per_class"][name][k] for k in ("precision", "recall", "f1", "support")] == expected
    if n_classes > 5:
        assert result["top5_accuracy"] == sk.top_k_accuracy_score(y, proba, k=5, labels=labels)
