"""The Dataset: labeled examples of one modality, validated before any long work starts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.modality import Modality, modality_spec


@dataclass
class Dataset:
    """Examples with integer labels indexing ``class_names``.

    Attributes:
        items: Image file paths (``str``) or in-memory images (``numpy`` arrays, PIL images) for the image
            modality; strings for the text modality.
        labels: ``int64`` array, one label per item, each in ``range(len(class_names))``; ``-1`` marks an
            unlabeled example (prediction inputs, unlabeled target data).
        class_names: Class names, indexed by label.
        modality: A registered modality (:data:`~headstart.data.modality.MODALITIES`).
        source: Where the data came from (a path), used in messages and reports.
    """

    items: list[Any]
    labels: np.ndarray
    class_names: list[str]
    modality: Modality
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.items) != len(self.labels):
            raise ValueError(f"{len(self.items)} items but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """The examples at ``indices``, with the same classes."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset([self.items[i] for i in idx], self.labels[idx], list(self.class_names), self.modality,
                       self.source)

    def class_counts(self) -> np.ndarray:
        """Examples per class, indexed by label."""
        return np.bincount(self.labels[self.labels >= 0], minlength=len(self.class_names))

    def content_hash(self) -> str:
        """A hash of the examples' content (file bytes for image paths, text for texts), in order.

        Labels are not part of it: features depend on content only, so relabeling reuses cached features.
        """
        digest = hashlib.sha256(self.modality.encode())
        files = bool(modality_spec(self.modality).file_suffixes)
        for item in self.items:
            digest.update(_item_bytes(item) if files else item.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()[:32]


def _item_bytes(item: Any) -> bytes:
    if isinstance(item, (str, Path)):
        return hashlib.sha256(Path(item).read_bytes()).digest()
    arr = np.asarray(item)
    return hashlib.sha256(arr.tobytes() + str(arr.shape).encode() + str(arr.dtype).encode()).digest()
