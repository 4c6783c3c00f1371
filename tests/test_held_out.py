"""Small data: nothing tiny is held out, the user is told before training, and a frozen-feature strategy is
measured by cross-validation instead of on a handful of test examples."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import headstart
from headstart.data import DataSplits
from headstart.errors import HeadstartWarning
from headstart.held_out import MIN_HELD_OUT_PER_CLASS, cross_validated_metrics, plan_held_out, refit_settings
from headstart.strategies import get_strategy
from headstart.training import FitContext
from training_support import TinyTextBackbone, sentiment_texts


def _splits(n: int) -> DataSplits:
    data = sentiment_texts(n)
    return DataSplits(train=data, val=None, test=None, source="texts")


def test_a_tiny_test_split_is_replaced_by_cross_validation_for_a_frozen_strategy():
    plan = plan_held_out(_splits(16), get_strategy("linear"), test_fraction=None)
    assert (plan.test_fraction, plan.cross_validate) == (0.0, True)
    assert "16 examples" in plan.notes[0] and "about 2 per class" in plan.notes[0]
    assert "5-fold cross-validation" in plan.notes[0]


def test_enough_data_keeps_the_test_split_and_says_nothing():
    per_class_needed = int(np.ceil(MIN_HELD_OUT_PER_CLASS / 0.2))
    plan = plan_held_out(_splits(2 * per_class_needed), get_strategy("linear"))
    assert (plan.test_fraction, plan.cross_validate, plan.notes) == (0.2, False, ())


def test_a_backbone_training_strategy_gets_no_tiny_test_or_validation_split_and_no_costly_cross_validation():
    plan = plan_held_out(_splits(40), get_strategy("finetune"), test_fraction=None)
    assert (plan.val_fraction, plan.test_fraction, plan.cross_validate) == (0.0, 0.0, False)
    assert "no test estimate" in plan.notes[0] and "too few to choose epochs" in plan.notes[1]
    calibrated = plan_held_out(_splits(40), get_strategy("finetune"), calibrate=True)
    assert calibrated.val_fraction == 0.15  # calibration needs validation data, however small
    asked = plan_held_out(_splits(40), get_strategy("finetune"), val_fraction=0.1, test_fraction=0.1)
    assert (asked.val_fraction, asked.test_fraction, asked.notes) == (0.1, 0.1, ())  # explicit shares are kept


def test_cross_validated_metrics_pool_out_of_fold_predictions(tmp_path):
    data = sentiment_texts(20)
    metrics = cross_validated_metrics(data, TinyTextBackbone(), get_strategy("linear", c=1.0),
                                      FitContext(work_dir=tmp_path, seed=0, cache=None, progress=False))
    assert metrics["folds"] == 5 and metrics["n_examples"] == 20
    assert metrics["accuracy"] >= 0.9  # the marker words separate the classes (measured 1.0)
    one_each = data.subset([0, 1])
    assert cross_validated_metrics(one_each, TinyTextBackbone(), get_strategy("linear"),
                                   FitContext(work_dir=tmp_path, seed=0, cache=None, progress=False)) is None


def test_fit_on_16_rows_warns_before_training_and_measures_by_cross_validation():
    with pytest.warns(HeadstartWarning, match="too few to measure accuracy"):
        model = headstart.fit(sentiment_texts(16), backbone=TinyTextBackbone(), progress=False)
    assert "test" not in model.metrics and model.metrics["data"]["n_train"] == 16
    assert model.metrics["cross_validation"]["n_examples"] == 16
    assert model.metrics["held_out"][0].startswith("16 examples")


def test_refit_settings_replay_the_epochs_each_stage_ran_up_to_the_best_one():
    history = [{"epoch": 1, "stage": "head"}, {"epoch": 2, "stage": "head"}, {"epoch": 3, "stage": "all"},
               {"epoch": 4, "stage": "all"}, {"epoch": 5, "stage": "all"}]
    model = SimpleNamespace(metrics={"train": {"best_epoch": 4, "history": history}})
    assert refit_settings(model, ["head_epochs", "epochs"]) == {"head_epochs": 2, "epochs": 2, "patience": None,
                                                                "min_steps": 0}
    in_head = SimpleNamespace(metrics={"train": {"best_epoch": 1, "history": history}})
    assert refit_settings(in_head, ["head_epochs", "epochs"])["epochs"] == 0
    gradual = [{"epoch": 1, "stage": "top-1"}, {"epoch": 2, "stage": "top-2"}]
    assert refit_settings(SimpleNamespace(metrics={"train": {"best_epoch": 2, "history": gradual}}), ["epochs"]) is None


def test_fit_on_small_data_trains_again_on_train_and_validation_with_the_chosen_epochs():
    settings = {"epochs": 3, "head_epochs": 1, "min_steps": 0, "batch_size": 8}
    model = headstart.fit(sentiment_texts(40), backbone=TinyTextBackbone(), strategy="finetune", progress=False,
                          val_fraction=0.25, test_fraction=0.2, settings=settings)
    record = model.metrics["refit"]
    assert record["done"] and record["n_train"] == 32  # 40 less the 8 test examples
    assert record["settings"]["head_epochs"] + record["settings"]["epochs"] <= 4
    assert "val" not in model.metrics and model.metrics["data"]["n_val"] == 8
    kept = headstart.fit(sentiment_texts(40), backbone=TinyTextBackbone(), strategy="finetune", progress=False,
                         val_fraction=0.25, test_fraction=0.2, settings={**settings, "refit": "never"})
    assert not kept.metrics["refit"]["done"] and "val" in kept.metrics
