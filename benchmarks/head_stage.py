"""Fine-tuning on a few texts: the head stage on cached features and checkpoints by time, against the old path
(the backbone run on every head-stage batch and a checkpoint after every epoch), same run, same seed.

On a handful of training examples ``min_steps`` raises each stage to ~``min_steps`` one-step epochs; the old
path ran MiniLM forward on every one of the head stage's batches and validations, and wrote a checkpoint (model,
best weights, optimizer state: hundreds of MB) after every epoch. Prints wall seconds and test accuracy of both
and writes ``benchmarks/results/head_stage.json``.

    python benchmarks/head_stage.py --per-class 2 --val-per-class 1 --min-steps 100
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from records import SHORT_LOAD_NAMES, machine_record, write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "head_stage.json"


def run(path: str, train, val, test, min_steps: int, seed: int) -> dict[str, float]:
    """Fit ``finetune`` on ``train`` along ``path`` (``"before"`` or ``"after"``); seconds and test accuracy."""
    import headstart.training.loop as loop
    from headstart.backbones import create_backbone
    from headstart.strategies import get_strategy
    from headstart.training import FitContext

    before = path == "before"
    settings = {"min_steps": min_steps, "checkpoint_seconds": 0 if before else 60}
    patch = mock.patch.object(loop, "uses_frozen_features", lambda *args: False) if before else nullcontext()
    backbone = create_backbone("minilm")
    with tempfile.TemporaryDirectory() as work, patch:
        start = time.perf_counter()
        model = get_strategy("finetune", **settings).fit(backbone, train, val, FitContext(Path(work), seed=seed,
                                                                                           progress=False))
        seconds = time.perf_counter() - start
    predicted = np.array(model.predict(test.items))
    truth = np.array(test.class_names)[test.labels]
    return {"seconds": seconds, "accuracy": 100 * float((predicted == truth).mean()),
            "epochs": len(model.metrics["train"]["history"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=2, help="training texts per class")
    parser.add_argument("--val-per-class", type=int, default=1, help="validation texts per class")
    parser.add_argument("--min-steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    from headstart.data import load_dataset
    from headstart.data.splits import sample_per_class

    splits = load_dataset(ROOT / "examples" / "wordnet-supersenses")
    pool = sample_per_class(splits.train, args.per_class + args.val_per_class, seed=args.seed)
    per_class = [np.flatnonzero(pool.labels == c) for c in range(len(pool.class_names))]
    train = pool.subset([int(i) for idx in per_class for i in idx[:args.per_class]])
    val = pool.subset([int(i) for idx in per_class for i in idx[args.per_class:]])
    load_before = os.getloadavg()
    rows = {path: run(path, train, val, splits.test, args.min_steps, args.seed) for path in ("before", "after")}
    for path, row in rows.items():
        print(f"{path:<8}{row['seconds']:8.1f} s  {row['accuracy']:5.1f}%  {row['epochs']} epochs")
    speedup = rows["before"]["seconds"] / rows["after"]["seconds"]
    print(f"speed-up {speedup:.2f}x")
    table = {"columns": ["finetune, minilm", "train texts", "wall", "test accuracy"],
             "rows": [[name, str(len(train)), f"{row['seconds']:.0f} s", f"{row['accuracy']:.1f}%"] for name, row in
                      (("before (backbone per head batch, checkpoint per epoch)", rows["before"]),
                       (f"after (cached head features, checkpoints by time): {speedup:.1f}x", rows["after"]))]}
    result = {**machine_record(("torch",), load_before=load_before, threads=torch.get_num_threads(),
                               names=SHORT_LOAD_NAMES, flat_versions=True),
              "train": len(train), "val": len(val), "min_steps": args.min_steps, "seed": args.seed, "rows": rows,
              "speedup": speedup, "readme_table": table}
    write_result(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
