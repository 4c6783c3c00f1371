"""The source task itself, before and after transfer: its accuracy read by the same source head.

Feature CKA says how far the representation moved; when the source task is known, this says what the move
cost where it matters: the accuracy on the source task's test split of one fixed *source head*, reading the
source backbone's features (before) and the transferred backbone's (after). The head is kept, not refitted,
so the drop is what a user of the old classifier would see on the new backbone.

The source task is known in two ways:

* the backbone is a ``ckpt:`` model trained by headstart: its classifier is the source head, and its test
  split (the data's own, or the share ``fit`` carved from the training data, carved again from the recorded
  fraction and seed) the source test set; found from the folder, nothing to give;
* the user gives labeled source data (``source=``, CLI ``--source DATA``): with a ``ckpt:`` backbone that
  model's head reads it (the data's classes must be among the head's); with any other backbone a linear probe
  fitted on the source backbone's frozen features of the data's training split is the source head.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headstart.backbones import Backbone, FeatureCache, SourceHead, extract_features
from headstart.backbones.checkpoint import read_model_files
from headstart.data import Dataset, DataSplits, load_dataset, stratified_split
from headstart.errors import ConfigError, HeadstartError
from headstart.strategies.linear import fit_linear_head

#: Source test examples used at most, and training examples of a fitted probe (a sample is enough).
MAX_SOURCE_EXAMPLES = 500
#: The option that gives source data, as the messages name it.
OPTION = "--source (API: source=)"


@dataclass(frozen=True)
class SourceTask:
    """A source task to measure: a fixed head and the test examples it is scored on.

    Attributes:
        name: Shown in outputs (``"test split of /data/birds (300 examples)"``).
        head: The source head; its ``class_names`` index its outputs.
        test: The test examples; their labels index ``head.class_names``.
        origin: Where the head comes from (``"the source model's classifier"``, ``"a linear probe ..."``).
    """

    name: str
    head: SourceHead
    test: Dataset
    origin: str


def checkpoint_folder(backbone: Backbone) -> Path | None:
    """The model folder of a ``ckpt:`` backbone, else ``None``."""
    return Path(backbone.ref.removeprefix("ckpt:")) if backbone.ref.startswith("ckpt:") else None


def checkpoint_head(folder: Path) -> SourceHead:
    """The classifier of the model saved in ``folder`` (raises ModelFileError for a damaged folder)."""
    config, tensors = read_model_files(folder)
    return SourceHead(weight=tensors["head.weight"].numpy(), bias=tensors["head.bias"].numpy(),
                      class_names=list(config["class_names"]))


def check_source_data(backbone: Backbone, data: DataSplits) -> None:
    """Refuse source data the source backbone cannot be scored on, before any training.

    Raises:
        ConfigError: Data of another modality than the backbone's, or (``ckpt:`` backbone) classes its
            source head does not know; the message names the option.
    """
    if data.train.modality != backbone.modality:
        raise ConfigError(f"{OPTION} {data.source} holds {data.train.modality} data, but the source backbone "
                          f"{backbone.ref} reads {backbone.modality} data; give the labeled {backbone.modality} "
                          "data of the task the backbone was trained on")
    folder = checkpoint_folder(backbone)
    if folder is not None:
        known = checkpoint_head(folder).class_names
        unknown = [name for name in data.class_names if name not in known]
        if unknown:
            raise ConfigError(f"{OPTION} {data.source} has classes {unknown[:5]} that the source model {folder} "
                              f"was not trained on (its classes: {known[:10]}); give that model's own data, or "
                              "leave --source out to use the test split recorded in its folder")


def _relabeled(dataset: Dataset, class_names: list[str], name: str) -> Dataset:
    """``dataset`` (at most :data:`MAX_SOURCE_EXAMPLES`, a fixed sample) with labels indexing ``class_names``."""
    if len(dataset) > MAX_SOURCE_EXAMPLES:
        dataset = dataset.subset(np.sort(np.random.default_rng(0).permutation(len(dataset))[:MAX_SOURCE_EXAMPLES]))
    labels = np.array([class_names.index(dataset.class_names[label]) for label in dataset.labels])
    return Dataset(list(dataset.items), labels, list(class_names), dataset.modality, name)


def _test_and_rest(data: DataSplits, carved: dict[str, Any] | None = None) -> tuple[Dataset, Dataset, str]:
    """The test split of ``data`` (its own, else carved as ``carved`` records, else 20% with seed 0), what is
    left for training, and how the test split was found."""
    if data.test is not None:
        return data.test, data.train, f"test split of {data.source}"
    fraction, seed = (carved or {}).get("test", 0.2), (carved or {}).get("seed", 0)
    parts = stratified_split(data.train, val_fraction=0.0, test_fraction=fraction, seed=seed)
    return parts.test, parts.train, f"{fraction:.0%} of {data.source} held out (seed {seed})"


def _checkpoint_task(folder: Path, data: DataSplits | None) -> SourceTask | str:
    """The source task of a ``ckpt:`` backbone: its head, on ``data`` or on the data its folder records (whose
    test split, when ``fit`` carved it, is carved again the same way)."""
    head, recorded = checkpoint_head(folder), _recorded(folder)
    if data is None:
        data = _recorded_data(folder, recorded)
        if isinstance(data, str):
            return data
    same = os.path.exists(data.source) and recorded.get("path") == str(Path(data.source).resolve())
    carved = recorded.get("carved") or {} if same else {}
    test, _, where = _test_and_rest(data, carved)
    if same and data.test is None and "test" not in carved:
        where += ", which the source model trained on (it had no test split)"
    test = _relabeled(test, head.class_names, where)
    return SourceTask(f"{where} ({len(test)} examples)", head, test, f"the classifier of the source model {folder}")


def _recorded(folder: Path) -> dict[str, Any]:
    """What the ``metrics.json`` of the model in ``folder`` says of its data (empty when it says nothing)."""
    try:
        recorded = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("data", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _recorded_data(folder: Path, recorded: dict[str, Any]) -> DataSplits | str:
    """The data the model in ``folder`` was trained on, as ``recorded``; or a note saying why it is not found."""
    path = recorded.get("path")
    if not isinstance(path, str) or not os.path.exists(path):
        return (f"the source model {folder} does not record where its data is (an older headstart, or data "
                f"given in memory), or it moved: no source-task accuracy; give it with {OPTION}")
    try:
        return load_dataset(path, modality=recorded.get("modality"), training=False)
    except HeadstartError as error:
        return f"the source model's data {path} could not be read again ({error}): no source-task accuracy"


def _probe_task(source: Backbone, data: DataSplits, cache: FeatureCache | None, batch_size: int,
                progress: bool) -> SourceTask:
    """A linear probe fitted on the source backbone's features of the training part of ``data``."""
    test, rest, where = _test_and_rest(data)
    train = _relabeled(rest, data.class_names, f"{data.source} (training part)")
    features = extract_features(source, train, cache=cache, batch_size=batch_size, progress=progress,
                                label="source train")
    head, _ = fit_linear_head(features, train.labels, len(data.class_names))
    probe = SourceHead(weight=head.weight.detach().numpy().copy(), bias=head.bias.detach().numpy().copy(),
                       class_names=list(data.class_names))
    test = _relabeled(test, probe.class_names, where)
    return SourceTask(f"{where} ({len(test)} examples)", probe, test,
                      f"a linear probe fitted on {source.ref}'s features of {len(train)} examples of {data.source}")


def source_task(source: Backbone, data: DataSplits | None, *, cache: FeatureCache | None = None,
                batch_size: int = 64, progress: bool = False) -> SourceTask | str | None:
    """The source task to score ``source`` (the backbone before transfer) on.

    Args:
        source: The source backbone.
        data: Labeled source data (see the module doc); ``None``: only a ``ckpt:`` backbone has one.

    Returns:
        The task; a note (str) when a ``ckpt:`` backbone's task cannot be found; ``None`` when there is none.

    Raises:
        ConfigError: See :func:`check_source_data`.
    """
    if data is not None:
        check_source_data(source, data)
    folder = checkpoint_folder(source)
    if folder is not None:
        return _checkpoint_task(folder, data)
    return None if data is None else _probe_task(source, data, cache, batch_size, progress)


def source_accuracy(task: SourceTask, before: Backbone, after: Backbone | None, *,
                    cache: FeatureCache | None = None, batch_size: int = 64, progress: bool = False
                    ) -> dict[str, Any]:
    """Accuracy of ``task``'s head on its test examples through ``before``'s features and ``after``'s.

    Args:
        after: The transferred backbone; ``None`` when it is frozen (the accuracy is then unchanged).

    Returns:
        ``name``, ``head`` (its origin), ``n``, ``accuracy_before``, ``accuracy_after``, ``change``.
    """
    weight, bias = task.head.weight.astype(np.float64), task.head.bias.astype(np.float64)

    def accuracy(features: np.ndarray) -> float:
        return float(np.mean((features.astype(np.float64) @ weight.T + bias).argmax(1) == task.test.labels))

    old = accuracy(extract_features(before, task.test, cache=cache, batch_size=batch_size, progress=progress,
                                    label="source test"))
    new = old if after is None else accuracy(after.embed(task.test.items, batch_size=batch_size,
                                                         progress=progress, label="source test"))
    return {"name": task.name, "head": task.origin, "n": len(task.test), "accuracy_before": old,
            "accuracy_after": new, "change": new - old}
