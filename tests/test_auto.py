"""The ``auto`` strategy: frozen-feature candidates by cross-validation, fine-tuning only when it may pay."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import headstart
from headstart.backbones import extract_features, timed_features
from headstart.data import Dataset
from headstart.model import TransferModel
from headstart.reports.fit import fit_report
from headstart.strategies import auto, auto_gates, get_strategy
from headstart.strategies.auto import learning_curve_gain, training_batch_seconds
from headstart.strategies.blend import choose_probe
from headstart.training import FitContext
from training_support import TinyTextBackbone, sentiment_texts


def _blobs(per_class: int, seed: int = 0, spread: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), per_class)
    return rng.normal(size=(len(labels), 16)) * spread + 3 * np.eye(16)[labels], labels


def test_choose_probe_scores_every_candidate_on_the_same_folds_and_keeps_the_lowest_log_loss():
    features, labels = _blobs(25)
    choice = choose_probe(features, labels, 4, seed=0)
    tried = choice.tried
    assert set(tried) == {"linear", "prototypes", "blend"} and 0 < tried["blend"]["weight"] < 1
    best = min(tried.values(), key=lambda s: s["cv_log_loss"])
    assert choice.name == next(name for name, s in tried.items() if s is best)
    test_features, test_labels = _blobs(100, seed=1)
    with torch.no_grad():
        proba = torch.softmax(choice.head(torch.tensor(test_features, dtype=torch.float32)), dim=1).numpy()
    assert (proba.argmax(axis=1) == test_labels).mean() > 0.6  # measured 0.66; LogisticRegression() 0.61
    # The temperature was fitted on out-of-fold predictions: confidence stays near accuracy on new data.
    assert abs(proba.max(axis=1).mean() - (proba.argmax(axis=1) == test_labels).mean()) < 0.08


def test_one_example_of_a_class_falls_back_to_prototypes():
    features, labels = _blobs(3)
    labels = labels.copy()
    labels[-1] = 3
    labels[-3:-1] = 2
    choice = choose_probe(features, labels, 4)
    assert choice.name == "prototypes" and "single example" in choice.reason


def test_the_learning_curve_is_flat_on_saturated_features_and_rises_on_hard_ones():
    easy, easy_labels = _blobs(40, spread=0.3)
    assert abs(learning_curve_gain(easy, easy_labels, 1.0, folds=5, seed=0)) < 0.02
    hard, hard_labels = _blobs(40, spread=3.0)
    assert learning_curve_gain(hard, hard_labels, 1.0, folds=5, seed=0) > 0.02


def test_auto_says_what_it_tried_and_why_and_skips_fine_tuning_on_small_data():
    model = headstart.fit(sentiment_texts(60), backbone=TinyTextBackbone(), strategy="auto", progress=False,
                          test_fraction=0.0)
    record = model.metrics["train"]["auto"]
    assert record["winner"] in ("linear", "prototypes", "blend") and "cross-validated log loss" in record["why"]
    assert record["finetune"].startswith("not tried")
    assert model.strategy == "auto" and not model.backbone_trained


def test_auto_keeps_fine_tuning_only_when_it_beats_the_probe_on_held_out_data(tmp_path):
    strategy = get_strategy("auto", finetune="always", finetune_margin=0.5, batch_size=8)
    data = sentiment_texts(60)
    model = strategy.fit(TinyTextBackbone(), data, None, FitContext(work_dir=tmp_path, seed=0, progress=False,
                                                                       max_time=60))
    result = model.metrics["train"]["auto"]["finetune_result"]
    assert result["n_held_out"] == 12 and result["strategy"] == "finetune"
    # A margin of 50 points cannot be met, so the probe is kept whatever fine-tuning reached.
    assert not model.backbone_trained and model.metrics["train"]["auto"]["winner"] != "finetune"


def test_auto_tries_fine_tuning_only_when_its_time_allowance_holds_enough_epochs(tmp_path, monkeypatch):
    # 40 texts per class (8 held out per class, enough to compare), every 8th label flipped so that the probe is
    # not already perfect, and a learning curve said to be rising: only the time allowance decides.
    monkeypatch.setattr(auto, "learning_curve_gain", lambda *args, **kwargs: 0.1)
    clean = sentiment_texts(80)
    flipped = np.where(np.arange(80) % 8 == 0, 1 - clean.labels, clean.labels)
    data, backbone = Dataset(clean.items, flipped, clean.class_names, "text"), TinyTextBackbone()
    context = FitContext(work_dir=tmp_path, seed=0, progress=False, max_time=120)
    record = get_strategy("auto", finetune_cost=1e-6, batch_size=8).fit(backbone, data, None, context
                                                                         ).metrics["train"]["auto"]
    assert record["finetune"].startswith("not tried: 25 epochs (50 steps of 32, at least 50) would take about")
    assert "finetune_result" not in record
    generous = get_strategy("auto", finetune_cost=1e6, batch_size=8, finetune_margin=0.5)
    record = generous.fit(backbone, data, None, context).metrics["train"]["auto"]
    assert record["finetune"].startswith("tried") and record["finetune_result"]["n_held_out"] == 16


@pytest.mark.parametrize(("modality", "cost"), [("text", 30), ("image", 5), ("audio", 5)])
def test_fine_tunings_default_time_allowance_depends_on_the_modality(monkeypatch, modality, cost):
    # Fine-tuning a text encoder paid on WordNet at 5-9x the probe's time; an image network's never beat the probe.
    monkeypatch.setattr(auto, "training_batch_seconds", lambda *args: (1e6, 4))
    context = FitContext(work_dir=Path("unused"), seed=0, progress=False, max_time=1e9)
    data = sentiment_texts(40)
    settings, why = get_strategy("auto")._finetune_plan(SimpleNamespace(modality=modality), data, context,
                                                        probe_seconds=2.0, extraction=1.0)
    assert settings is None and f"more than the {2 * cost} s it may take ({cost}x the probe's)" in why
    _, why = get_strategy("auto", finetune_cost=3)._finetune_plan(SimpleNamespace(modality=modality), data,
                                                                   context, 2.0, 1.0)
    assert "(3x the probe's)" in why, "a cost given is used whatever the modality"


def text_plan(texts: int, probe_seconds: float, **settings):
    """``auto``'s fine-tuning plan on ``texts`` sentiment texts, a batch of 64 timed at 6.4 s (0.1 s an example)
    and an extraction of 1 s."""
    context = FitContext(work_dir=Path("unused"), seed=0, progress=False, max_time=1e9)
    return get_strategy("auto", **settings)._finetune_plan(SimpleNamespace(modality="text"), sentiment_texts(texts),
                                                           context, probe_seconds=probe_seconds, extraction=1.0)


def test_fine_tuning_is_planned_for_the_epochs_its_allowance_holds_at_most_its_default(monkeypatch):
    # 4000 texts: 3200 train (100 steps of 32 an epoch, so min_steps asks for one), a batch of 64 timed at 6.4 s
    # is 0.1 s per example, 320 s per epoch, 346.7 s with the validation pass over the 800 held out; the
    # unaugmented head stage costs one extraction (1 s).
    monkeypatch.setattr(auto, "training_batch_seconds", lambda *args: (6.4, 4))
    plan = text_plan(4000, 110.0, finetune_cost=10)
    assert plan == ({"epochs": 3}, ""), "1100 s of allowance hold 3 epochs of 346.7 s"
    plan = text_plan(4000, 80.0, finetune_cost=10, min_finetune_epochs=2)
    assert plan == ({"epochs": 2}, ""), "fewer than the default epochs when the allowance holds only those"
    default = get_strategy("finetune").config.resolve("text", 3200, "finetune").epochs
    generous = text_plan(4000, 110.0, finetune_cost=1e4)
    assert generous == ({"epochs": default}, ""), "never more than the strategy's default epochs"
    # 700 s of allowance hold 2 epochs, fewer than 3.
    settings, why = text_plan(4000, 100.0, finetune_cost=7)
    assert settings is None and why.startswith("not tried: 3 epochs would take about 1041 CPU s")


def test_on_small_data_fine_tuning_is_tried_only_with_enough_steps(monkeypatch):
    # 100 texts: 80 train, 3 steps of 32 an epoch, so min_finetune_steps=50 asks for 17 epochs. An allowance that
    # holds 3 epochs (8.67 s each, as above) does not make a few steps worth training.
    monkeypatch.setattr(auto, "training_batch_seconds", lambda *args: (6.4, 4))
    settings, why = text_plan(100, 3.0, finetune_cost=10)
    assert settings is None
    assert why.startswith("not tried: 17 epochs (51 steps of 32, at least 50) would take about 148 CPU s")
    enough = text_plan(100, 3.0, finetune_cost=60)
    assert enough == ({"epochs": 20}, ""), "179 s hold 20 of the default 34 epochs"
    fewer = text_plan(100, 3.0, finetune_cost=10, min_finetune_steps=9)
    assert fewer == ({"epochs": 3}, ""), "29 s hold 3 epochs: 9 steps when that is all asked for"


def test_text_is_not_gated_by_the_learning_curve_unless_asked(tmp_path, monkeypatch):
    # A flat curve: the probe gains nothing from half the data to all of it.
    monkeypatch.setattr(auto, "learning_curve_gain", lambda *args, **kwargs: 0.0)
    monkeypatch.setattr(auto, "training_batch_seconds", lambda *args: (1e6, 4))
    clean = sentiment_texts(80)
    data = Dataset(clean.items, np.where(np.arange(80) % 8 == 0, 1 - clean.labels, clean.labels),
                   clean.class_names, "text")
    context = FitContext(work_dir=tmp_path, seed=0, progress=False, max_time=120)
    record = get_strategy("auto").fit(TinyTextBackbone(), data, None, context).metrics["train"]["auto"]
    assert record["finetune"].startswith("not tried: 25 epochs"), "past the curve, only the allowance stopped it"
    gated = get_strategy("auto", min_curve_gain=0.02).fit(TinyTextBackbone(), data, None, context)
    assert gated.metrics["train"]["auto"]["finetune"].startswith("not tried: the probe gained +0.0%")


def test_the_training_batch_estimate_times_a_second_small_pass_and_scales_it_per_example(monkeypatch):
    # A clock that advances 0.1 s per example passed forward, and 1 s more during the first timed pass (another
    # program): the estimate must come from the undisturbed timed passes, never the untimed warm-up.
    backbone, seen, clock = TinyTextBackbone(), [], [0.0]
    forward = backbone.forward

    def counted(batch):
        seen.append(len(batch["input_ids"]))
        clock[0] += 0.1 * len(batch["input_ids"]) + (1.0 if len(seen) == 2 else 0.0)
        return forward(batch)

    monkeypatch.setattr(backbone, "forward", counted)
    monkeypatch.setattr(auto_gates.time, "process_time", lambda: clock[0])
    texts = sentiment_texts(40).items
    seconds, timed = training_batch_seconds(backbone, texts, batch_size=32)
    assert seen == [auto.TIMED_EXAMPLES] * (1 + auto_gates.TIMED_PASSES) and timed == auto.TIMED_EXAMPLES
    assert abs(seconds - 3.2) < 1e-9, "0.4 s for 4 examples is 3.2 s for a batch of 32"
    assert training_batch_seconds(backbone, texts, batch_size=2)[1] == 2, "never more than the batch size"
    assert all(p.grad is None for p in backbone.module.parameters()) and not backbone.module.training


def test_the_learning_curve_reuses_a_known_full_data_accuracy_and_agrees_with_computing_it():
    features, labels = _blobs(30, spread=2.5)
    choice = choose_probe(features, labels, 4, seed=0)
    linear = choice.tried["linear"]
    computed = learning_curve_gain(features, labels, linear["C"], folds=5, seed=0)
    assert learning_curve_gain(features, labels, linear["C"], folds=5, seed=0,
                               full_accuracy=linear["cv_accuracy"]) == computed


def test_a_cached_rerun_loads_autos_choice_instead_of_making_it_again(tmp_path, monkeypatch):
    data, cache = sentiment_texts(60), tmp_path / "cache"
    first = headstart.fit(data, backbone=TinyTextBackbone(), progress=False, test_fraction=0.0, cache=cache)
    assert "remembered" not in first.metrics["train"]["auto"] and list((cache / "heads").glob("auto-*"))
    state = torch.random.get_rng_state()

    def refuse(*args, **kwargs):
        raise AssertionError("the choice should have been loaded")

    monkeypatch.setattr(auto, "choose_probe", refuse)
    again = headstart.fit(data, backbone=TinyTextBackbone(), progress=False, test_fraction=0.0, cache=cache)
    assert torch.equal(torch.random.get_rng_state(), state)  # neither path moves torch's global random state
    assert torch.equal(again.head.weight, first.head.weight) and torch.equal(again.head.bias, first.head.bias)
    record = again.metrics["train"]["auto"]
    assert record.pop("remembered") is True and again.metrics["train"] == first.metrics["train"]
    assert again.strategy_config == first.strategy_config
    # Another seed is another choice: made again (here refused), not loaded.
    with np.testing.assert_raises(AssertionError):
        headstart.fit(data, backbone=TinyTextBackbone(), progress=False, test_fraction=0.0, cache=cache, seed=1)


def test_a_damaged_remembered_choice_is_made_again_and_replaced(tmp_path):
    data, cache = sentiment_texts(60), tmp_path / "cache"
    first = headstart.fit(data, backbone=TinyTextBackbone(), progress=False, test_fraction=0.0, cache=cache)
    (stored,) = (cache / "heads").glob("auto-*")
    stored.write_bytes(b"not a safetensors file")
    again = headstart.fit(data, backbone=TinyTextBackbone(), progress=False, test_fraction=0.0, cache=cache)
    assert "remembered" not in again.metrics["train"]["auto"]
    assert torch.equal(again.head.weight, first.head.weight)
    assert auto.recall_choice(stored) is not None


def test_a_fine_tuned_winners_decision_is_remembered_and_replayed_with_the_planned_settings(tmp_path, monkeypatch):
    def context(name):
        return FitContext(work_dir=tmp_path, seed=0, progress=False, max_time=60,
                          cache=headstart.FeatureCache(tmp_path / name))

    data, strategy = sentiment_texts(60), get_strategy("auto", finetune="always", finetune_margin=0.5, batch_size=8)
    kept = strategy.fit(TinyTextBackbone(), data, None, context("probe"))
    assert "finetune_result" in kept.metrics["train"]["auto"] and not kept.backbone_trained
    assert len(list((tmp_path / "probe" / "heads").glob("auto-*"))) == 1
    calls = []

    def fine_tuned(self, backbone, train, context, settings, record, spent):
        calls.append(settings)
        record.update(winner="finetune", finetune_result={"strategy": "finetune"})
        return TransferModel(backbone, torch.nn.Linear(backbone.feature_dim, 2), train.class_names, strategy="auto",
                             backbone_trained=True)

    monkeypatch.setattr(auto.Auto, "_try_finetune", fine_tuned)
    model = strategy.fit(TinyTextBackbone(), data, None, context("tuned"))
    assert model.backbone_trained and len(list((tmp_path / "tuned" / "heads").glob("auto-*"))) == 1
    monkeypatch.setattr(auto, "choose_probe", lambda *args, **kwargs: pytest.fail("the decision should be replayed"))
    again = strategy.fit(TinyTextBackbone(), data, None, context("tuned"))
    assert again.backbone_trained and calls == [{}, {}], "fine-tuned again with the settings planned the first time"
    assert again.metrics["train"]["auto"]["remembered"] is True


def test_extraction_seconds_are_recorded_with_cached_features_so_autos_allowance_ignores_the_cache(tmp_path):
    data, cache = sentiment_texts(60), headstart.FeatureCache(tmp_path / "cache")
    features, seconds = timed_features(TinyTextBackbone(), data, cache=cache)
    assert seconds > 0 and cache.cpu_seconds(TinyTextBackbone(), data) == seconds
    again, recorded = timed_features(TinyTextBackbone(), data, cache=cache)
    assert recorded == seconds and np.array_equal(again, features)
    # Features cached by a version that did not record the time are extracted again, once, to measure it.
    cache.path(TinyTextBackbone(), data).with_suffix(".json").unlink()
    assert extract_features(TinyTextBackbone(), data, cache=cache) is not None
    assert cache.cpu_seconds(TinyTextBackbone(), data) is None, "plain extraction loads them as they are"
    _, measured = timed_features(TinyTextBackbone(), data, cache=cache)
    assert cache.cpu_seconds(TinyTextBackbone(), data) == measured
    # auto, fitted after the features were cached, counts the recorded extraction in the probe's cost.
    model = get_strategy("auto").fit(TinyTextBackbone(), data, None,
                                     FitContext(work_dir=tmp_path, seed=0, progress=False, cache=cache))
    assert model.metrics["train"]["auto"]["extraction_cpu_seconds"] == round(measured, 2)


def test_the_report_says_what_auto_tried_what_it_cost_and_that_a_rerun_loaded_the_choice(tmp_path):
    data, cache = sentiment_texts(60), tmp_path / "cache"
    fresh, again = (headstart.fit(data, backbone=TinyTextBackbone(), progress=False, test_fraction=0.0,
                                  cache=cache) for _ in range(2))
    page = fit_report(fresh)
    record = fresh.metrics["train"]["auto"]
    assert "What auto tried" in page and f"Winner: <b>{record['winner']}</b>" in page
    assert all(f"<td>{name}</td>" in page for name in ("linear", "prototypes", "blend"))
    assert "Fine-tuning: not tried" in page and "loaded it from the feature cache" not in page
    assert "loaded it from the feature cache" in fit_report(again)


def test_a_training_pass_is_timed_on_long_texts_and_on_the_first_other_examples():
    texts = [("x" * length) for length in range(1, 101)]  # lengths 1..100
    chosen = auto_gates.timed_sample(texts, 4, "text")
    assert [len(t) for t in chosen] == [50, 66, 81, 97], "the 50th to the 97th length percentile"
    images = [f"{'x' * i}.png" for i in range(10)]  # paths are strings too
    assert auto_gates.timed_sample(images, 4, "image") == images[:4] and auto_gates.timed_sample([], 4, "text") == []
