"""The core of every training run: fit a strategy on already-split data, then measure the model.

``headstart.fit``, ``compare`` (each of its runs) and any other caller that trains go through
:func:`fit_splits`, so a model's metrics mean the same thing wherever it was trained.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.backbones import Backbone
from headstart.data import Dataset, DataSplits, stratified_split
from headstart.data.balance import imbalance_warning
from headstart.data.splits import check_selectable
from headstart.errors import ConfigError
from headstart.evaluation import calibrate_model, evaluate_dataset
from headstart.evaluation.forgetting import measure_forgetting
from headstart.held_out import HoldOutPlan, cross_validated_metrics, refit
from headstart.model import TransferModel
from headstart.strategies import Strategy
from headstart.strategies.base import require_target
from headstart.training import FitContext


def check_modality(backbone: Backbone, splits: DataSplits, strategies: Sequence[Strategy] = ()) -> None:
    """Refuse a backbone made for another kind of data than ``splits`` holds, or one whose weights cannot
    train under a strategy that trains them.

    Raises:
        ConfigError: Names both modalities and where to find a fitting backbone; or the strategy and the
            strategies that keep the backbone frozen; or why a strategy cannot use the backbone (e.g. adabn
            on one without BatchNorm).
    """
    if backbone.modality != splits.train.modality:
        raise ConfigError(f"backbone {backbone.ref!r} is for {backbone.modality} data but {splits.source} holds "
                          f"{splits.train.modality} data; choose a {splits.train.modality} backbone "
                          "(see `headstart backbones`)")
    for strategy in strategies:
        reason = strategy.unsupported(backbone)
        if reason is not None:
            raise ConfigError(reason)
    training = [s.name for s in strategies if s.trains_backbone]
    if training and not backbone.trainable:
        raise ConfigError(f"backbone {backbone.ref!r} has no trainable weights (it runs in ONNX Runtime only), so "
                          f"strategy {', '.join(training)} cannot train it; use the linear strategy, or a backbone "
                          f"that can be fine-tuned (see `headstart backbones`)")


def complete_splits(splits: DataSplits, strategy: Strategy, *, seed: int, val_fraction: float,
                    test_fraction: float, calibrate: bool = False) -> DataSplits:
    """``splits`` with a stratified test split carved from train when it has none (``test_fraction``), and a
    validation split when ``strategy`` selects on one (or ``calibrate``) and it has none (``val_fraction`` of
    what is left).

    Raises:
        DataError: A validation split is needed but a class has a single training example.
    """
    needs_val = strategy.uses_validation or calibrate
    why = (f"strategy {strategy.name!r} selects on validation data" if strategy.uses_validation
           else "calibration fits on validation data")
    train, val, test = splits.train, splits.val, splits.test
    carved = dict(splits.carved)
    if test is None and test_fraction > 0:
        parts = stratified_split(train, val_fraction=0.0, test_fraction=test_fraction, seed=seed)
        train, test = parts.train, parts.test
        carved |= {"test": test_fraction, "seed": seed}
    if val is None and needs_val and val_fraction > 0:
        check_selectable(train, why)
        parts = stratified_split(train, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
        train, val = parts.train, parts.val
        carved |= {"val": val_fraction, "seed": seed}
    return DataSplits(train=train, val=val, test=test, source=splits.source, skipped=list(splits.skipped),
                      carved=carved)


def describe(splits: DataSplits, backbone: Backbone) -> dict[str, Any]:
    """The data summary stored in ``metrics["data"]``: source, modality, classes, split sizes, skipped files
    and what the backbone says of the inputs (e.g. audio clips longer than its limit)."""
    info: dict[str, Any] = {"source": splits.source, "modality": splits.train.modality,
                            "classes": splits.train.class_names}
    if os.path.exists(splits.source):  # where a later run finds the data again (a ckpt: source's test split)
        info["path"] = str(Path(splits.source).resolve())
    if splits.carved:
        info["carved"] = dict(splits.carved)
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        if part is not None:
            info[f"n_{name}"] = len(part)
    if splits.skipped:
        info["skipped"] = [str(s) for s in splits.skipped]
    info.update(backbone.describe_inputs([item for part in splits.present().values() for item in part.items]))
    return info


def data_fingerprint(splits: DataSplits) -> str:
    """A hash of the data as split: each split's content (file bytes or texts), labels and class names.

    The same files with the same labels and splits give the same fingerprint on any machine; it names the data
    in tracked runs and tuning studies.
    """
    digest = hashlib.sha256(repr(splits.train.class_names).encode())
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        if part is not None:
            digest.update(f"{name}:{part.content_hash()}:".encode() + part.labels.tobytes())
    return digest.hexdigest()[:32]


def fit_splits(splits: DataSplits, backbone: Backbone, strategy: Strategy, context: FitContext, *,
               calibrate: bool = False, target_test: Dataset | None = None,
               source_data: DataSplits | None = None, held_out: HoldOutPlan | None = None,
               train_again: bool = False) -> TransferModel:
    """Train ``strategy`` on ``splits.train`` (selecting on ``splits.val``) and measure it.

    Args:
        splits: Already split data; ``val`` is used for model selection and calibration, ``test`` only to
            measure the finished model.
        backbone: Where the knowledge comes from; it is not modified.
        strategy: How it is transferred.
        context: Working folder, seed, feature cache, progress and budget of the run.
        calibrate: Fit a softmax temperature on ``splits.val`` (ECE before and after in the metrics).
        target_test: Labeled examples of the target domain (``context.target`` holds its unlabeled ones), measured
            like ``test`` into ``metrics["target"]["test"]``.
        source_data: Labeled data of the backbone's source task, for its accuracy before and after transfer.
        train_again: Train again on train + validation with the epochs chosen on validation, as the strategy's
            ``refit`` setting says (:func:`~headstart.held_out.refit`; not with ``calibrate``; no val metrics then).
        held_out: How ``splits`` were carved (:func:`~headstart.held_out.plan_held_out`): notes into the metrics,
            and k-fold cross-validation on ``splits.train`` when too small for a test split.

    Returns:
        The model; its ``metrics`` hold the data summary, warnings, training history, calibration, the
        validation and test metrics, and the target domain's.

    Raises:
        ConfigError: A backbone of another modality, or ``calibrate`` without validation data.
    """
    check_modality(backbone, splits, [strategy])
    if strategy.needs_target:
        require_target(strategy, context)
    if calibrate and splits.val is None:
        raise ConfigError("calibration needs validation data: give a val split or a val_fraction above 0")
    model = strategy.fit(backbone, splits.train, splits.val, context)
    refitted, refit_record = (refit(model, splits, backbone, strategy, context) if train_again and not calibrate
                              else (None, {"done": False, "why": "not asked for, or calibrating (needs val unseen)"}))
    model = refitted or model
    metrics: dict[str, Any] = {"data": describe(splits, backbone), "backbone": backbone.ref, "strategy": strategy.name,
                               **model.metrics}
    warning = imbalance_warning(splits.train.class_counts(), splits.train.class_names)
    if warning:
        metrics["warnings"] = [warning]
    batch_size = strategy.config.batch_size
    if calibrate:
        metrics["calibration"] = calibrate_model(model, splits.val, splits.test, cache=context.cache,
                                                 batch_size=batch_size, progress=context.progress)
    # A trained backbone's test features serve both the test metrics and the forgetting measure on the test split.
    test_features = None if splits.test is None or not model.backbone_trained else model.backbone.embed(
        splits.test.items, batch_size=batch_size, progress=context.progress, label="test")
    metrics["refit"] = refit_record
    for name, part in (("val", splits.val), ("test", splits.test)):
        if part is not None and not (name == "val" and refitted):  # a refitted model has trained on val
            metrics[name] = evaluate_dataset(model, part, batch_size=batch_size, progress=context.progress,
                                             cache=context.cache, label=name,
                                             features=test_features if name == "test" else None)
    metrics |= _small_data_metrics(held_out, splits, backbone, strategy, context, batch_size)
    metrics["forgetting"] = _forgetting(model, backbone, strategy, splits, context, source_data, test_features)
    metrics |= _target_metrics(model, context.target, target_test, batch_size, context)
    model.metrics = metrics
    return model


def _target_metrics(model: TransferModel, unlabeled: Dataset | None, test: Dataset | None, batch_size: int,
                    context: FitContext) -> dict[str, Any]:
    """``{"target": ...}``: the target domain's sizes and, with labeled target data, the model's metrics on it;
    empty without a target domain."""
    if unlabeled is None and test is None:
        return {}
    target: dict[str, Any] = {"n_unlabeled": len(unlabeled) if unlabeled is not None else 0}
    if unlabeled is not None:
        target["source"] = unlabeled.source
    if test is not None:
        target["test"] = evaluate_dataset(model, test, batch_size=batch_size, progress=context.progress,
                                          cache=context.cache, label="target test")
        target["test"]["source"] = test.source
    return {"target": target}


def _small_data_metrics(held_out: HoldOutPlan | None, splits: DataSplits, backbone: Backbone, strategy: Strategy,
                        context: FitContext, batch_size: int) -> dict[str, Any]:
    """What the hold-out plan said (``held_out``) and, when it replaced a tiny test split, the cross-validated
    metrics (``cross_validation``)."""
    metrics: dict[str, Any] = {}
    if held_out is not None and held_out.notes:
        metrics["held_out"] = list(held_out.notes)
    if held_out is not None and held_out.cross_validate:
        metrics["cross_validation"] = cross_validated_metrics(splits.train, backbone, strategy, context,
                                                              batch_size=batch_size)
    return metrics


def _forgetting(model: TransferModel, source: Backbone, strategy: Strategy, splits: DataSplits, context: FitContext,
                source_data: DataSplits | None, test_features: np.ndarray | None) -> dict[str, Any]:
    """What the transferred backbone kept of ``source`` (the caller's backbone, which strategies never modify),
    on the bundled reference set, the test split (whose ``test_features`` the model has already computed) and
    the source task (``source_data`` or a ``ckpt:`` one); only a note when ``strategy`` leaves the measure out
    (unless ``source_data`` asks for it)."""
    skipped = strategy.forgetting_skipped() if source_data is None else None
    if skipped:
        return {"backbone_changed": model.backbone_trained, "notes": [skipped]}
    target = splits.test.items if splits.test is not None else None
    return measure_forgetting(model, target=target, target_features=test_features, source=source,
                              source_data=source_data, cache=context.cache, batch_size=strategy.config.batch_size,
                              progress=context.progress)
