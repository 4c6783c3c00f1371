"""The API of one model: fit, load, evaluate, predict, and what its backbone kept of its source."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from headstart.api.arguments import as_list, checked_data, checked_strategy, skip_bad
from headstart.backbones import Backbone, FeatureCache, build_backbone
from headstart.backbones.features import cache_scope
from headstart.data import Dataset, DataSplits, as_splits, load_dataset, load_inputs, modality_spec
from headstart.data.unlabeled import TargetData
from headstart.evaluation import evaluate_dataset
from headstart.evaluation.forgetting import ReferenceSet, measure_forgetting
from headstart.evaluation.source_task import check_source_data
from headstart.fitting import fit_splits
from headstart.held_out import HoldOutPlan
from headstart.io import WorkFolder, is_main_process, work_folder
from headstart.model import TransferModel
from headstart.onnx_export import OnnxModel, load_predictor
from headstart.progress import note
from headstart.reports import write_fit_report, write_model_card
from headstart.shift import measure_shift
from headstart.strategies import Strategy
from headstart.tracking.runs import fit_run
from headstart.tracking.tracker import Tracker, start_tracking
from headstart.training import FitContext
from headstart.training.checkpoint import CHECKPOINT_DIR
from headstart.transferability import RankResult, bundled_backbones, rank_backbones


def fit(data: str | Path | DataSplits | Dataset, *, backbone: str | Backbone | None = None, strategy: str = "auto",
        out: str | Path | None = None, force: bool = False, seed: int = 0, val_fraction: float | None = None,
        test_fraction: float | None = None, cache: bool | str | Path | FeatureCache = True, progress: bool = True,
        max_time: float | None = None, calibrate: bool = False, image_size: int | str | None = None,
        preprocess: dict[str, Any] | None = None, engine: str | None = None, skip_bad_files: bool = False,
        text_column: str | None = None, label_column: str | None = None, path_column: str | None = None,
        settings: dict[str, Any] | None = None, allow_outside_paths: bool = False, skip_bad_images: bool | None = None,
        track: bool | str = False, source: str | Path | DataSplits | Dataset | None = None,
        target: str | Path | Dataset | None = None, target_test: str | Path | Dataset | None = None) -> TransferModel:
    """Train a model on labeled data by transferring a pre-trained backbone.

    Args:
        data: An image or audio folder (class subfolders, optionally inside ``train/ val/ test/``), a CSV of
            ``path,label``, a CSV/JSONL/Parquet of text and label, or already-loaded data.
        backbone: A reference (``headstart backbones``) or a built backbone; default: the modality's bundled one;
            ``"auto"``: the bundled one with the best LogME on the training split (``metrics["backbone_ranking"]``).
        strategy: How to transfer (``headstart strategies``): ``auto`` picks a frozen-feature head or fine-tuning.
        out, force: Folder to write the model, metrics and report to (atomically; never the data, around or in
            it; ``None``: in memory only); ``force`` replaces one headstart wrote, or a damaged checkpoint.
        seed, val_fraction, test_fraction: Random seed for splits and training; validation and test shares carved
            when the data has none (``None``: 0.15 and 0.2, or nothing below 10 per class, said before training).
        cache: ``True``: the default feature cache; a folder or a :class:`FeatureCache`: another one; ``False``: none.
        progress, max_time, engine, track: Show progress bars; the training budget in seconds; ``with_engine``'s
            engine; log the run to MLflow (``True``: the store ``<out parent>/mlruns.db``; or a tracking URI).
        calibrate: Fit a softmax temperature on the validation split (carved from the training data when there
            is none) so confidences match accuracy; ECE before and after is in ``metrics["calibration"]``.
        image_size, preprocess: An image backbone's input size (pixels, or ``"auto"``: 128 when every training
            image is much smaller), other settings (``{"views": "flip"}``, ``{"max_seconds": 10}``), saved with it;
            ``linear``, ``prototypes`` and ``auto`` pool the last two image stages unless ``stages`` is set.
        skip_bad_files: Skip unusable files (listed in the metrics) instead of failing; ``skip_bad_images``: old name.
        text_column, label_column, path_column, allow_outside_paths: How tables are read: column names when
            not detected; whether paths may lead outside the table's folder (see :func:`load_dataset`).
        settings: The strategy's settings (``{"epochs": 3}``; ``headstart strategies`` lists them), not run arguments.
        target, target_test: Unlabeled data of the domain the model is for (its shift from ``data`` is measured
            first; ``adabn``, ``coral``, ``dann`` adapt to it), and labeled data of it to measure on.
        source: Labeled data of the backbone's source task, for its accuracy before and after (:func:`forgetting`).

    Returns:
        The trained model; its ``metrics`` hold test and validation results and warnings (e.g. imbalance).

    Example:
        >>> fit("examples/fashion-mnist-mini", out="runs/demo", settings={"folds": 3}).metrics["test"]["accuracy"]
    """
    started = time.perf_counter()
    chosen = checked_strategy(strategy, settings, inspect.signature(fit).parameters, target)
    feature_cache = FeatureCache.from_option(cache)
    tracker = start_tracking(track if is_main_process() else False, out)  # MLflow starts up meanwhile
    with work_folder(out, kind="model", force=force, protected=[data]) as work, cache_scope(feature_cache):
        options = dict(text_column=text_column, label_column=label_column, path_column=path_column, tracker=tracker,
                       allow_outside_paths=allow_outside_paths, skip_bad=skip_bad(skip_bad_files, skip_bad_images))
        splits, domain, plan = checked_data(work, data, target, target_test, chosen, seed=seed, calibrate=calibrate,
                                            val_fraction=val_fraction, test_fraction=test_fraction, **options)
        net, ranking = _fit_backbone(backbone, splits.train, feature_cache, progress, image_size, preprocess, engine,
                                     chosen.preferred_preprocess if source is None else None)
        workdir = work.path if work is not None else Path(tempfile.mkdtemp(prefix="headstart-"))
        model = _train(splits, net, chosen, domain, FitContext(work_dir=workdir, seed=seed, cache=feature_cache,
                       progress=progress, max_time=max_time, restart_damaged=force), calibrate, ranking, started,
                       source_splits(source, net), plan)
        _publish_fit(model, splits, workdir, work, tracker)
    return model


def _train(splits: DataSplits, backbone: Backbone, strategy: Strategy, domain: TargetData | None,
           context: FitContext, calibrate: bool, ranking: RankResult | None, started: float,
           source_data: DataSplits | None, plan: HoldOutPlan) -> TransferModel:
    """:func:`fit_splits`, preceded with a target domain by the shift check (printed, then in
    ``metrics["target"]["shift"]``; what loading the target ignored goes into the warnings); then the run's
    seconds since ``started`` and the backbone ``ranking`` go into the metrics."""
    if domain is None:
        model = fit_splits(splits, backbone, strategy, context, calibrate=calibrate, source_data=source_data,
                           held_out=plan, train_again=True)
    else:
        for line in domain.notes:
            note(f"note: {line}", enabled=context.progress)
        # Without unlabeled target data, the labeled target examples (their labels unused) show the shift.
        seen = domain.test if domain.unlabeled is None else domain.unlabeled
        shift = measure_shift(backbone, splits.train, seen, cache=context.cache, progress=context.progress,
                              seed=context.seed)
        note(shift["summary"], enabled=context.progress)
        model = fit_splits(splits, backbone, strategy, dataclasses.replace(context, target=domain.unlabeled),
                           calibrate=calibrate, target_test=domain.test, source_data=source_data, held_out=plan,
                           train_again=True)
        model.metrics["target"]["shift"] = shift
        model.metrics["warnings"] = [*model.metrics.get("warnings", []), *domain.notes]
    model.metrics |= {"seconds": round(time.perf_counter() - started, 2),
                      **({"backbone_ranking": ranking.to_dict()} if ranking is not None else {})}
    return model


def _fit_backbone(backbone: str | Backbone | None, train: Dataset, cache: FeatureCache | None, progress: bool,
                  image_size: int | str | None, preprocess: dict[str, Any] | None, engine: str | None,
                  prefer: dict[str, Any] | None) -> tuple[Backbone, RankResult | None]:
    """The backbone :func:`fit` starts from (the modality's default, or the best bundled one for ``"auto"``)
    built with ``image_size``, ``preprocess``, ``engine`` and the strategy's preferred preprocessing (none with
    ``--source``, whose scoring reads the source classifier), and the ranking that chose it (``"auto"`` only)."""
    build = {"image_size": image_size, "preprocess": preprocess, "engine": engine, "examples": train.items,
             "prefer": prefer}
    backbone = backbone or modality_spec(train.modality).default_backbone
    ranking = None
    if backbone == "auto":
        candidates = [build_backbone(ref, **build)
                      for ref in bundled_backbones(train.modality)]
        ranking = rank_backbones(train, candidates, scores=["logme"], sort_by="logme", cache=cache, progress=progress)
        return candidates[[c.ref for c in candidates].index(ranking.best)], ranking
    return build_backbone(backbone, **build), ranking


def source_splits(source: str | Path | DataSplits | Dataset | None, backbone: Backbone) -> DataSplits | None:
    """The labeled source data ``source`` loaded and checked against the source ``backbone`` (before training)."""
    if source is None:
        return None
    data = source if isinstance(source, DataSplits) else as_splits(source, training=False)
    check_source_data(backbone, data)
    return data


def _publish_fit(model: TransferModel, splits: DataSplits, workdir: Path, work: WorkFolder | None,
                 tracker: Tracker | None = None) -> None:
    """Save the model and its report into the work folder and publish it (without ``out``: drop the temp folder);
    then log the run to ``tracker`` (its id goes into ``model.metrics["tracking"]``)."""
    if work is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif is_main_process():  # under torchrun the other ranks leave the shared folder to rank 0
        model.save(workdir)
        write_fit_report(workdir, model, splits)
        write_model_card(workdir, model)
        shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
        work.publish()
    if tracker is not None:
        model.metrics["tracking"] = tracker.log(fit_run(model, splits, out=work.out if work is not None else None))


def load(folder: str | Path, *, allow_download: bool = False) -> TransferModel:
    """Load a model saved by :func:`fit` (or :meth:`TransferModel.save`), reading only what its folder holds
    unless ``allow_download`` (older folders may name a hub backbone whose weights they lack)."""
    return TransferModel.load(folder, allow_download=allow_download)


def evaluate(model: TransferModel | str | Path, data: str | Path | Dataset, *, split: str | None = None,
             batch_size: int = 64, progress: bool = False, forgetting: bool = False,
             reference: str | Path | Sequence[Any] | None = None,
             source: str | Path | DataSplits | Dataset | None = None, allow_download: bool = False,
             **columns: str | None) -> dict[str, Any]:
    """Metrics of a model on labeled data.

    Args:
        model: A model or its folder.
        data: A labeled data set in any format :func:`fit` accepts, of the model's modality.
        split: ``train``, ``val``, ``test`` or ``all``; default: the test split if the data has one, else all.
        forgetting: Also measure what the model's backbone kept of its source on the bundled reference set
            and these examples (``metrics["forgetting"]``, see :func:`forgetting`).
        reference, source: Source-domain inputs instead of the bundled reference set, and labeled data of the
            backbone's source task (either implies ``forgetting``), as :func:`forgetting` takes them.
        allow_download: As for :func:`load`.
        **columns: ``text_column``, ``label_column``, ``path_column`` for tabular data.
    """
    model = load(model, allow_download=allow_download) if isinstance(model, (str, Path)) else model
    dataset = data if isinstance(data, Dataset) else load_dataset(data, training=False, **columns).select(split)
    chosen = reference_set(reference, model.modality)
    source_data = source_splits(source, model.backbone) if source is not None else None
    metrics = evaluate_dataset(model, dataset, batch_size=batch_size, progress=progress)
    if forgetting or reference is not None or source is not None:
        metrics["forgetting"] = measure_forgetting(model, target=dataset.items, reference=chosen,
                                                   source_data=source_data, batch_size=batch_size, progress=progress)
    return metrics


def reference_set(reference: str | Path | Sequence[Any] | None, modality: str) -> ReferenceSet | None:
    """``reference`` (files, folders, a .txt of texts, or loaded inputs) as a reference set, checked to be of
    ``modality``; ``None`` stays ``None`` (the bundled set)."""
    if reference is None:
        return None
    items, _ = load_inputs([str(r) for r in as_list(reference)], modality)
    return ReferenceSet(f"{len(items)} reference inputs", items)


def forgetting(model: TransferModel | str | Path, *, reference: str | Path | Sequence[Any] | None = None,
               data: str | Path | Sequence[Any] | None = None,
               source: str | Path | DataSplits | Dataset | None = None, batch_size: int = 64,
               progress: bool = False) -> dict[str, Any]:
    """What a model's backbone kept of its source (see :mod:`headstart.evaluation.forgetting`).

    Args:
        model: A model or its folder.
        reference: Source-domain inputs (files, folders, a .txt of texts) instead of the bundled reference set.
        data: Target inputs to measure on as well (as :func:`predict` takes them).
        source: Labeled data of the backbone's source task (any format :func:`fit` reads): the accuracy on its
            test split of one source head, through the backbone before and after transfer, is in
            ``source_task``. The head is the source model's own for a ``ckpt:`` backbone (which needs no
            ``source``: its folder records its data), else a linear probe fitted on the source backbone.
        batch_size, progress: As for :func:`evaluate`.

    Raises:
        ConfigError: ``source`` of another modality than the backbone, or with classes a ``ckpt:`` source
            model was not trained on.

    Example:
        >>> headstart.forgetting("runs/finetuned")["reference"]["feature_cka"]
        >>> headstart.forgetting("runs/on-birds", source="data/imagenet-birds")["source_task"]["accuracy_after"]
    """
    model = load(model) if isinstance(model, (str, Path)) else model
    chosen = reference_set(reference, model.modality)
    target = load_inputs([str(d) for d in as_list(data)], model.modality)[0] if data is not None else None
    source_data = source_splits(source, model.backbone) if source is not None else None
    return measure_forgetting(model, target=target, reference=chosen, source_data=source_data,
                              batch_size=batch_size, progress=progress)


def predict(model: TransferModel | OnnxModel | str | Path, inputs: Sequence[Any] | Any, *, top_k: int = 1,
            batch_size: int = 64, progress: bool = False, engine: str = "torch", allow_download: bool = False
            ) -> list[dict[str, Any]]:
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
        allow_download: Let a model folder whose backbone is a hub reference download it (as :func:`load`).

    A text model refuses an existing file other than a ``.txt`` or table rather than classify its path;
    ``allow_download`` is as for :func:`load`.

    Returns:
        One dict per example: ``input``, ``label``, ``confidence`` and, for ``top_k > 1``, ``top`` — a list of
        ``(label, probability)`` pairs.
    """
    model = load_predictor(model, engine, allow_download=allow_download)
    items, names = load_inputs(inputs, model.modality, progress=progress)
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
