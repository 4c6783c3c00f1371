"""Frozen feature extraction with an on-disk cache.

Features depend only on the backbone (weights and preprocessing) and the examples' content, so they are
keyed by ``backbone.fingerprint()`` and ``dataset.content_hash()``: a second run with another head, seed or
strategy on the same data loads them instead of recomputing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from headstart.backbones.base import Backbone
from headstart.data.base import Dataset
from headstart.io import default_cache_dir


class FeatureCache:
    """Feature matrices stored as ``.npy`` files under ``root/features/``.

    Args:
        root: Cache folder (created on first write); defaults to :func:`default_cache_dir`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    @classmethod
    def from_option(cls, cache: bool | str | Path | FeatureCache) -> FeatureCache | None:
        """The cache an API ``cache=`` argument asks for: ``True`` the default one, a folder or a cache that
        one, ``False`` none."""
        if isinstance(cache, FeatureCache):
            return cache
        return None if cache is False else cls(None if cache is True else cache)

    def path(self, backbone: Backbone, dataset: Dataset) -> Path:
        """Where the features of ``dataset`` under ``backbone`` are (or would be) stored."""
        return self.root / "features" / f"{backbone.fingerprint()}-{dataset.content_hash()}.npy"

    def load(self, backbone: Backbone, dataset: Dataset) -> np.ndarray | None:
        """Cached features, or ``None``."""
        path = self.path(backbone, dataset)
        if not path.is_file():
            return None
        features = np.load(path, allow_pickle=False)
        return features if features.shape == (len(dataset), backbone.feature_dim) else None

    def store(self, backbone: Backbone, dataset: Dataset, features: np.ndarray) -> None:
        """Save features atomically."""
        path = self.path(backbone, dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, features, allow_pickle=False)
        os.replace(tmp, path)


def extract_features(backbone: Backbone, dataset: Dataset, *, cache: FeatureCache | None = None,
                     batch_size: int = 64, progress: bool = False, label: str = "") -> np.ndarray:
    """Frozen features ``[len(dataset), backbone.feature_dim]``, from the cache when present.

    ``label`` names the split in the progress display (``"train"``).

    Example:
        >>> feats = extract_features(create_backbone("minilm"), dataset, cache=FeatureCache())
    """
    if cache is not None:
        cached = cache.load(backbone, dataset)
        if cached is not None:
            return cached
    features = backbone.embed(dataset.items, batch_size=batch_size, progress=progress, label=label)
    if cache is not None:
        cache.store(backbone, dataset, features)
    return features
