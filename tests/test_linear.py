import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import headstart
from headstart.strategies.linear import fit_linear_head


def blobs(n_classes=3, per_class=30, dim=8, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(n_classes, dim))
    x = np.concatenate([centers[c] + spread * rng.normal(size=(per_class, dim)) for c in range(n_classes)])
    y = np.repeat(np.arange(n_classes), per_class)
    # Features on very different scales: the head must fold the standardization in.
    return (x * np.linspace(0.01, 100, dim)).astype(np.float32), y


def logits(head, x):
    with torch.no_grad():
        return head(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("scaling", ["global", "per_feature"])
def test_head_on_raw_features_equals_sklearn_on_scaled_features(scaling):
    x, y = blobs()
    x[:, 0] *= 50  # feature scales differ, so the two scalings give different models
    head, info = fit_linear_head(x, y, 3, c=0.5, scaling=scaling)
    centred = x - x.mean(0)
    z = centred / (x.std(0) + 1e-6) if scaling == "per_feature" else centred / (np.sqrt(np.mean(centred ** 2)) + 1e-6)
    reference = LogisticRegression(C=0.5, max_iter=1000, random_state=0).fit(z, y)
    np.testing.assert_allclose(logits(head, x), reference.decision_function(z), rtol=1e-4, atol=1e-3)
    assert info["C"] == 0.5


def test_cross_validation_chooses_c_and_reports_its_accuracy():
    x, y = blobs(spread=0.5)
    head, info = fit_linear_head(x, y, 3)
    assert 1e-4 <= info["C"] <= 1e2
    assert info["cv_accuracy"] > 0.9
    assert (logits(head, x).argmax(1) == y).mean() > 0.95


def test_binary_problem_gives_two_outputs_with_sklearn_probabilities():
    x, y = blobs(n_classes=2)
    head, _ = fit_linear_head(x, y, 2, c=1.0, scaling="per_feature")
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    reference = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(z, y)
    out = logits(head, x)
    proba = np.exp(out) / np.exp(out).sum(1, keepdims=True)
    np.testing.assert_allclose(proba, reference.predict_proba(z), atol=1e-4)


def test_class_absent_from_training_is_never_predicted():
    x, y = blobs(n_classes=3)
    head, _ = fit_linear_head(x, y, 4, c=1.0)
    assert head.out_features == 4
    assert (logits(head, x).argmax(1) != 3).all()


def _path(*columns_per_c):
    """Out-of-fold log probabilities, one [N, 2] block per C, from each example's probability of class 1."""
    return np.stack([np.log(np.stack([1 - np.asarray(p), np.asarray(p)], axis=1)) for p in columns_per_c])


def test_accuracy_selection_weights_classes_when_asked():
    from headstart.strategies.linear import _choose_c

    labels = np.array([0] * 8 + [1] * 2)
    # C0 calls everything class 0 (80% accuracy, 50% balanced); C1 gets both 1s and misses two 0s (80%, 87.5%).
    c0 = [0.1] * 10
    c1 = [0.1] * 6 + [0.9] * 2 + [0.9] * 2
    assert _choose_c(_path(c0, c1), labels, "accuracy", None) == (0, 1.0)  # a tie: the smaller C
    assert _choose_c(_path(c0, c1), labels, "accuracy", "balanced") == (1, 1.0)


def test_calibrated_selection_judges_each_c_after_its_temperature():
    from headstart.strategies.linear import _choose_c

    labels = np.array([0, 1] * 10)
    separating = np.where(labels == 1, 0.52, 0.48)  # always right, hardly confident (a strongly regularized C)
    sharp = np.where(labels == 1, 0.9, 0.1)
    sharp[:2] = 1 - sharp[:2]  # confident, and wrong on two examples
    path = _path(separating, sharp)
    assert _choose_c(path, labels, "log_loss", None)[0] == 1  # raw log loss punishes the timid probabilities
    best, temperature = _choose_c(path, labels, "calibrated_log_loss", None)
    assert best == 0 and temperature < 0.1  # a low temperature makes the separating C confident


def test_default_selection_folds_the_temperature_into_the_head():
    x, y = blobs(spread=2.0)
    head, info = fit_linear_head(x, y, 3)
    assert info["temperature"] != 1.0
    centred = x - x.mean(0)
    z = centred / (np.sqrt(np.mean(centred ** 2)) + 1e-6)
    reference = LogisticRegression(C=info["C"], max_iter=1000, random_state=0).fit(z, y)
    np.testing.assert_allclose(logits(head, x), reference.decision_function(z) / info["temperature"], rtol=1e-4,
                               atol=1e-3)
    _, fixed = fit_linear_head(x, y, 3, c=1.0)
    assert fixed["temperature"] == 1.0


def test_choosing_c_by_log_loss_keeps_confidence_near_accuracy():
    # Well separated classes: every C from tiny up reaches 100% cross-validated accuracy, so selecting by accuracy
    # keeps the first (smallest) C and its near-uniform probabilities; log loss prefers a confident head.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 8)) + 6 * np.eye(8)[labels]
    test_labels = np.repeat(np.arange(3), 50)
    test = torch.tensor(rng.normal(size=(150, 8)) + 6 * np.eye(8)[test_labels], dtype=torch.float32)
    confidence = {}
    for select_by in ("log_loss", "accuracy"):
        head, info = fit_linear_head(features, labels, 3, select_by=select_by)
        assert info["cv_accuracy"] == 1.0
        with torch.no_grad():
            proba = torch.softmax(head(test), dim=1).numpy()
        assert (proba.argmax(axis=1) == test_labels).mean() > 0.97
        confidence[select_by] = proba.max(axis=1).mean()
    assert confidence["log_loss"] > 0.9 > 0.6 > confidence["accuracy"]


def test_the_linear_probe_says_what_it_is_fitting_unless_quiet(capsys, tiny_backbone, image_folder):
    headstart.fit(image_folder, backbone=tiny_backbone, progress=True, strategy="linear")
    assert "fitting the linear head (5-fold cross-validation over 12 values of C)" in capsys.readouterr().err
    headstart.fit(image_folder, backbone=tiny_backbone, progress=False, strategy="linear", settings={"c": 1.0})
    assert "fitting the linear head" not in capsys.readouterr().err


def test_a_probe_fitted_before_on_the_same_features_is_loaded_bit_for_bit(tmp_path, monkeypatch, tiny_backbone,
                                                                         image_folder):
    import headstart.strategies.linear as linear

    first = headstart.fit(image_folder, backbone=tiny_backbone, progress=False, cache=tmp_path, strategy="linear")
    calls = []
    monkeypatch.setattr(linear, "fit_linear_head", lambda *a, **k: calls.append(1) or fit_linear_head(*a, **k))
    again = headstart.fit(image_folder, backbone=tiny_backbone, progress=False, cache=tmp_path, strategy="linear")
    assert calls == []
    assert torch.equal(again.head.weight, first.head.weight) and torch.equal(again.head.bias, first.head.bias)
    assert again.metrics["train"] == first.metrics["train"]
    headstart.fit(image_folder, backbone=tiny_backbone, progress=False, cache=tmp_path, seed=1,
                  strategy="linear")
    assert calls  # another seed is another fit


def test_a_damaged_remembered_probe_is_fitted_again(tmp_path):
    from headstart.strategies.probe_memo import remembered_head

    x, y = blobs()
    fit = lambda: fit_linear_head(x, y, 3, c=0.5)  # noqa: E731
    head, info = remembered_head(tmp_path, fit, x, y, 3, {"c": 0.5})
    (stored,) = (tmp_path / "heads").iterdir()
    stored.write_bytes(b"damaged")
    again, again_info = remembered_head(tmp_path, fit, x, y, 3, {"c": 0.5})
    assert torch.equal(again.weight, head.weight) and again_info == info
    assert remembered_head(tmp_path, lambda: (_ for _ in ()).throw(AssertionError), x, y, 3, {"c": 0.5})[1] == info


def fold_models_logits(x, y, c):
    """The mean logits of the probe's 5 fold models at ``c``, fitted here independently, on global-scaled ``x``."""
    from headstart.strategies.linear import cross_validation_folds, feature_scaling

    mean, std = feature_scaling(x)
    z = (x - mean) / std
    return np.mean([LogisticRegression(C=c, max_iter=1000, random_state=0).fit(z[fit], y[fit]).decision_function(z)
                    for fit, _ in cross_validation_folds(y, 5, 0).split(z, y)], axis=0)


def test_crossfit_head_at_a_given_c_is_the_mean_of_the_fold_models():
    x, y = blobs(spread=3.0)
    head, info = fit_linear_head(x, y, 3, c=0.05, final="crossfit")
    assert info == {"C": 0.05, "temperature": 1.0}
    np.testing.assert_allclose(logits(head, x), fold_models_logits(x, y, 0.05), rtol=1e-5, atol=1e-5)


def test_crossfit_head_is_the_mean_of_the_fold_models_logits_over_their_temperature():
    x, y = blobs(spread=3.0)
    head, info = fit_linear_head(x, y, 3, final="crossfit")
    refit, refit_info = fit_linear_head(x, y, 3, final="refit")
    assert info == refit_info  # the same C and temperature, only the final head differs
    expected = fold_models_logits(x, y, info["C"]) / info["temperature"]
    # The fold models inside are warm-started along the path of C: the same optimum up to the solver's tolerance.
    np.testing.assert_allclose(logits(head, x), expected, rtol=1e-3, atol=1e-3)
    assert np.abs(logits(refit, x) - expected).max() > 0.05


def test_crossfit_never_fits_on_all_examples(monkeypatch):
    from sklearn.linear_model import LogisticRegression as Original

    x, y = blobs()
    seen = []
    original_fit = Original.fit
    monkeypatch.setattr(Original, "fit", lambda self, z, labels, **k: seen.append(len(z)) or original_fit(self, z,
                                                                                                       labels, **k))
    fit_linear_head(x, y, 3, final="crossfit")
    assert seen and max(seen) < len(y)
    fit_linear_head(x, y, 3, final="refit")
    assert max(seen) == len(y)


def test_crossfit_falls_back_to_refit_when_a_class_has_one_example():
    x, y = blobs(per_class=5)
    x, y = x[4:], y[4:]  # class 0 keeps one example: no folds
    crossfit, _ = fit_linear_head(x, y, 3, c=1.0, final="crossfit")
    refit, _ = fit_linear_head(x, y, 3, c=1.0, final="refit")
    assert torch.equal(crossfit.weight, refit.weight)


def test_final_setting_is_saved_and_reloads(tmp_path, image_folder, tiny_backbone):
    out = tmp_path / "run"
    model = headstart.fit(image_folder, backbone=tiny_backbone, out=out, progress=False,
                          strategy="linear", settings={"final": "crossfit"})
    reloaded = headstart.load(out)
    assert reloaded.strategy_config["final"] == "crossfit"
    items = [str(p) for p in sorted(image_folder.rglob("*.png"))]
    assert np.array_equal(reloaded.predict_proba(items), model.predict_proba(items))


def test_unknown_final_is_a_clear_config_error(image_folder, tiny_backbone):
    from headstart.errors import ConfigError

    with pytest.raises(ConfigError, match="final"):
        headstart.fit(image_folder, backbone=tiny_backbone, progress=False, strategy="linear",
                      settings={"final": "average"})
    x, y = blobs()
    with pytest.raises(ConfigError, match="'refit' or 'crossfit'"):
        fit_linear_head(x, y, 3, final="average")
