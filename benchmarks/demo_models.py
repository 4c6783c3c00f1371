"""The two demo models the shipping benchmarks export and serve: linear probes on the bundled data sets."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import headstart

ROOT = Path(__file__).resolve().parent.parent
TASKS = {"image": (ROOT / "examples" / "fashion-mnist-mini", "efficientnet_lite0"),
         "text": (ROOT / "examples" / "wordnet-supersenses", "minilm")}


def train_demo_models(folder: Path) -> dict[str, Path]:
    """Fit ``linear`` on Fashion-MNIST-mini (EfficientNet-Lite0) and WordNet supersenses (MiniLM) into
    ``folder``; features come from the default cache after the first run."""
    folders = {}
    for modality, (data, backbone) in TASKS.items():
        out = folder / modality
        if not out.is_dir():
            headstart.fit(data, backbone=backbone, out=out, progress=False)
        folders[modality] = out
    return folders


def environment() -> dict[str, object]:
    """Machine, versions, load and the exact command, for the results JSON."""
    import fastapi
    import onnxruntime
    import torch

    return {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "fastapi": fastapi.__version__, "command": " ".join(["python", *sys.argv])}
