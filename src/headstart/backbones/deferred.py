"""Backbones whose network is built when first used, and their weights' fingerprints memoised on disk.

A re-run whose features are cached needs a backbone's fingerprint (the cache key), its configuration and its
feature size, but not its network: building the bundled EfficientNet-Lite0 imports timm and torchvision, creates
the model and remaps and loads its weights, seconds on a loaded 2-core machine. A family that knows its feature
size and preprocessing up front hands the backbone a :class:`DeferredModule` instead of a module; the module is
built the first time something uses it, and until then the fingerprint comes from
``<cache>/fingerprints/``, keyed by the weights files' paths, sizes and modification times (computed, by
building the module and hashing its weights, the first time those files are seen).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from headstart.io import cache_dir, write_bytes

_FINGERPRINT = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class DeferredModule:
    """A backbone's network, built with its pre-trained weights when first used.

    Attributes:
        build: Builds the module with its weights loaded (picklable: a module-level function or a partial of one,
            as backbones are deep-copied before training).
        files: The weights files ``build`` reads.
        versions: What else decides the loaded tensors (e.g. ``"timm==1.0.31"``, whose names they take).
        source_head: Whether the built module carries its pre-training classifier
            (:meth:`~headstart.backbones.base.Backbone.source_head`).
    """

    build: Callable[[], nn.Module]
    files: tuple[Path, ...]
    versions: tuple[str, ...] = ()
    source_head: bool = False


def memoised_fingerprint(deferred: DeferredModule, config: str, compute: Callable[[], str]) -> str:
    """The fingerprint of the weights ``deferred`` builds under ``config``, read from ``<cache>/fingerprints/``
    when these files (same paths, sizes and modification times) were fingerprinted before; else ``compute()``
    (which builds the module), stored there. With no cache folder in effect, always ``compute()``."""
    root = cache_dir()
    if root is None:
        return compute()
    try:
        files = [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in deferred.files]
    except OSError:  # a missing file: building reports it
        return compute()
    key = hashlib.sha256(json.dumps([files, list(deferred.versions), config]).encode()).hexdigest()[:32]
    path = root / "fingerprints" / f"{key}.txt"
    try:
        stored = path.read_text().strip()
        if _FINGERPRINT.fullmatch(stored):
            return stored
    except OSError:
        pass
    fingerprint = compute()
    with contextlib.suppress(OSError):  # a cache folder that cannot be written only means nothing is memoised
        write_bytes(path, fingerprint.encode())
    return fingerprint
