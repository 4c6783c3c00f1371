"""Frozen feature extraction with an on-disk cache.

Features depend only on the backbone (weights, preprocessing, engine precision) and the examples' content, so
they are keyed by ``backbone.features_key()`` and ``dataset.content_hash()``: a second run with another head,
seed or strategy on the same data loads them instead of recomputing. A checksum beside each file makes sure that what
is loaded is what was stored; a cache folder that cannot be written only means nothing is cached. The CPU seconds
the extraction took (this process, all its threads) are stored beside them too (``.json``): what a decision that
weighs the cost of frozen features (``auto``'s fine-tuning allowance) reads, so that it comes out the same whether
the features were cached or not. CPU rather than wall time, which grows with whatever else loads the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from headstart.backbones import base
from headstart.backbones.base import Backbone
from headstart.data.base import Dataset
from headstart.errors import HeadstartWarning
from headstart.io import caching, default_cache_dir


class FeatureCache:
    """Feature matrices stored as ``.npy`` files under ``root/features/``, each with a ``.sha256`` checksum
    beside it.

    Args:
        root: Cache folder (created on first write); defaults to :func:`default_cache_dir`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.writable = True

    @classmethod
    def from_option(cls, cache: bool | str | Path | FeatureCache) -> FeatureCache | None:
        """The cache an API ``cache=`` argument asks for: ``True`` the default one, a folder or a cache that
        one, ``False`` none."""
        if isinstance(cache, FeatureCache):
            return cache
        return None if cache is False else cls(None if cache is True else cache)

    def path(self, backbone: Backbone, dataset: Dataset) -> Path | None:
        """Where the features of ``dataset`` under ``backbone`` are (or would be) stored; ``None`` where they
        are not cached (see :meth:`~headstart.backbones.base.Backbone.features_key`)."""
        key = backbone.features_key()
        return None if key is None else self.root / "features" / f"{key}-{dataset.content_hash()}.npy"

    def load(self, backbone: Backbone, dataset: Dataset) -> np.ndarray | None:
        """Cached features, or ``None`` when there are none or they fail their checksum (with a warning)."""
        path = self.path(backbone, dataset)
        if path is None:
            return None
        checksum = path.with_suffix(".sha256")
        if not (path.is_file() and checksum.is_file()):  # files from versions without checksums are redone
            return None
        content = path.read_bytes()
        if checksum.read_text().strip() != hashlib.sha256(content).hexdigest():
            warnings.warn(f"cached features {path} do not match their checksum (changed or damaged); computing "
                          "them again", HeadstartWarning, stacklevel=3)
            return None
        features = np.load(io.BytesIO(content), allow_pickle=False)
        return features if features.shape == (len(dataset), backbone.feature_dim) else None

    def cpu_seconds(self, backbone: Backbone, dataset: Dataset) -> float | None:
        """The CPU seconds extracting the cached features of ``dataset`` took, or ``None`` when not recorded."""
        path = self.path(backbone, dataset)
        try:
            record = json.loads(path.with_suffix(".json").read_text()) if path is not None else {}
            return float(record["cpu_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, backbone: Backbone, dataset: Dataset, features: np.ndarray, cpu_seconds: float | None = None
              ) -> None:
        """Save features, their checksum and (when given) the CPU seconds extracting them took, atomically; a cache
        folder that cannot be written gives one warning and is not written to again."""
        path = self.path(backbone, dataset)
        if not self.writable or path is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, features, allow_pickle=False)
        content = buffer.getvalue()
        timing = [] if cpu_seconds is None else [(path.with_suffix(".json"),
                                                  json.dumps({"cpu_seconds": cpu_seconds}).encode())]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The checksum goes first: a reader between the two renames finds no features, not a mismatch.
            for target, data in (*timing, (path.with_suffix(".sha256"), hashlib.sha256(content).hexdigest().encode()),
                                 (path, content)):
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)
        except OSError as err:
            self.writable = False
            warnings.warn(f"cannot write to the cache folder {self.root} ({err.strerror or err}); features are "
                          "not cached", HeadstartWarning, stacklevel=3)


def cache_scope(cache: FeatureCache | None) -> contextlib.AbstractContextManager[None]:
    """A block within which exported ONNX graphs go where ``cache`` keeps features (nowhere without one)."""
    return caching(cache.root if cache is not None else None)


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


def timed_features(backbone: Backbone, dataset: Dataset, *, cache: FeatureCache | None = None, batch_size: int = 64,
                   progress: bool = False, label: str = "") -> tuple[np.ndarray, float]:
    """:func:`extract_features` and the CPU seconds extracting them takes (this process): measured now, or as
    recorded when they were cached (cached features without a record are extracted again, once, to measure it)."""
    if cache is not None:
        cached, seconds = cache.load(backbone, dataset), cache.cpu_seconds(backbone, dataset)
        if cached is not None and seconds is not None:
            return cached, seconds
    if len(dataset):
        # One example first, untimed: a first run's engine set-up (an ONNX export, a session) is not extraction,
        # and a run that finds it done would otherwise measure (and plan) differently. An int8 image graph is
        # calibrated on the first images it extracts: those, not one.
        warm_up = base.CALIBRATION_EXAMPLES if backbone.engine == "int8" and backbone.modality == "image" else 1
        backbone.embed(dataset.items[:warm_up], batch_size=batch_size)
    started = time.process_time()
    features = backbone.embed(dataset.items, batch_size=batch_size, progress=progress, label=label)
    seconds = time.process_time() - started
    if cache is not None:
        cache.store(backbone, dataset, features, seconds)
    return features, seconds
