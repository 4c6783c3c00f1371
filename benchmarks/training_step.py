"""One fine-tuning step of EfficientNet-Lite0 on CPU: forward, backward and fused AdamW, in the ways PyTorch offers.

The step is what ``finetune`` runs per batch: the bundled backbone (as headstart builds it, denormals flushed to
zero), a linear head, cross-entropy, ``loss.backward()`` and ``torch.optim.AdamW(fused=True)``. Variants, timed
side by side in interleaved rounds on the same random batch:

* ``eager, contiguous``: the module and the batch in PyTorch's default (NCHW) memory format;
* ``eager, channels_last``: what headstart trains with today (the backbone is converted when it is built);
* ``torch.compile, channels_last``: the forward, loss and backward compiled (``torch.compile`` of the step's
  model and loss; the optimizer step stays eager, as fused AdamW is already one kernel), compile time reported.

Each round times ``--steps`` steps after ``--warmup`` and keeps the median; the table shows mean ± std over rounds
and each variant's speed relative to headstart's current step.

Usage:
    python benchmarks/training_step.py --rounds 3 --steps 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from headstart.backbones import create_backbone
from records import SHORT_LOAD_NAMES, machine_record, print_table, write_result

ROOT = Path(__file__).resolve().parent.parent
CURRENT = "eager, channels_last"


def make_step(variant: str, batch: torch.Tensor, labels: torch.Tensor) -> tuple[Callable[[], float], float]:
    """A fresh backbone + head + optimizer for ``variant``, and the function running one training step (returns
    the loss); the seconds its first call took (compilation, for the compiled variant)."""
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0")
    memory = torch.contiguous_format if variant == "eager, contiguous" else torch.channels_last
    module = backbone.module.to(memory_format=memory).train()
    head = nn.Linear(backbone.feature_dim, int(labels.max()) + 1)
    model = nn.Sequential(module, head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    inputs = batch.contiguous(memory_format=memory)

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y)

    forward = torch.compile(loss_of) if variant.startswith("torch.compile") else loss_of

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = forward(inputs, labels)
        loss.backward()
        optimizer.step()
        return loss.detach().item()

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round (median kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per round, after the first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="eager, contiguous;eager, channels_last;torch.compile, channels_last",
                        help="semicolon-separated variants to time")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "training_step.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator)
    labels = torch.randint(0, 10, (args.batch_size,), generator=generator)
    variants = args.variants.split(";")
    steps, first_call = {}, {}
    for variant in variants:
        steps[variant], first_call[variant] = make_step(variant, batch, labels)
        print(f"{variant}: first step {first_call[variant]:.1f} s", flush=True)
    medians: dict[str, list[float]] = {variant: [] for variant in variants}
    for round_ in range(args.rounds):
        for variant in variants:  # interleaved, so every variant sees the same load
            for _ in range(args.warmup):
                steps[variant]()
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                steps[variant]()
                times.append(time.perf_counter() - start)
            medians[variant].append(statistics.median(times))
            print(f"round {round_} {variant}: {medians[variant][-1]:.2f} s/step", flush=True)
    reference = statistics.mean(medians[CURRENT]) if CURRENT in medians else None
    rows = []
    for variant, values in medians.items():
        mean, spread = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        ratio = f"{reference / mean:.2f}x" if reference else ""
        rows.append([variant, f"{mean:.2f} ± {spread:.2f} s", f"{args.batch_size / mean:.1f}", ratio,
                     f"{first_call[variant]:.1f} s"])
    table = {"columns": ["training step (efficientnet_lite0, 224 px, batch 32)", "seconds per step", "images/s",
                         "vs today's step", "first step"], "rows": rows}
    print_table(**table)
    result = {**machine_record(("torch",), load_before=load_before, threads=args.threads, names=SHORT_LOAD_NAMES,
                               flat_versions=True),
              "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "batch_size": args.batch_size,
              "image_size": args.image_size, "seconds_per_step": medians, "first_step_seconds": first_call,
              "readme_table": table}
    write_result(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
