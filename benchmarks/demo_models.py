"""The two demo models the shipping benchmarks export and serve: linear probes on the bundled data sets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import headstart
from records import machine_record

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
            headstart.fit(data, backbone=backbone, strategy="linear", out=out, progress=False)
        folders[modality] = out
    return folders


def environment(load_before: Sequence[float]) -> dict[str, object]:
    """Machine, versions (of the shipping stack), load and the exact command, for the results JSON."""
    import torch

    return machine_record(("torch", "onnxruntime", "fastapi"), load_before=load_before,
                          threads=torch.get_num_threads(), flat_versions=True)
