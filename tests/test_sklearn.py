"""TransferClassifier: the scikit-learn contract, composition with scikit-learn tools, safe pickling."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks

from headstart import fitting
from headstart.errors import DataError
from headstart.sklearn import TransferClassifier

# The API checks that apply to an estimator of raw texts or images (the others fit on numeric matrices).
APPLICABLE_CHECKS = ["check_estimator_cloneable", "check_estimator_repr", "check_no_attributes_set_in_init",
                     "check_parameters_default_constructible", "check_get_params_invariance", "check_set_params",
                     "check_do_not_raise_errors_in_init_or_set_params", "check_estimators_unfitted",
                     "check_mixin_order", "check_estimator_tags_renamed", "check_valid_tag_types"]


@pytest.mark.parametrize("check", APPLICABLE_CHECKS)
def test_scikit_learn_api_checks(check):
    getattr(estimator_checks, check)("TransferClassifier", TransferClassifier())


def test_check_estimator_skips_numeric_checks_with_a_reason():
    with pytest.warns(estimator_checks.SkipTestWarning, match="requires input"):
        estimator_checks.check_estimator(TransferClassifier())


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    labels = np.array(["red", "green", "blue"] * 8)
    pixels = rng.integers(0, 90, size=(24, 20, 20, 3))
    for image, label in zip(pixels, labels, strict=True):
        image[..., ["red", "green", "blue"].index(label)] += 150
    return pixels.astype(np.uint8), labels


def test_fit_calls_the_fitting_core_and_predicts_the_given_labels(images, tiny_timm_ref, monkeypatch):
    X, y = images
    calls = []
    original = fitting.fit_splits
    monkeypatch.setattr("headstart.sklearn.fit_splits", lambda *a, **k: calls.append(a) or original(*a, **k))
    clf = TransferClassifier(backbone=tiny_timm_ref, image_size=32)
    assert clf.fit(X, y) is clf
    assert len(calls) == 1 and calls[0][0].test is None
    assert list(clf.classes_) == ["blue", "green", "red"]
    assert clf.score(X, y) >= 0.9
    pils = [Image.fromarray(x) for x in X[:4]]
    assert np.allclose(clf.predict_proba(pils), clf.predict_proba(X[:4]))
    assert set(clf.predict(list(X[:4]))) <= set(y)


def test_text_inputs_and_integer_labels(text_csv, tiny_text_ref):
    import pandas as pd

    table = pd.read_csv(text_csv)
    labels = (table["label"] == "food").astype(int).to_numpy()
    clf = TransferClassifier(backbone=tiny_text_ref, strategy="linear", settings={"c": 1.0})
    clf.fit(table["text"].tolist(), labels)
    assert clf.modality_ == "text"
    assert clf.predict(["a bowl of rice"]).dtype == labels.dtype


def test_pipeline_cross_validation_and_grid_search(images, tiny_timm_ref):
    X, y = images
    pipeline = Pipeline([("as_list", FunctionTransformer(list)),
                         ("clf", TransferClassifier(backbone=tiny_timm_ref, image_size=32))])
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() >= 0.8
    search = GridSearchCV(TransferClassifier(backbone=tiny_timm_ref, image_size=32, strategy="linear"),
                          {"settings": [{"c": 1e-4}, {"c": 1.0}]}, cv=2).fit(X, y)
    best = search.best_params_["settings"]
    assert len(search.cv_results_["params"]) == 2 and search.best_score_ >= 0.8
    assert search.best_estimator_.model_.strategy_config["chosen_C"] == best["c"]  # the settings reached the fit
    assert clone(search.best_estimator_).get_params()["settings"] == best


def test_joblib_round_trip_stores_safetensors_not_pickled_tensors(images, tiny_timm_ref, tmp_path, monkeypatch):
    X, y = images
    clf = TransferClassifier(backbone=tiny_timm_ref, image_size=32).fit(X, y)
    state = clf.__getstate__()
    assert isinstance(state["model_"]["tensors"], bytes) and isinstance(state["model_"]["config"], str)
    joblib.dump(clf, tmp_path / "clf.joblib")

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load ran while unpickling")

    monkeypatch.setattr("torch.load", refuse)
    restored = joblib.load(tmp_path / "clf.joblib")
    assert np.array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert list(restored.classes_) == list(clf.classes_)
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict(X), clf.predict(X))


def test_bad_inputs_are_refused_with_the_reason(images, tiny_timm_ref):
    X, y = images
    clf = TransferClassifier(backbone=tiny_timm_ref, image_size=32)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with pytest.raises(DataError, match="24 examples but y has 3"):
        clf.fit(X, y[:3])
    with pytest.raises(DataError, match="single class"):
        clf.fit(X, ["red"] * len(X))
    with pytest.raises(DataError, match="mixes image and text"):
        clf.fit([X[0], "a text"], ["a", "b"])
