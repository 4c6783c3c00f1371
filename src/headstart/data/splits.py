"""Train / validation / test splits: grouping labeled examples, stratified splitting, k-shot and fractions.

Splitting is done per class with a seeded ``numpy`` generator rather than with scikit-learn's
``StratifiedShuffleSplit``: that one rejects classes with a single example and does not promise every class
a place in each split, and small data sets are exactly where both matter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.base import Dataset, Modality
from headstart.data.modality import modality_spec
from headstart.display import MAX_ROWS, html_table
from headstart.errors import ConfigError, DataError, listing, option

SPLIT_NAMES = ("train", "val", "test")
# More distinct labels than this, averaging under two examples each, is an ID or free-text column, not classes.
ID_COLUMN_CLASSES = 1000


@dataclass
class DataSplits:
    """A training set with its optional validation and test sets, all sharing ``train.class_names``.

    Attributes:
        train: Examples to train on.
        val: Examples for model selection, or ``None`` (a strategy may then split ``train``).
        test: Held-out examples for the final evaluation, or ``None``.
        source: Where the data came from (a path), used in messages and reports.
        skipped: Files left out because their modality's check rejected them (only with ``skip_bad=True``).
        carved: The splits carved from ``train`` (``"test"``/``"val"``: the share) and the ``"seed"``, so that
            the same split can be carved again (e.g. a ``ckpt:`` source model's test split); empty when none.
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    source: str = "<memory>"
    skipped: list[str] = field(default_factory=list)
    carved: dict[str, float] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        """The classes, indexed by label (those of ``train``)."""
        return self.train.class_names

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name} {len(part)}" for name, part in self.present().items())
        return (f"DataSplits({self.train.modality}, {sizes}; {len(self.class_names)} classes: "
                f"{listing(self.class_names, limit=5)}; source {self.source!r})")

    def _repr_html_(self) -> str:
        parts = self.present()
        counts = [part.class_counts().tolist() for part in parts.values()]
        rows = [[name, *(c[i] for c in counts)] for i, name in enumerate(self.class_names)]
        caption = (f"{self.train.modality.capitalize()} data from {self.source}: "
                   + ", ".join(f"{len(part)} {name}" for name, part in parts.items())
                   + f" examples of {len(self.class_names)} classes.")
        return html_table(["class", *parts], rows, limit=MAX_ROWS, caption=caption)

    def present(self) -> dict[str, Dataset]:
        """The splits that exist, by name, in the order train, val, test."""
        sets = (self.train, self.val, self.test)
        return {name: ds for name, ds in zip(SPLIT_NAMES, sets, strict=True) if ds is not None}

    def file_folders(self) -> list[Path]:
        """The folders holding the examples' files (e.g. the images a CSV lists; none for texts), which an
        output folder must keep clear of."""
        if not modality_spec(self.train.modality).file_suffixes:
            return []
        return sorted({Path(item).parent for part in self.present().values() for item in part.items
                       if isinstance(item, (str, Path))})

    def select(self, split: str | None = None) -> Dataset:
        """One split by name, or ``"all"`` of them as one data set; default: ``test`` if present, else all.

        Raises:
            DataError: There is no such split.
        """
        available = self.present()
        split = split or ("test" if "test" in available else "all")
        if split in available:
            return available[split]
        if split != "all":
            raise DataError(f"{self.source} has no {split!r} split; choose {option('split')} from: "
                            f"{', '.join([*available, 'all'])}")
        parts = list(available.values())
        return Dataset([item for part in parts for item in part.items],
                       [label for part in parts for label in part.labels], parts[0].class_names, parts[0].modality,
                       self.source)


def sorted_class_names(labels: Sequence[str]) -> list[str]:
    """Distinct labels, numerically sorted when all are integers (``"2"`` before ``"10"``), else by text."""
    names = set(labels)
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def encode_labels(labels: Sequence[Any] | np.ndarray, class_names: Sequence[str] | None = None
                  ) -> tuple[np.ndarray, list[str]]:
    """Integer labels and class names from string or integer labels.

    Integer labels are kept as they are (they index ``class_names``, which defaults to ``"0"`` ... ``"max"``);
    string labels are mapped to their position in ``class_names`` (default: the sorted distinct labels).

    Raises:
        DataError: A label is outside ``class_names``.
    """
    values = np.asarray(labels)
    if values.dtype.kind in "iu":
        names = list(class_names) if class_names is not None else [str(i) for i in range(values.max() + 1)]
        bad = values[(values < -1) | (values >= len(names))]
        if len(bad):
            raise DataError(f"label {int(bad[0])} is outside the {len(names)} classes (0..{len(names) - 1})")
        return values.astype(np.int64), names
    strings = [str(v) for v in labels]
    names = list(class_names) if class_names is not None else sorted_class_names(strings)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(strings) - set(index))
    if unknown:
        raise DataError(f"labels [{listing(map(repr, unknown))}] are not among the classes "
                        f"[{listing(map(repr, names))}]")
    return np.array([index[s] for s in strings], dtype=np.int64), names


def assemble_splits(items: list[Any], labels: list[str], split_of: list[str], modality: Modality,
                    source: str, split_sources: dict[str, str] | None = None) -> DataSplits:
    """Group labeled examples into a :class:`DataSplits`; classes are the sorted labels of the train split.

    Args:
        items: Examples, in the order they were read.
        labels: Class name per example.
        split_of: ``"train"``, ``"val"`` or ``"test"`` per example.
        modality: A registered modality.
        source: The path the data came from.
        split_sources: Per-split source (e.g. the ``val/`` folder), defaulting to ``source``.

    Raises:
        DataError: There are no training examples, or val/test hold a class that train does not.
    """
    split_sources = split_sources or {}
    by_split = {name: [i for i, s in enumerate(split_of) if s == name] for name in SPLIT_NAMES}
    if not by_split["train"]:
        raise DataError(f"{source} has no training examples")
    class_names = sorted_class_names([labels[i] for i in by_split["train"]])
    datasets: dict[str, Dataset | None] = {}
    for name, indices in by_split.items():
        if not indices:
            datasets[name] = None
            continue
        extra = sorted(set(labels[i] for i in indices) - set(class_names))
        if extra:
            raise DataError(f"the {name} split of {split_sources.get(name, source)} has classes that train does "
                            f"not: [{listing(map(repr, extra))}]; add training examples for them or remove them "
                            f"from {name}")
        codes, _ = encode_labels([labels[i] for i in indices], class_names)
        datasets[name] = Dataset([items[i] for i in indices], codes, list(class_names), modality,
                                 split_sources.get(name, source))
    return DataSplits(datasets["train"], datasets["val"], datasets["test"], source)


def check_trainable(splits: DataSplits) -> None:
    """Check that ``splits.train`` can train a classifier: two classes or more, and labels that look like
    classes rather than an ID column.

    Raises:
        DataError: Naming the class there is, or the label values.
    """
    train = splits.train
    n_classes = len(train.class_names)
    if n_classes < 2:
        raise DataError(f"{train.source} has only one class ({train.class_names[0]!r}); a classifier needs "
                        "at least two")
    if n_classes >= ID_COLUMN_CLASSES and n_classes > len(train) / 2:
        raise DataError(f"{train.source}: the labels have {n_classes} distinct values among {len(train)} "
                        f"examples ({listing(map(repr, train.class_names), limit=5)}); that is probably an ID "
                        f"or free-text column, not classes; name the class column with {option('label_column')}")


def check_selectable(train: Dataset, why: str) -> None:
    """Check that a validation example of every class can be held out of ``train`` (two or more per class).

    Args:
        train: The training examples a validation split would be carved from.
        why: What needs the validation data, for the message (``"strategy 'finetune' selects on validation
            data"``).

    Raises:
        DataError: Naming the classes with a single example and every way out.
    """
    counts = train.class_counts()
    single = [f"{name!r} ({count})" for name, count in zip(train.class_names, counts, strict=True) if count < 2]
    if single:
        hint = (f" (if the label column is an ID or free-text column, name the class column with "
                f"{option('label_column')})"
                if len(single) > len(counts) / 2 and len(single) >= 20 else "")
        raise DataError(f"{train.source}: class {listing(single)} has fewer than 2 examples, so no validation "
                        f"example can be held out{hint}, but {why}; add examples, give a separate val split, "
                        f"train without selection ({option('val_fraction', 0)}), or use a strategy that "
                        "needs no validation data (prototypes, linear)")


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> None:
    if not ((0 <= value < 1) if allow_zero else (0 < value <= 1)):
        raise ConfigError(f"{name} must be in {'[0, 1)' if allow_zero else '(0, 1]'}, got {value}")


def _labeled(dataset: Dataset) -> None:
    if (dataset.labels < 0).any():
        raise DataError(f"{dataset.source} has unlabeled examples (label -1); they cannot be split by class")


def _per_class(dataset: Dataset, seed: int, take: Callable[[int], Sequence[int]]) -> list[np.ndarray]:
    """Shuffle each class's indices (seeded) and cut them into consecutive parts of the sizes ``take``
    returns for the class size; returns each part's indices over all classes, sorted."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = []
    for label in range(len(dataset.class_names)):
        indices = rng.permutation(np.flatnonzero(dataset.labels == label))
        bounds = np.cumsum([0, *take(len(indices))])
        for p in range(len(bounds) - 1):
            if len(parts) <= p:
                parts.append([])
            parts[p].append(indices[bounds[p]:bounds[p + 1]])
    return [np.sort(np.concatenate(chunks)) for chunks in parts]


def stratified_split(dataset: Dataset, val_fraction: float = 0.2, test_fraction: float = 0.0,
                     seed: int = 0) -> DataSplits:
    """Split ``dataset`` into train / val / test with each class in the same proportions.

    Every class keeps at least one training example. A class with two examples or more also gets at least
    one validation example when ``val_fraction > 0`` (and then one test example when it has enough), so
    tiny classes are still seen in validation. The result depends only on the data and ``seed``.

    Args:
        dataset: Labeled examples.
        val_fraction: Share of each class for validation, in ``[0, 1)``.
        test_fraction: Share of each class for testing, in ``[0, 1)``.
        seed: Random seed.

    Returns:
        ``DataSplits``; ``val`` / ``test`` are ``None`` when their fraction is 0.

    Example:
        >>> splits = stratified_split(dataset, val_fraction=0.2, seed=0)
    """
    _check_fraction("val_fraction", val_fraction, allow_zero=True)
    _check_fraction("test_fraction", test_fraction, allow_zero=True)
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")
    _labeled(dataset)

    def sizes(n: int) -> tuple[int, int, int]:
        held = []
        for fraction in (val_fraction, test_fraction):
            k = min(max(int(round(n * fraction)), 1 if fraction > 0 else 0), n - 1 - sum(held))
            held.append(max(k, 0))
        return n - sum(held), held[0], held[1]

    train, val, test = _per_class(dataset, seed, sizes)
    return DataSplits(dataset.subset(train), dataset.subset(val) if val_fraction > 0 else None,
                      dataset.subset(test) if test_fraction > 0 else None, dataset.source)


def sample_per_class(dataset: Dataset, k: int, seed: int = 0) -> Dataset:
    """``k`` examples of every class (k-shot), chosen at random with ``seed``.

    Raises:
        ConfigError: ``k < 1``.
        DataError: Some classes have fewer than ``k`` examples (names them with their counts).
    """
    if k < 1:
        raise ConfigError(f"k (examples per class) must be at least 1, got {k}")
    _labeled(dataset)
    counts = dataset.class_counts()
    short = [f"{name!r} ({count})" for name, count in zip(dataset.class_names, counts, strict=True) if count < k]
    if short:
        raise DataError(f"{dataset.source}: {k}-shot sampling needs {k} examples per class, but class "
                        f"{listing(short)} has fewer; use a smaller k")
    chosen, _rest = _per_class(dataset, seed, lambda n: (k, n - k))
    return dataset.subset(chosen)


def fraction_subset(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """A stratified random ``fraction`` of ``dataset`` (at least one example of every class).

    Raises:
        ConfigError: ``fraction`` is not in ``(0, 1]``.
    """
    _check_fraction("fraction", fraction, allow_zero=False)
    _labeled(dataset)

    def sizes(n: int) -> tuple[int, int]:
        keep = min(n, max(1, int(round(n * fraction))))
        return keep, n - keep

    chosen, _rest = _per_class(dataset, seed, sizes)
    return dataset.subset(chosen)
