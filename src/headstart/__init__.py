"""headstart: transfer learning for small data sets.

Example:
    >>> import headstart
    >>> model = headstart.fit("examples/fashion-mnist-mini", backbone="efficientnet_lite0", out="runs/demo")
    >>> headstart.load("runs/demo").predict(["shoe.png"])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it. Imported on first use so that `import headstart` (and the CLI's
# start-up) does not pay for torch, timm and transformers until they are needed.
_PUBLIC = {
    "fit": "headstart.api",
    "load": "headstart.api",
    "evaluate": "headstart.api",
    "predict": "headstart.api",
    "rank": "headstart.api",
    "compare": "headstart.api",
    "forgetting": "headstart.api",
    "export": "headstart.shipping",
    "serve": "headstart.shipping",
    "tune": "headstart.api",
    "load_dataset": "headstart.data",
    "Dataset": "headstart.data",
    "TransferModel": "headstart.model",
    "create_backbone": "headstart.backbones",
    "list_backbones": "headstart.backbones",
    "get_strategy": "headstart.strategies",
    "list_strategies": "headstart.strategies",
    "extract_features": "headstart.backbones",
    "FeatureCache": "headstart.backbones",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'headstart' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
