"""Training throughput and peak memory of each loop-trained strategy on the bundled backbones.

Each configuration runs in its own process (so peak RSS is its own): two epochs of ``--steps`` optimizer
steps, of which the second is timed, so one-off costs (first-call kernel setup, allocator warm-up) are left
out. Prints a table and writes ``benchmarks/results/training.json``.

    .venv/bin/python benchmarks/training.py [--steps 6] [--image-batch 16] [--text-batch 32] [--modalities image text]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from records import machine_record, write_result

RESULTS = Path(__file__).parent / "results" / "training.json"

# (label, strategy, overrides, image size or None): each measures one kind of step; rows with an image size
# are for the image backbone only, and so is the bf16 row (bf16 autocast measured 12-17x slower than fp32 for
# both backbones on this CPU, and the text row alone took several minutes).
CONFIGS = [
    ("reference: bare PyTorch step", "reference", {}, None),
    ("head only (frozen backbone)", "finetune", {"head_epochs": 2, "epochs": 0}, None),
    ("finetune (all layers)", "finetune", {"head_epochs": 0, "epochs": 2}, None),
    ("finetune at 160 px", "finetune", {"head_epochs": 0, "epochs": 2}, 160),
    ("finetune at 128 px", "finetune", {"head_epochs": 0, "epochs": 2}, 128),
    ("finetune, bf16 autocast", "finetune", {"head_epochs": 0, "epochs": 2, "precision": "bf16"}, None),
    ("l2sp", "l2sp", {"head_epochs": 0, "epochs": 2}, None),
    ("lora", "lora", {"head_epochs": 0, "epochs": 2}, None),
    ("scratch", "scratch", {"epochs": 2}, None),
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


def measure(modality: str, strategy: str, overrides: dict, steps: int, batch: int,
            image_size: int | None = None) -> dict:
    """Run one configuration in this process; returns examples/s and peak RSS."""
    from headstart.backbones import with_image_size
    from headstart.strategies import get_strategy
    from headstart.training import FitContext

    backbone = with_image_size(BACKBONES[modality], image_size)
    data = _data(modality, batch * steps)
    settings = {"batch_size": batch, "patience": None, **overrides}
    with tempfile.TemporaryDirectory() as work:
        model = get_strategy(strategy, **settings).fit(backbone, data, None, FitContext(Path(work), progress=False))
    seconds = model.metrics["train"]["history"][-1]["seconds"]  # the second epoch: steady state
    return {"examples_per_s": len(data) / seconds, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_reference(modality: str, steps: int, batch: int) -> dict:
    """The machine's ceiling: forward, backward and AdamW step of the same network on one fixed, already
    collated batch (no data loading, no loop), with the same runtime tuning and memory format."""
    import time

    from torch import nn

    from headstart.backbones import create_backbone

    backbone = create_backbone(BACKBONES[modality])
    head = nn.Linear(backbone.feature_dim, 2)
    backbone.module.train()
    params = [*backbone.module.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = backbone.collate(list(_data(modality, batch).items))
    y = torch.arange(batch) % 2
    times = []
    for _ in range(2 * steps):
        tic = time.perf_counter()
        loss = nn.functional.cross_entropy(head(backbone.forward(x)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - tic)
    seconds = sum(times[steps:])
    return {"examples_per_s": batch * steps / seconds, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="Optimizer steps per epoch.")
    parser.add_argument("--image-batch", type=int, default=16)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--modalities", nargs="+", choices=["image", "text"], default=["image", "text"],
                        help="Backbones to measure; the rows of the others are kept from the existing results.")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: JSON of a single configuration to run
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        if spec["strategy"] == "reference":
            print(json.dumps(measure_reference(spec["modality"], spec["steps"], spec["batch"])))
            return
        print(json.dumps(measure(**spec)))
        return
    rows = []
    for modality in args.modalities:
        batch = args.image_batch if modality == "image" else args.text_batch
        for label, strategy, overrides, image_size in CONFIGS:
            if modality == "text" and (image_size or "precision" in overrides):
                continue
            spec = {"modality": modality, "strategy": strategy, "overrides": overrides, "steps": args.steps,
                    "batch": batch, "image_size": image_size}
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
    if RESULTS.is_file():
        kept = [r for r in json.loads(RESULTS.read_text())["results"] if r["modality"] not in args.modalities]
        rows = sorted(kept + rows, key=lambda r: r["modality"] != "image")  # image rows first, order kept
    write_result(RESULTS, {"machine": machine_record(("torch",), threads=torch.get_num_threads(), flat_versions=True),
                           "results": rows})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
