"""Class balance of a labeled data set: a check that warns before results are misread."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from headstart.errors import DataError

IMBALANCE_WARNING_RATIO = 10.0


def imbalance_ratio(counts: Sequence[int] | np.ndarray) -> float:
    """Examples in the largest class divided by examples in the smallest non-empty class.

    Args:
        counts: Examples per class (e.g. ``Dataset.class_counts()``).

    Returns:
        The ratio, ``>= 1``; ``1.0`` for perfectly balanced classes.

    Raises:
        DataError: If no class has any example.
    """
    counts = np.asarray(counts, dtype=np.float64)
    nonempty = counts[counts > 0]
    if nonempty.size == 0:
        raise DataError("no class has any example; check the labels of the data set")
    return float(nonempty.max() / nonempty.min())


def imbalance_warning(counts: Sequence[int] | np.ndarray, class_names: Sequence[str] | None = None,
                      threshold: float = IMBALANCE_WARNING_RATIO) -> str | None:
    """A warning to show the user when classes are very unequal in size, else ``None``.

    Args:
        counts: Examples per class.
        class_names: Names for the message (defaults to the class indices).
        threshold: Largest/smallest ratio above which to warn.

    Returns:
        A one-sentence warning naming the largest and smallest classes, or ``None``.
    """
    ratio = imbalance_ratio(counts)
    if ratio <= threshold:
        return None
    counts = np.asarray(counts)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    largest = int(np.argmax(counts))
    smallest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    return (f"classes are imbalanced: {names[largest]!r} has {int(counts[largest])} examples but "
            f"{names[smallest]!r} only {int(counts[smallest])} ({ratio:.0f}x); read balanced accuracy and "
            f"macro F1 rather than accuracy, and consider class weights or collecting more examples")
