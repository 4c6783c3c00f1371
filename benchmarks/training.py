"""Training throughput and peak memory of each loop-trained strategy on the bundled backbones.

Each configuration runs a few optimizer steps in its own process (so peak RSS is its own) and reports
examples/s over the training steps. Prints a table and writes ``benchmarks/results/training.json``.

    .venv/bin/python benchmarks/training.py [--steps 4] [--image-batch 16] [--text-batch 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "training.json"

# (label, strategy, overrides): each measures one kind of step.
CONFIGS = [
    ("head only (frozen backbone)", "finetune", {"head_epochs": 1, "epochs": 0}),
    ("finetune (all layers)", "finetune", {"head_epochs": 0, "epochs": 1}),
    ("finetune, bf16 autocast", "finetune", {"head_epochs": 0, "epochs": 1, "precision": "bf16"}),
    ("finetune, no channels_last", "finetune", {"head_epochs": 0, "epochs": 1, "channels_last": False}),
    ("l2sp", "l2sp", {"head_epochs": 0, "epochs": 1}),
    ("lora", "lora", {"epochs": 1}),
    ("scratch", "scratch", {"epochs": 1}),
]
BACKBONES = {"image": "efficientnet_lite0", "text": "minilm"}


def _data(modality: str, n: int):
    import numpy as np

    from headstart.data.base import Dataset

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    if modality == "image":
        items = list(rng.integers(0, 255, size=(n, 256, 256, 3), dtype=np.uint8))
    else:
        words = ["transfer", "learning", "works", "well", "on", "small", "data", "sets", "today", "often"]
        items = [" ".join(rng.choice(words, size=24)) for _ in range(n)]
    return Dataset(items, labels, ["a", "b"], modality)


def measure(modality: str, strategy: str, overrides: dict, steps: int, batch: int) -> dict:
    """Run one configuration in this process; returns examples/s and peak RSS."""
    from headstart.backbones import create_backbone
    from headstart.strategies import FitContext, get_strategy

    backbone = create_backbone(BACKBONES[modality])
    data = _data(modality, batch * steps)
    settings = {"batch_size": batch, "patience": None, **overrides}
    with tempfile.TemporaryDirectory() as work:
        model = get_strategy(strategy, **settings).fit(backbone, data, None, FitContext(Path(work), progress=False))
    history = model.metrics["train"]["history"]
    seconds = sum(h["seconds"] for h in history)
    return {"examples_per_s": len(data) * len(history) / seconds, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--image-batch", type=int, default=16)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: JSON of a single configuration to run
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(measure(**spec)))
        return
    rows = []
    for modality in ("image", "text"):
        batch = args.image_batch if modality == "image" else args.text_batch
        for label, strategy, overrides in CONFIGS:
            if modality == "text" and "channels_last" in overrides:
                continue
            spec = {"modality": modality, "strategy": strategy, "overrides": overrides, "steps": args.steps,
                    "batch": batch}
            done = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                rows.append({**spec, "label": label, "error": done.stderr.strip().splitlines()[-1]})
            else:
                rows.append({**spec, "label": label, **json.loads(done.stdout.strip().splitlines()[-1])})
            row = rows[-1]
            unit = "images/s" if modality == "image" else "sentences/s"
            print(f"{BACKBONES[modality]:<20} {label:<30} " + (
                f"{row['examples_per_s']:7.1f} {unit:<12} peak RSS {row['peak_rss_mb']:7.0f} MB"
                if "error" not in row else f"failed: {row['error']}"), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {"platform": platform.platform(), "torch": torch.__version__,
                                               "threads": torch.get_num_threads()},
                                   "results": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
