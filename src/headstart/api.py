"""The Python API: the same features as the CLI, as functions.

Each function loads what it is given, calls one room of the package and publishes the result; the logic
lives in those rooms (:mod:`headstart.fitting`, :mod:`headstart.transferability`, :mod:`headstart.studies`).
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from headstart.backbones import Backbone, FeatureCache, with_image_size
from headstart.data import Dataset, DataSplits, load_dataset, load_inputs, modality_spec
from headstart.errors import ConfigError, DataError
from headstart.evaluation import evaluate_dataset
from headstart.fitting import complete_splits, fit_splits
from headstart.io import check_output, is_main_process, publish, work_dir, write_json
from headstart.model import TransferModel
from headstart.reports import write_compare_report, write_fit_report, write_rank_report
from headstart.strategies import get_strategy
from headstart.studies import CompareResult, compare_strategies
from headstart.training import FitContext
from headstart.training.checkpoint import CHECKPOINT_DIR
from headstart.transferability import RankResult, bundled_backbones, rank_backbones


def fit(data: str | Path | DataSplits | Dataset, *, backbone: str | Backbone | None = None, strategy: str = "linear",
        out: str | Path | None = None, force: bool = False, seed: int = 0, val_fraction: float = 0.15,
        test_fraction: float = 0.2, cache: bool | str | Path | FeatureCache = True, progress: bool = True,
        max_time: float | None = None, calibrate: bool = False, image_size: int | None = None,
        skip_bad_images: bool = False, text_column: str | None = None, label_column: str | None = None,
        path_column: str | None = None, allow_outside_paths: bool = False,
        settings: dict[str, Any] | None = None) -> TransferModel:
    """Train a model on labeled data by transferring a pre-trained backbone.

    Data without a ``test`` split gets a stratified held-out test set (``test_fraction``); strategies that
    select models on validation data get a validation split (``val_fraction``) when there is none.
    Very unequal class sizes give a warning in ``metrics["warnings"]`` (and the report).

    Args:
        data: An image folder (class subfolders, optionally inside ``train/ val/ test/``), a CSV of
            ``path,label``, a CSV/JSONL/Parquet of text and label, or already-loaded data.
        backbone: A backbone reference (``headstart backbones`` lists them) or a built backbone (e.g. with
            custom preprocessing); default: the modality's (``efficientnet_lite0`` for images, ``minilm``
            for text).
            ``"auto"`` ranks the bundled backbones of the data's modality by LogME on the training split and
            uses the best (the ranking is kept in ``metrics["backbone_ranking"]``).
        strategy: How to transfer: ``linear`` (frozen features + logistic regression), ...
        out: Folder to write the model, metrics and report to (written atomically; an existing folder is
            replaced only with ``force``). ``None`` keeps the model in memory only.
        force: Replace an existing ``out``.
        seed: Random seed for splits and training.
        val_fraction: Share of the training data held out for validation when a strategy needs it.
        test_fraction: Share held out for the final test when the data has no test split.
        cache: ``True`` for the default feature cache, a folder or a :class:`FeatureCache` for another one,
            ``False`` for none.
        progress: Show progress bars.
        max_time: Training budget in seconds.
        calibrate: Fit a softmax temperature on the validation split (carved from the training data when
            there is none) so confidences match accuracy; ECE before and after is in
            ``metrics["calibration"]``.
        image_size: Input size of an image backbone in pixels, instead of its own (e.g. 128 for small source
            images: fine-tuning steps cost about a third of 224 px ones). Saved with the model.
        skip_bad_images: Skip unreadable images (listed in the metrics) instead of failing.
        text_column, label_column, path_column: Column names in tabular data, when not detected.
        allow_outside_paths: Let a table name image files outside its own folder (``../x.png``, absolute paths
            elsewhere); refused by default so that a table from elsewhere cannot point at any file.
        settings: The strategy's settings, e.g. ``{"epochs": 3}`` (``headstart strategies`` lists them); kept
            apart from these arguments, so ``seed`` or ``max_time`` given here is an error.

    Returns:
        The trained model; its ``metrics`` hold test (and validation) results.

    Example:
        >>> model = fit("examples/fashion-mnist-mini", out="runs/demo", settings={"c": 1.0})
        >>> model.metrics["test"]["accuracy"]
    """
    started = time.perf_counter()
    chosen = get_strategy(strategy, **_strategy_settings(settings, fit))
    out = check_output(out, force=force) if out is not None else None
    splits = _as_splits(data, skip_bad_images=skip_bad_images, text_column=text_column,
                        label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    backbone = backbone or modality_spec(splits.train.modality).default_backbone
    splits = complete_splits(splits, needs_val=chosen.uses_validation or calibrate, seed=seed,
                             val_fraction=val_fraction, test_fraction=test_fraction)
    feature_cache = _feature_cache(cache)
    ranking = None
    if backbone == "auto":
        ranking = _auto_backbone(splits.train, feature_cache, progress, image_size)
        backbone = ranking.best
    net = with_image_size(backbone, image_size)
    workdir = work_dir(out) if out is not None else Path(tempfile.mkdtemp(prefix="headstart-"))
    context = FitContext(work_dir=workdir, seed=seed, cache=feature_cache, progress=progress, max_time=max_time)
    model = fit_splits(splits, net, chosen, context, calibrate=calibrate)
    if ranking is not None:
        model.metrics["backbone_ranking"] = ranking.to_dict()
    model.metrics["seconds"] = round(time.perf_counter() - started, 2)
    if out is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif is_main_process():  # under torchrun the other ranks leave the shared folder to rank 0
        model.save(workdir)
        write_fit_report(workdir, model, splits)
        shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
        publish(workdir, out, force=force)
    return model


def load(folder: str | Path) -> TransferModel:
    """Load a model saved by :func:`fit` (or :meth:`TransferModel.save`)."""
    return TransferModel.load(folder)


def evaluate(model: TransferModel | str | Path, data: str | Path | Dataset, *, split: str | None = None,
             batch_size: int = 64, progress: bool = False, allow_outside_paths: bool = False,
             **columns: str | None) -> dict[str, Any]:
    """Metrics of a model on labeled data.

    Args:
        model: A model or its folder.
        data: A labeled data set in any format :func:`fit` accepts.
        split: ``train``, ``val``, ``test`` or ``all``; default: the test split if the data has one, else all.
        allow_outside_paths: As for :func:`fit`.
        **columns: ``text_column``, ``label_column``, ``path_column`` for tabular data.
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    dataset = data if isinstance(data, Dataset) else _pick_split(
        load_dataset(data, training=False, allow_outside_paths=allow_outside_paths, **columns), split)
    return evaluate_dataset(model, dataset, batch_size=batch_size, progress=progress)


def predict(model: TransferModel | str | Path, inputs: Sequence[Any], *, top_k: int = 1, batch_size: int = 64,
            progress: bool = False) -> list[dict[str, Any]]:
    """Predictions for raw inputs: image paths or folders, or texts (or a ``.txt``/CSV of texts).

    Returns:
        One dict per example: ``input``, ``label``, ``confidence`` and, for ``top_k > 1``, ``top`` — a list of
        ``(label, probability)`` pairs.
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    items, names = load_inputs([str(i) for i in inputs], model.modality)
    proba = model.predict_proba(items, batch_size=batch_size, progress=progress)
    k = max(1, min(top_k, len(model.class_names)))
    rows = []
    for name, p in zip(names, proba, strict=True):
        order = p.argsort()[::-1][:k]
        row = {"input": name, "label": model.class_names[order[0]], "confidence": float(p[order[0]])}
        if k > 1:
            row["top"] = [(model.class_names[i], float(p[i])) for i in order]
        rows.append(row)
    return rows


def rank(data: str | Path | DataSplits | Dataset, *, backbones: Sequence[str | Backbone],
         scores: Sequence[str] | None = None, sort_by: str = "logme", cache: bool | str | Path | FeatureCache = True,
         out: str | Path | None = None, force: bool = False, progress: bool = False, image_size: int | None = None,
         skip_bad_images: bool = False, text_column: str | None = None, label_column: str | None = None,
         path_column: str | None = None, allow_outside_paths: bool = False) -> RankResult:
    """Rank backbones for a data set by transferability scores of their frozen features (training split).

    Args:
        data: Labeled data in any format :func:`fit` accepts.
        backbones: Backbone references (or built backbones) of the data's modality.
        scores: Scores to compute (see :data:`headstart.transferability.scores.SCORES`); default every applicable one.
        sort_by: The score that orders the ranking (``logme`` by default).
        cache: As for :func:`fit`; the features are reused by a later ``fit`` on the same data.
        out: Folder for ``rank.json`` and ``report.html`` (written atomically; replaced only with ``force``).
        force: Replace an existing ``out``.
        progress: Show progress bars.
        image_size, skip_bad_images, text_column, label_column, path_column, allow_outside_paths: As for
            :func:`fit`.

    Returns:
        A :class:`~headstart.transferability.ranking.RankResult`, best backbone first.

    Example:
        >>> result = rank("examples/wordnet-supersenses", backbones=["minilm", "glove"])
        >>> result.best
    """
    out = check_output(out, force=force) if out is not None else None
    splits = _as_splits(data, skip_bad_images=skip_bad_images, text_column=text_column,
                        label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    if image_size is not None:
        backbones = [with_image_size(b, image_size) for b in backbones]
    result = rank_backbones(splits.train, backbones, scores=scores, sort_by=sort_by, cache=_feature_cache(cache),
                            progress=progress)
    if out is not None:
        _publish_study(out, "rank.json", result, write_rank_report, force=force)
    return result


DEFAULT_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)


def compare(data: str | Path | DataSplits | Dataset, *, strategies: Sequence[str] = ("linear", "finetune", "scratch"),
            fractions: Sequence[float] | None = None, shots: Sequence[int] | None = None, seeds: int = 3,
            backbone: str | Backbone | None = None, max_time: float | None = None,
            cache: bool | str | Path | FeatureCache = True, out: str | Path | None = None, force: bool = False,
            settings: dict[str, Any] | None = None, test_fraction: float = 0.2, val_fraction: float = 0.15,
            on_run: Callable[[Any], None] | None = None, image_size: int | None = None, skip_bad_images: bool = False,
            text_column: str | None = None, label_column: str | None = None, path_column: str | None = None,
            allow_outside_paths: bool = False) -> CompareResult:
    """Learning curves: every strategy on growing stratified subsets of the training data, several seeds,
    each measured on one fixed test set; with the transfer-vs-scratch verdict and data savings.

    Args:
        data: Labeled data in any format :func:`fit` accepts.
        strategies: Strategies to compare; include ``scratch`` for verdicts, gains and savings.
        fractions: Subset sizes as fractions of the training split (default 0.05, 0.1, 0.25, 0.5, 1).
        shots: Subset sizes as examples per class, instead of ``fractions``.
        seeds: Seeds per size and strategy.
        backbone: As for :func:`fit` (default by modality).
        max_time: Budget for the whole study in seconds; runs that would exceed it are skipped (listed).
        cache: As for :func:`fit`.
        out: Folder for ``compare.json`` and ``report.html`` (written atomically; replaced only with ``force``).
        force: Replace an existing ``out``.
        settings: Strategy settings: ``{"finetune.epochs": 2}`` for one strategy, ``{"epochs": 2}`` for every
            strategy that has the setting.
        test_fraction: Fixed hold-out share when the data has no test split.
        val_fraction: Validation share of each subset, for strategies that use validation.
        on_run: Called with each :class:`~headstart.studies.statistics.RunRecord` or skipped run as it happens.
        image_size, skip_bad_images, text_column, label_column, path_column, allow_outside_paths: As for
            :func:`fit`.

    Returns:
        A :class:`~headstart.studies.runner.CompareResult`.

    Example:
        >>> result = compare("examples/fashion-mnist-mini", strategies=["linear", "finetune", "scratch"],
        ...                  fractions=[0.1, 1.0], seeds=2, max_time=600)
        >>> print(result.verdicts[0].message)
    """
    out = check_output(out, force=force) if out is not None else None
    splits = _as_splits(data, skip_bad_images=skip_bad_images, text_column=text_column,
                        label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    if fractions is None and shots is None:
        fractions = DEFAULT_FRACTIONS
    net = with_image_size(backbone or modality_spec(splits.train.modality).default_backbone, image_size)
    result = compare_strategies(splits, strategies=strategies, backbone=net, fractions=fractions, shots=shots,
                                seeds=seeds, max_time=max_time, cache=_feature_cache(cache), settings=settings,
                                test_fraction=test_fraction, val_fraction=val_fraction, on_run=on_run)
    if out is not None:
        _publish_study(out, "compare.json", result, write_compare_report, force=force)
    return result


def _feature_cache(cache: bool | str | Path | FeatureCache) -> FeatureCache | None:
    if isinstance(cache, FeatureCache):
        return cache
    return None if cache is False else FeatureCache(None if cache is True else cache)


def _auto_backbone(train: Dataset, cache: FeatureCache | None, progress: bool, image_size: int | None
                   ) -> RankResult:
    """Rank the bundled backbones of ``train``'s modality by LogME (what ``backbone="auto"`` uses)."""
    candidates: list[str | Backbone] = list(bundled_backbones(train.modality))
    if image_size is not None:
        candidates = [with_image_size(ref, image_size) for ref in candidates]
    return rank_backbones(train, candidates, scores=["logme"], sort_by="logme",
                          cache=cache, progress=progress)


def _publish_study(out: str | Path, json_name: str, result: Any, write_report: Callable[[Path, Any], Any], *,
                   force: bool) -> None:
    """Write a study's JSON and HTML report into ``out`` atomically (see :mod:`headstart.io`)."""
    workdir = work_dir(out)
    write_json(workdir / json_name, result.to_dict())
    write_report(workdir, result)
    publish(workdir, out, force=force)


def _as_splits(data: Any, **kwargs: Any) -> DataSplits:
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, Dataset):
        return DataSplits(train=data, val=None, test=None, source=data.source)
    skip = kwargs.pop("skip_bad_images")
    return load_dataset(data, skip_bad=skip, **kwargs)


def _pick_split(splits: DataSplits, split: str | None) -> Dataset:
    available = {n: getattr(splits, n) for n in ("train", "val", "test") if getattr(splits, n) is not None}
    split = split or ("test" if "test" in available else "all")
    if split in available:
        return available[split]
    if split != "all":
        raise DataError(f"{splits.source} has no {split!r} split; choose --split from: "
                        f"{', '.join([*available, 'all'])}")
    parts = list(available.values())
    return Dataset([item for part in parts for item in part.items],
                   [label for part in parts for label in part.labels], parts[0].class_names, parts[0].modality,
                   splits.source)


def _strategy_settings(settings: dict[str, Any] | None, function: Callable[..., Any]) -> dict[str, Any]:
    """``settings`` checked not to name an argument of ``function`` (one namespace each)."""
    settings = dict(settings or {})
    taken = sorted(set(settings) & set(inspect.signature(function).parameters))
    if taken:
        raise ConfigError(f"{', '.join(taken)} {'is an argument' if len(taken) == 1 else 'are arguments'} of "
                          f"{function.__name__}, not strategy settings: pass {taken[0]}=... to "
                          f"{function.__name__} (CLI: --{taken[0].replace('_', '-')}), not in settings (--set)")
    return settings
