"""The Python API: the same features as the CLI, as functions.

Each function loads what it is given, calls one room of the package and publishes the result; the logic
lives in those rooms (:mod:`headstart.fitting`, :mod:`headstart.transferability`, :mod:`headstart.studies`).
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from headstart.backbones import Backbone, FeatureCache, build_backbone
from headstart.data import Dataset, DataSplits, as_splits, load_dataset, load_inputs, modality_spec
from headstart.evaluation import evaluate_dataset
from headstart.evaluation.forgetting import ReferenceSet, measure_forgetting
from headstart.fitting import complete_splits, fit_splits
from headstart.io import check_output, is_main_process, publish, work_dir, write_json
from headstart.model import TransferModel
from headstart.onnx_export import OnnxModel, load_predictor
from headstart.reports import write_compare_report, write_fit_report, write_model_card, write_rank_report
from headstart.strategies import check_settings, get_strategy
from headstart.studies import CompareResult, compare_strategies
from headstart.training import FitContext
from headstart.training.checkpoint import CHECKPOINT_DIR
from headstart.transferability import RankResult, bundled_backbones, rank_backbones


def fit(data: str | Path | DataSplits | Dataset, *, backbone: str | Backbone | None = None, strategy: str = "linear",
        out: str | Path | None = None, force: bool = False, seed: int = 0, val_fraction: float = 0.15,
        test_fraction: float = 0.2, cache: bool | str | Path | FeatureCache = True, progress: bool = True,
        max_time: float | None = None, calibrate: bool = False, image_size: int | None = None,
        preprocess: dict[str, Any] | None = None, skip_bad_files: bool = False, text_column: str | None = None,
        label_column: str | None = None, path_column: str | None = None, settings: dict[str, Any] | None = None,
        allow_outside_paths: bool = False, skip_bad_images: bool | None = None) -> TransferModel:
    """Train a model on labeled data by transferring a pre-trained backbone.

    Args:
        data: An image or audio folder (class subfolders, optionally inside ``train/ val/ test/``), a CSV of
            ``path,label``, a CSV/JSONL/Parquet of text and label, or already-loaded data.
        backbone: A reference (``headstart backbones``) or a built backbone; default: the modality's bundled one;
            ``"auto"``: the bundled one with the best LogME on the training split (``metrics["backbone_ranking"]``).
        strategy: How to transfer: ``linear`` (frozen features + logistic regression), ...
        out, force: Folder to write the model, metrics and report to (atomically; an existing folder is
            replaced only with ``force``); ``None`` keeps the model in memory only.
        seed: Random seed for splits and training.
        val_fraction: Validation share of the training data when a strategy needs one and the data has none.
        test_fraction: Share held out (stratified) for the final test when the data has no test split.
        cache: ``True``: the default feature cache; a folder or a :class:`FeatureCache`: another one; ``False``: none.
        progress, max_time: Show progress bars; the training budget in seconds.
        calibrate: Fit a softmax temperature on the validation split (carved from the training data when there
            is none) so confidences match accuracy; ECE before and after is in ``metrics["calibration"]``.
        image_size, preprocess: An image backbone's input size in pixels (e.g. 128 for small images), and other
            preprocessing settings to change (e.g. ``{"max_seconds": 10}`` for audio); saved with the model.
        skip_bad_files: Skip unusable files (unreadable images; unreadable, empty, silent, too short or too long
            audio; listed in the metrics) instead of failing. ``skip_bad_images`` is its deprecated name.
        text_column, label_column, path_column, allow_outside_paths: How tables are read: column names when
            not detected; whether paths may lead outside the table's folder (see :func:`load_dataset`).
        settings: The strategy's settings, e.g. ``{"epochs": 3}`` (``headstart strategies`` lists them); kept
            apart from these arguments, so ``seed`` or ``max_time`` given here is an error.

    Returns:
        The trained model; its ``metrics`` hold test and validation results and warnings (e.g. imbalance).

    Example:
        >>> model = fit("examples/fashion-mnist-mini", out="runs/demo", settings={"c": 1.0})
        >>> model.metrics["test"]["accuracy"]
    """
    started = time.perf_counter()
    chosen = get_strategy(strategy, **check_settings(settings, inspect.signature(fit).parameters, "fit"))
    out = check_output(out, force=force) if out is not None else None
    splits = as_splits(data, skip_bad=_skip_bad(skip_bad_files, skip_bad_images), text_column=text_column,
                       label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    splits = complete_splits(splits, chosen, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                             calibrate=calibrate)
    feature_cache = FeatureCache.from_option(cache)
    net, ranking = _fit_backbone(backbone, splits.train, feature_cache, progress, image_size, preprocess)
    workdir = work_dir(out) if out is not None else Path(tempfile.mkdtemp(prefix="headstart-"))
    context = FitContext(work_dir=workdir, seed=seed, cache=feature_cache, progress=progress, max_time=max_time)
    model = fit_splits(splits, net, chosen, context, calibrate=calibrate)
    if ranking is not None:
        model.metrics["backbone_ranking"] = ranking.to_dict()
    model.metrics["seconds"] = round(time.perf_counter() - started, 2)
    _publish_fit(model, splits, workdir, out, force=force)
    return model


def _fit_backbone(backbone: str | Backbone | None, train: Dataset, cache: FeatureCache | None, progress: bool,
                  image_size: int | None, preprocess: dict[str, Any] | None) -> tuple[Backbone, RankResult | None]:
    """The backbone :func:`fit` starts from (the modality's default, or the best bundled one for ``"auto"``)
    built with ``image_size`` and ``preprocess``, and the ranking that chose it (``"auto"`` only)."""
    backbone = backbone or modality_spec(train.modality).default_backbone
    ranking = None
    if backbone == "auto":
        candidates = [build_backbone(ref, image_size=image_size, preprocess=preprocess)
                      for ref in bundled_backbones(train.modality)]
        ranking = rank_backbones(train, candidates, scores=["logme"], sort_by="logme", cache=cache, progress=progress)
        return candidates[[c.ref for c in candidates].index(ranking.best)], ranking
    return build_backbone(backbone, image_size=image_size, preprocess=preprocess), ranking


def _skip_bad(skip_bad_files: bool, skip_bad_images: bool | None) -> bool:
    if skip_bad_images is not None:
        warnings.warn("skip_bad_images is deprecated; use skip_bad_files", DeprecationWarning, stacklevel=3)
    return skip_bad_files or bool(skip_bad_images)


def _publish_fit(model: TransferModel, splits: DataSplits, workdir: Path, out: Path | None, *, force: bool) -> None:
    """Save the model and its report into ``out`` atomically, or drop the working folder without ``out``."""
    if out is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif is_main_process():  # under torchrun the other ranks leave the shared folder to rank 0
        model.save(workdir)
        write_fit_report(workdir, model, splits)
        write_model_card(workdir, model)
        shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
        publish(workdir, out, force=force)


def load(folder: str | Path) -> TransferModel:
    """Load a model saved by :func:`fit` (or :meth:`TransferModel.save`)."""
    return TransferModel.load(folder)


def evaluate(model: TransferModel | str | Path, data: str | Path | Dataset, *, split: str | None = None,
             batch_size: int = 64, progress: bool = False, forgetting: bool = False, **columns: str | None
             ) -> dict[str, Any]:
    """Metrics of a model on labeled data.

    Args:
        model: A model or its folder.
        data: A labeled data set in any format :func:`fit` accepts.
        split: ``train``, ``val``, ``test`` or ``all``; default: the test split if the data has one, else all.
        forgetting: Also measure what the model's backbone kept of its source on the bundled reference set
            and these examples (``metrics["forgetting"]``, see :func:`forgetting`).
        **columns: ``text_column``, ``label_column``, ``path_column`` for tabular data.
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    dataset = data if isinstance(data, Dataset) else load_dataset(data, training=False, **columns).select(split)
    metrics = evaluate_dataset(model, dataset, batch_size=batch_size, progress=progress)
    if forgetting:
        metrics["forgetting"] = measure_forgetting(model, target=dataset.items, batch_size=batch_size,
                                                   progress=progress)
    return metrics


def forgetting(model: TransferModel | str | Path, *, reference: str | Path | Sequence[Any] | None = None,
               data: str | Path | Sequence[Any] | None = None, batch_size: int = 64, progress: bool = False
               ) -> dict[str, Any]:
    """What a model's backbone kept of its source (see :mod:`headstart.evaluation.forgetting`).

    Args:
        model: A model or its folder.
        reference: Source-domain inputs (files, folders, a .txt of texts) instead of the bundled reference set.
        data: Target inputs to measure on as well (as :func:`predict` takes them).
        batch_size, progress: As for :func:`evaluate`.

    Example:
        >>> headstart.forgetting("runs/finetuned")["reference"]["feature_cka"]
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    chosen = None
    if reference is not None:
        items, _ = load_inputs([str(r) for r in _as_list(reference)], model.modality)
        chosen = ReferenceSet(f"{len(items)} reference inputs", items)
    target = load_inputs([str(d) for d in _as_list(data)], model.modality)[0] if data is not None else None
    return measure_forgetting(model, target=target, reference=chosen, batch_size=batch_size, progress=progress)


def predict(model: TransferModel | OnnxModel | str | Path, inputs: Sequence[Any] | Any, *, top_k: int = 1,
            batch_size: int = 64, progress: bool = False, engine: str = "torch") -> list[dict[str, Any]]:
    """Predictions for raw inputs: image paths or folders, PIL images or ``uint8`` arrays (a numpy array is
    a batch along its first axis), or texts (or a ``.txt``/CSV of texts).

    Args:
        model: A model, its folder, or an ``.onnx`` file written by :func:`export`.
        inputs: What to predict on.
        top_k: How many classes to return per input.
        batch_size: Examples per forward pass.
        progress: Show a progress bar.
        engine: ``"torch"`` (the saved model) or ``"onnx"`` (the folder's exported graph,
            ``<folder>/onnx/model.onnx``).

    Returns:
        One dict per example: ``input``, ``label``, ``confidence`` and, for ``top_k > 1``, ``top`` — a list of
        ``(label, probability)`` pairs.
    """
    model = load_predictor(model, engine)
    items, names = load_inputs(inputs, model.modality)
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
         preprocess: dict[str, Any] | None = None, skip_bad_files: bool = False, skip_bad_images: bool | None = None,
         text_column: str | None = None, label_column: str | None = None,
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
        image_size, preprocess, skip_bad_files, skip_bad_images, text_column, label_column, path_column,
            allow_outside_paths: As for
            :func:`fit`.

    Returns:
        A :class:`~headstart.transferability.ranking.RankResult`, best backbone first.

    Example:
        >>> result = rank("examples/wordnet-supersenses", backbones=["minilm", "glove"])
        >>> result.best
    """
    out = check_output(out, force=force) if out is not None else None
    splits = as_splits(data, skip_bad=_skip_bad(skip_bad_files, skip_bad_images), text_column=text_column,
                        label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    if image_size is not None or preprocess:
        backbones = [build_backbone(b, image_size=image_size, preprocess=preprocess) for b in backbones]
    result = rank_backbones(splits.train, backbones, scores=scores, sort_by=sort_by,
                            cache=FeatureCache.from_option(cache), progress=progress)
    if out is not None:
        _publish_study(out, "rank.json", result, write_rank_report, force=force)
    return result


DEFAULT_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)


def compare(data: str | Path | DataSplits | Dataset, *, strategies: Sequence[str] = ("linear", "finetune", "scratch"),
            fractions: Sequence[float] | None = None, shots: Sequence[int] | None = None, seeds: int = 3,
            backbone: str | Backbone | None = None, max_time: float | None = None,
            cache: bool | str | Path | FeatureCache = True, out: str | Path | None = None, force: bool = False,
            settings: dict[str, Any] | None = None, test_fraction: float = 0.2, val_fraction: float = 0.15,
            on_run: Callable[[Any], None] | None = None, image_size: int | None = None,
            preprocess: dict[str, Any] | None = None, skip_bad_files: bool = False, skip_bad_images: bool | None = None,
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
        image_size, preprocess, skip_bad_files, skip_bad_images, text_column, label_column, path_column,
            allow_outside_paths: As for
            :func:`fit`.

    Returns:
        A :class:`~headstart.studies.runner.CompareResult`.

    Example:
        >>> result = compare("examples/fashion-mnist-mini", strategies=["linear", "finetune", "scratch"],
        ...                  fractions=[0.1, 1.0], seeds=2, max_time=600)
        >>> print(result.verdicts[0].message)
    """
    out = check_output(out, force=force) if out is not None else None
    splits = as_splits(data, skip_bad=_skip_bad(skip_bad_files, skip_bad_images), text_column=text_column,
                        label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    if fractions is None and shots is None:
        fractions = DEFAULT_FRACTIONS
    net = build_backbone(backbone or modality_spec(splits.train.modality).default_backbone, image_size=image_size,
                         preprocess=preprocess)
    result = compare_strategies(splits, strategies=strategies, backbone=net, fractions=fractions, shots=shots,
                                seeds=seeds, max_time=max_time, cache=FeatureCache.from_option(cache),
                                settings=settings, test_fraction=test_fraction, val_fraction=val_fraction,
                                on_run=on_run)
    if out is not None:
        _publish_study(out, "compare.json", result, write_compare_report, force=force)
    return result


def _publish_study(out: str | Path, json_name: str, result: Any, write_report: Callable[[Path, Any], Any], *,
                   force: bool) -> None:
    """Write a study's JSON and HTML report into ``out`` atomically (see :mod:`headstart.io`)."""
    workdir = work_dir(out)
    write_json(workdir / json_name, result.to_dict())
    write_report(workdir, result)
    publish(workdir, out, force=force)


def _as_list(value: str | Path | Sequence[Any]) -> list[Any]:
    return [value] if isinstance(value, (str, Path)) else list(value)
