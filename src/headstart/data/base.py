"""The Dataset: labeled examples of one modality, validated before any long work starts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.modality import Modality, modality_spec
from headstart.display import MAX_ROWS, html_table
from headstart.errors import listing


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

    def __repr__(self) -> str:
        return (f"Dataset({self.modality}, {len(self)} examples, {len(self.class_names)} classes: "
                f"{listing(self.class_names, limit=5)}; source {self.source!r})")

    def _repr_html_(self) -> str:
        counts = self.class_counts()
        unlabeled = int((self.labels < 0).sum())
        caption = (f"{self.modality.capitalize()} data from {self.source}: {len(self)} examples of "
                   f"{len(self.class_names)} classes" + (f", {unlabeled} unlabeled." if unlabeled else "."))
        rows = sorted(zip(self.class_names, counts.tolist(), strict=True), key=lambda row: -row[1])
        return html_table(["class", "examples"], rows, limit=MAX_ROWS, caption=caption)

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
