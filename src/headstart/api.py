"""The Python API: the same features as the CLI, as functions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from headstart.backbones import Backbone, create_backbone
from headstart.data import DataSplits, load_dataset
from headstart.data.base import Dataset
from headstart.data.splits import stratified_split
from headstart.errors import ConfigError, DataError
from headstart.features import FeatureCache
from headstart.model import TransferModel
from headstart.outputs import check_output, publish, work_dir
from headstart.strategies import FitContext, get_strategy

DEFAULT_BACKBONES = {"image": "efficientnet_lite0", "text": "minilm"}


def fit(data: str | Path | DataSplits | Dataset, *, backbone: str | Backbone | None = None, strategy: str = "linear",
        out: str | Path | None = None, force: bool = False, seed: int = 0, val_fraction: float = 0.15,
        test_fraction: float = 0.2, cache: bool | str | Path = True, progress: bool = True,
        max_time: float | None = None, skip_bad_images: bool = False, text_column: str | None = None,
        label_column: str | None = None, path_column: str | None = None, **options: Any) -> TransferModel:
    """Train a model on labeled data by transferring a pre-trained backbone.

    Data without a ``test`` split gets a stratified held-out test set (``test_fraction``); strategies that
    select models on validation data get a validation split (``val_fraction``) when there is none.

    Args:
        data: An image folder (class subfolders, optionally inside ``train/ val/ test/``), a CSV of
            ``path,label``, a CSV/JSONL/Parquet of text and label, or already-loaded data.
        backbone: A backbone reference (``headstart backbones`` lists them) or a built backbone (e.g. with
            custom preprocessing); default: ``efficientnet_lite0`` for images, ``minilm`` for text.
        strategy: How to transfer: ``linear`` (frozen features + logistic regression), ...
        out: Folder to write the model, metrics and report to (written atomically; an existing folder is
            replaced only with ``force``). ``None`` keeps the model in memory only.
        force: Replace an existing ``out``.
        seed: Random seed for splits and training.
        val_fraction: Share of the training data held out for validation when a strategy needs it.
        test_fraction: Share held out for the final test when the data has no test split.
        cache: ``True`` for the default feature cache, a folder for another one, ``False`` for none.
        progress: Show progress bars.
        max_time: Training budget in seconds.
        skip_bad_images: Skip unreadable images (listed in the metrics) instead of failing.
        text_column, label_column, path_column: Column names in tabular data, when not detected.
        **options: The strategy's hyperparameters (``headstart strategies`` lists them).

    Returns:
        The trained model; its ``metrics`` hold test (and validation) results.

    Example:
        >>> model = fit("examples/fashion-mnist-mini", out="runs/demo")
        >>> model.metrics["test"]["accuracy"]
    """
    started = time.perf_counter()
    out = check_output(out, force=force) if out is not None else None
    splits = _as_splits(data, skip_bad_images=skip_bad_images, text_column=text_column,
                        label_column=label_column, path_column=path_column)
    backbone = backbone or DEFAULT_BACKBONES[splits.train.modality]
    chosen = get_strategy(strategy, seed=seed, **options)
    splits = _complete_splits(splits, needs_val=chosen.uses_validation, seed=seed,
                              val_fraction=val_fraction, test_fraction=test_fraction)
    net = create_backbone(backbone) if isinstance(backbone, str) else backbone
    if net.modality != splits.train.modality:
        raise ConfigError(f"backbone {net.ref!r} is for {net.modality} data but {splits.source} holds "
                          f"{splits.train.modality} data; choose a {splits.train.modality} backbone "
                          "(see `headstart backbones`)")
    feature_cache = None if cache is False else FeatureCache(None if cache is True else cache)
    workdir = work_dir(out) if out is not None else _scratch_dir()
    context = FitContext(work_dir=workdir, cache=feature_cache, progress=progress, max_time=max_time)
    model = chosen.fit(net, splits.train, splits.val, context)

    from headstart.evaluation import evaluate_dataset

    metrics: dict[str, Any] = {"data": _describe(splits), "backbone": net.ref, "strategy": strategy, **model.metrics}
    for name, part in (("val", splits.val), ("test", splits.test)):
        if part is not None:
            metrics[name] = evaluate_dataset(model, part, batch_size=chosen.config.batch_size,
                                             progress=progress, cache=feature_cache)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    model.metrics = metrics
    if out is not None:
        from headstart.report import write_fit_report

        model.save(workdir)
        write_fit_report(workdir, model, splits)
        publish(workdir, out, force=force)
    return model


def load(folder: str | Path) -> TransferModel:
    """Load a model saved by :func:`fit` (or :meth:`TransferModel.save`)."""
    return TransferModel.load(folder)


def evaluate(model: TransferModel | str | Path, data: str | Path | Dataset, *, split: str | None = None,
             batch_size: int = 64, progress: bool = False, **columns: str | None) -> dict[str, Any]:
    """Metrics of a model on labeled data.

    Args:
        model: A model or its folder.
        data: A labeled data set in any format :func:`fit` accepts.
        split: ``train``, ``val``, ``test`` or ``all``; default: the test split if the data has one, else all.
        **columns: ``text_column``, ``label_column``, ``path_column`` for tabular data.
    """
    from headstart.evaluation import evaluate_dataset

    model = load(model) if isinstance(model, (str, Path)) else model
    dataset = data if isinstance(data, Dataset) else _pick_split(load_dataset(data, training=False, **columns), split)
    return evaluate_dataset(model, dataset, batch_size=batch_size, progress=progress)


def predict(model: TransferModel | str | Path, inputs: Sequence[Any], *, top_k: int = 1, batch_size: int = 64,
            progress: bool = False) -> list[dict[str, Any]]:
    """Predictions for raw inputs: image paths or folders, or texts (or a ``.txt``/CSV of texts).

    Returns:
        One dict per example: ``input``, ``label``, ``confidence`` and, for ``top_k > 1``, ``top`` — a list of
        ``(label, probability)`` pairs.
    """
    from headstart.data.inputs import load_inputs

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


def _as_splits(data: Any, **kwargs: Any) -> DataSplits:
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, Dataset):
        return DataSplits(train=data, val=None, test=None, source=data.source)
    skip = kwargs.pop("skip_bad_images")
    return load_dataset(data, skip_bad=skip, **kwargs)


def _complete_splits(splits: DataSplits, *, needs_val: bool, seed: int, val_fraction: float,
                     test_fraction: float) -> DataSplits:
    train, val, test = splits.train, splits.val, splits.test
    if test is None and test_fraction > 0:
        parts = stratified_split(train, val_fraction=0.0, test_fraction=test_fraction, seed=seed)
        train, test = parts.train, parts.test
    if val is None and needs_val and val_fraction > 0:
        parts = stratified_split(train, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
        train, val = parts.train, parts.val
    return DataSplits(train=train, val=val, test=test, source=splits.source, skipped=list(splits.skipped))


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


def _describe(splits: DataSplits) -> dict[str, Any]:
    info: dict[str, Any] = {"source": splits.source, "modality": splits.train.modality,
                            "classes": splits.train.class_names}
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        if part is not None:
            info[f"n_{name}"] = len(part)
    if splits.skipped:
        info["skipped"] = [str(s) for s in splits.skipped]
    return info


def _scratch_dir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="headstart-"))
