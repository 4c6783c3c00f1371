"""What to hold out of small data, and how a model is measured when holding out would leave too little.

A held-out split of a few examples is mostly noise: 4 test examples measure accuracy to within about ±25
points, and 2 validation examples per class choose epochs at random. So when a split carved from the
training data would hold fewer than :data:`MIN_HELD_OUT_PER_CLASS` examples of a typical class, nothing is held
out for it and the user is told before training:

* test: a strategy that keeps the backbone frozen is measured by k-fold cross-validation of the whole fit
  instead (each fold is one more head fit on cached features, so it costs seconds); a strategy that trains
  the backbone would cost k more trainings, so it gets no test estimate and the message says how to get one;
* validation: a strategy that selects epochs on it trains on all the data with its default schedule.

Where a validation split is held out on small data, :func:`refit` trains again on train + validation with the
epochs chosen on it, so the examples set aside for the choice are not lost to the final model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from headstart.backbones import Backbone
from headstart.data import Dataset, DataSplits
from headstart.evaluation import classification_metrics
from headstart.evaluation.evaluate import dataset_logits
from headstart.model import TransferModel
from headstart.strategies import Strategy
from headstart.training import FitContext
from headstart.training.checkpoint import CHECKPOINT_DIR

#: Fewer held-out examples than this for a typical class make a test estimate or an epoch choice mostly noise.
MIN_HELD_OUT_PER_CLASS = 10
#: The shares held out when the caller leaves them to headstart and the data is large enough.
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.2
#: Below this many examples per class (train + validation), ``refit="auto"`` trains again on both.
REFIT_BELOW_PER_CLASS = 100
#: Folds of the cross-validation that replaces a tiny test split (fewer if a class has fewer examples).
FOLDS = 5


@dataclass(frozen=True)
class HoldOutPlan:
    """The shares to carve from the training data, and whether to measure by cross-validation instead.

    Attributes:
        val_fraction: Validation share to carve (0: none).
        test_fraction: Test share to carve (0: none).
        cross_validate: Measure the model by k-fold cross-validation on the training data.
        notes: What was decided and why, for the user (said before training, kept in the metrics).
    """

    val_fraction: float
    test_fraction: float
    cross_validate: bool = False
    notes: tuple[str, ...] = ()


def held_out_per_class(train: Dataset, fraction: float) -> float:
    """How many examples of the median class a stratified split of ``fraction`` would hold out (at least one,
    as :func:`~headstart.data.stratified_split` keeps one of every class)."""
    counts = train.class_counts()
    counts = counts[counts > 0]
    return float(np.median(np.maximum(np.round(counts * fraction), 1))) if len(counts) else 0.0


def plan_held_out(splits: DataSplits, strategy: Strategy, *, val_fraction: float | None = None,
                  test_fraction: float | None = None, calibrate: bool = False) -> HoldOutPlan:
    """What :func:`~headstart.fitting.complete_splits` should carve from ``splits.train``, given its size.

    Args:
        splits: The data as loaded (a split it already has is kept whatever its size).
        strategy: The strategy to fit (whether it selects on validation, trains the backbone).
        val_fraction, test_fraction: The shares asked for; ``None`` (the default) lets headstart choose:
            :data:`DEFAULT_VAL_FRACTION` / :data:`DEFAULT_TEST_FRACTION`, or nothing when that would hold out
            too few. A share given explicitly is carved however small.
        calibrate: Calibration needs validation data, so a validation split is kept however small.

    Returns:
        The plan; with ``notes`` when a split is not held out.
    """
    train, notes = splits.train, []
    cross_validate = False
    val_chosen, test_chosen = val_fraction is None, test_fraction is None
    val_fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    test_fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    if splits.test is None and test_fraction > 0 and test_chosen:
        per_class = held_out_per_class(train, test_fraction)
        if per_class < MIN_HELD_OUT_PER_CLASS:
            too_few = (f"{len(train)} examples: a {test_fraction:.0%} test split would hold about {per_class:g} per "
                       f"class, too few to measure accuracy")
            test_fraction = 0.0
            if strategy.trains_backbone:
                notes.append(f"{too_few}; nothing is held out and this model has no test estimate (give a test "
                             "split, or compare strategies with `headstart compare`)")
            else:
                cross_validate = True
                notes.append(f"{too_few}; the model trains on all of them and is measured by "
                             f"{_folds(train)}-fold cross-validation instead")
    if splits.val is None and strategy.uses_validation and not calibrate and val_fraction > 0 and val_chosen:
        per_class = held_out_per_class(train, val_fraction * (1 - test_fraction))
        if per_class < MIN_HELD_OUT_PER_CLASS:
            val_fraction = 0.0
            notes.append(f"a validation split would hold about {per_class:g} examples per class, too few to choose "
                         f"epochs on: {strategy.name} trains on all the training data with its default schedule")
    return HoldOutPlan(val_fraction, test_fraction, cross_validate, tuple(notes))


def _folds(train: Dataset) -> int:
    counts = train.class_counts()
    return int(min(FOLDS, counts[counts > 0].min()))


def cross_validated_metrics(train: Dataset, backbone: Backbone, strategy: Strategy, context: FitContext, *,
                            batch_size: int = 64) -> dict[str, Any] | None:
    """Metrics of ``strategy`` fitted k times, each fold predicted by the model that did not see it (pooled
    out-of-fold predictions, the same metrics as a test split).

    Returns:
        The metrics with ``folds`` and ``method``; ``None`` when a class has a single example.
    """
    from sklearn.model_selection import StratifiedKFold

    folds = _folds(train)
    if folds < 2:
        return None
    proba = np.zeros((len(train), len(train.class_names)))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=context.seed)
    for fit_index, held_index in splitter.split(np.zeros(len(train)), train.labels):
        model = strategy.fit(backbone, train.subset(fit_index), None, context)
        held = train.subset(held_index)
        proba[held_index] = model.proba_from_logits(dataset_logits(model, held, batch_size=batch_size,
                                                                   cache=context.cache))
    metrics = classification_metrics(train.labels, proba, train.class_names)
    return metrics | {"folds": folds, "method": f"{folds}-fold cross-validation of the whole fit"}


def refit_settings(model: TransferModel, fields: Iterable[str]) -> dict[str, int] | None:
    """Settings that replay a run's chosen length without validation data: the epochs each stage ran up to the
    best epoch (``head_epochs`` for the head stage, ``epochs`` for the main one), early stopping off.

    Returns:
        The settings; ``None`` when there is no best epoch, or stages that share one setting (gradual
        unfreezing) make the length impossible to replay.
    """
    train = model.metrics.get("train", {})
    best = train.get("best_epoch")
    if best is None:
        return None
    counts = Counter(r["stage"] for r in train.get("history", []) if r["epoch"] <= best and not r.get("partial"))
    settings: dict[str, int] = {}
    for stage, epochs in counts.items():
        field = "head_epochs" if stage == "head" else "epochs"
        if stage.startswith("top-") or field in settings:
            return None
        settings[field] = epochs
    return {**{f: 0 for f in ("head_epochs", "epochs") if f in fields}, **settings, "patience": None, "min_steps": 0}


def refit(model: TransferModel, splits: DataSplits, backbone: Backbone, strategy: Strategy, context: FitContext
          ) -> tuple[TransferModel | None, dict[str, Any]]:
    """Train ``strategy`` again on ``splits.train`` + ``splits.val`` for the epochs ``model`` chose on
    ``splits.val``, when its ``refit`` setting asks for it (``"auto"``: below :data:`REFIT_BELOW_PER_CLASS`
    examples per class).

    Returns:
        The refitted model (or ``None``) and what was done and why, for ``metrics["refit"]``.
    """
    mode = getattr(strategy.config, "refit", "never")
    if splits.val is None or mode == "never" or not strategy.uses_validation:
        return None, {"done": False, "why": "no epochs were chosen on validation data" if mode != "never"
                      else "refit='never'"}
    train, val = splits.train, splits.val
    per_class = float(np.median(train.class_counts() + val.class_counts()))
    if mode == "auto" and per_class >= REFIT_BELOW_PER_CLASS:
        return None, {"done": False, "why": f"{per_class:g} examples per class: the validation share costs little"}
    settings = refit_settings(model, type(strategy.config).model_fields)
    if settings is None:
        return None, {"done": False, "why": "the chosen length cannot be replayed (no best epoch, or stages "
                                            "sharing one setting)"}
    both = Dataset([*train.items, *val.items], np.concatenate([train.labels, val.labels]), train.class_names,
                   train.modality, train.source)
    again = type(strategy)(strategy.config, **settings)
    refitted = again.fit(backbone, both, None, replace(context, work_dir=context.work_dir / CHECKPOINT_DIR / "refit"))
    return refitted, {"done": True, "settings": settings, "n_train": len(both),
                      "why": f"{per_class:g} examples per class: trained again on train + validation with the "
                             f"epochs chosen on validation"}
