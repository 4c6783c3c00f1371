"""Fitted frozen-feature heads (the linear probe's, ``auto``'s choice), remembered in the feature cache folder.

Fitting the probe cross-validates 12 values of C over 5 folds: seconds to tens of seconds of L-BFGS, most of a
re-run whose features are cached (measured on the demo: 12.8 of about 25 CPU seconds). The fit is deterministic
(one BLAS thread, seeded folds), so its result is a function of the features, the labels, the settings and the
libraries that compute it. It is stored under ``<cache>/heads/`` keyed by a hash of all of these, and a re-run
with the same inputs loads the same head, bit for bit, instead of fitting it again.

``auto``'s choice among frozen-feature heads is remembered the same way (:func:`recall_choice`,
:func:`remember_choice`): its record (what was tried, what it cost, why the winner won) is nested, so it travels
as JSON in the safetensors header beside the head's tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save
from torch import nn

from headstart.io import write_bytes

# Bumped when what is stored changes; how the probe is fitted is in the key as the fitting module's source.
_FORMAT = 3
_INFO_PREFIX = "info."
_RECORD = "record"

FittedHead = tuple[nn.Linear, dict[str, float]]


def head_key(features: np.ndarray, labels: np.ndarray, n_classes: int, settings: dict[str, Any],
             code: str = "") -> str:
    """The hash naming a probe fit: the features' and labels' bytes, the number of classes, the fit's settings,
    ``code`` (what identifies the fitting code) and the versions of numpy, scipy, scikit-learn and torch."""
    digest = hashlib.sha256(json.dumps({"format": _FORMAT, "n_classes": n_classes, "settings": settings,
                                        "code": code,
                                        "shape": features.shape, "dtype": str(features.dtype),
                                        # Read from the installed metadata: a loaded head needs neither library.
                                        "versions": [np.__version__, version("scipy"), version("scikit-learn"),
                                                     torch.__version__]}, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(features).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def recall_head(path: Path) -> FittedHead | None:
    """The head and fit information stored at ``path``, or ``None`` when there is none or it cannot be read
    (a damaged file is fitted again and overwritten)."""
    try:
        tensors = load(path.read_bytes())
        weight, bias = tensors.pop("weight"), tensors.pop("bias")
        # Stored as "info.<position>.<name>": the metrics keep the order a fresh fit gives them.
        entries = sorted((int(position), name, float(value)) for key, value in tensors.items()
                         for position, name in [key.removeprefix(_INFO_PREFIX).split(".", 1)])
    except (OSError, SafetensorError, KeyError, ValueError):
        return None
    # The same construction as a fresh fit, so the global random state advances the same way.
    return _linear(weight, bias), {name: value for _, name, value in entries}


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """A new ``nn.Linear`` holding ``weight`` and ``bias``."""
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head


def remember_head(path: Path, fitted: FittedHead) -> None:
    """Store a fitted head and its fit information (float64, so every value reads back exactly) at ``path``;
    a cache folder that cannot be written stores nothing."""
    head, info = fitted
    tensors = {"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous(),
               **{f"{_INFO_PREFIX}{position}.{name}": torch.tensor(value, dtype=torch.float64)
                  for position, (name, value) in enumerate(info.items())}}
    with contextlib.suppress(OSError):
        write_bytes(path, save(tensors))


def remembered_head(root: Path | None, fit: Callable[[], FittedHead], features: np.ndarray, labels: np.ndarray,
                    n_classes: int, settings: dict[str, Any]) -> FittedHead:
    """``fit()``'s head, loaded from ``<root>/heads/`` when the same fit was done before, else fitted and stored
    there (``root=None``: always fitted, nothing stored).

    Args:
        root: The feature cache folder, or ``None`` for no cache.
        fit: Fits the head on ``features`` and ``labels`` with ``settings``.
        features, labels, n_classes, settings: What the fit depends on (they name the stored result).
    """
    if root is None:
        return fit()
    # The source of the module that defines ``fit`` (the probe's own): a change to how it fits is a new key, so
    # an edited or upgraded headstart never loads a head the old code fitted.
    code = hashlib.sha256(Path(fit.__code__.co_filename).read_bytes()).hexdigest()
    path = root / "heads" / f"{head_key(features, labels, n_classes, settings, code)}.safetensors"
    fitted = recall_head(path)
    if fitted is None:
        fitted = fit()
        remember_head(path, fitted)
    return fitted


def source_hash(*functions: Callable[..., Any]) -> str:
    """A hash of the source files defining ``functions``: a change to how a fit is done is a new key."""
    digest = hashlib.sha256()
    for path in sorted({fn.__code__.co_filename for fn in functions}):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def recall_choice(path: Path) -> tuple[nn.Linear, dict[str, Any]] | None:
    """The head and JSON record stored at ``path`` by :func:`remember_choice`, or ``None`` when there is none
    or it cannot be read (a damaged file is fitted again and overwritten)."""
    try:
        with safe_open(str(path), framework="pt") as stored:
            record = json.loads((stored.metadata() or {})[_RECORD])
            weight, bias = stored.get_tensor("weight"), stored.get_tensor("bias")
    except (OSError, SafetensorError, KeyError, ValueError, RuntimeError):
        return None
    return _linear(weight, bias), record


def remember_choice(path: Path, head: nn.Linear, record: dict[str, Any]) -> None:
    """Store ``head`` and ``record`` (JSON: Python writes floats so that they read back exactly) at ``path``;
    a cache folder that cannot be written stores nothing."""
    tensors = {"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()}
    with contextlib.suppress(OSError):
        write_bytes(path, save(tensors, metadata={_RECORD: json.dumps(record)}))
