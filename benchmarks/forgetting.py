"""What each strategy kept of its source backbone, next to the target accuracy it bought, per seed.

For the bundled image task (examples/fashion-mnist-mini, efficientnet_lite0) and text task
(examples/wordnet-supersenses, minilm): every strategy is fitted on ``--per-class`` examples per class (drawn
with each seed) and tested on the committed test split; ``metrics["forgetting"]`` gives feature CKA, mean cosine
and pairwise-similarity Spearman on the bundled reference set (70 natural-photo views / 200 WordNet verb and
adjective glosses) and source top-1 agreement for the ImageNet head. The time the measurement took is recorded
next to the fit's. Prints a markdown table and writes ``benchmarks/results/forgetting.json``.

    .venv/bin/python benchmarks/forgetting.py --tasks image text --per-class 20 --seeds 0 1 2 \\
        --image-size 96 --set min_steps=40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import headstart
from headstart.backbones import with_image_size
from headstart.data import DataSplits, load_dataset, sample_per_class

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "forgetting.json"
TASKS = {"image": (ROOT / "examples" / "fashion-mnist-mini", "efficientnet_lite0"),
         "text": (ROOT / "examples" / "wordnet-supersenses", "minilm")}
STRATEGIES = ["linear", "finetune", "gradual", "lp-ft", "lora", "l2sp"]


def run(task: str, strategy: str, seed: int, args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """One fit; its accuracy, forgetting measures and seconds."""
    folder, ref = TASKS[task]
    splits = load_dataset(folder)
    train = sample_per_class(splits.train, args.per_class, seed=seed)
    backbone = with_image_size(ref, args.image_size if task == "image" else None)
    started = time.perf_counter()
    model = headstart.fit(DataSplits(train, None, splits.test, splits.source), backbone=backbone, strategy=strategy,
                          seed=seed, progress=False, settings=settings if strategy != "linear" else {})
    seconds = time.perf_counter() - started
    forgetting = model.metrics["forgetting"]
    reference = forgetting.get("reference", {})
    return {"task": task, "strategy": strategy, "seed": seed, "accuracy": model.metrics["test"]["accuracy"],
            "backbone_changed": forgetting["backbone_changed"],
            **{k: reference.get(k) for k in ("feature_cka", "mean_cosine", "similarity_spearman",
                                             "source_agreement", "source_kl")},
            "target_cka": forgetting.get("target", {}).get("feature_cka"),
            "seconds": round(seconds, 1), "forgetting_seconds": forgetting["seconds"]}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per task and strategy."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for strategy in dict.fromkeys(r["strategy"] for r in rows if r["task"] == task):
            group = [r for r in rows if r["task"] == task and r["strategy"] == strategy]
            entry: dict[str, Any] = {"task": task, "strategy": strategy, "seeds": len(group)}
            for key in ("accuracy", "feature_cka", "source_agreement", "seconds", "forgetting_seconds"):
                values = [r[key] for r in group if r[key] is not None]
                if values:
                    entry[key] = float(np.mean(values))
                    entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
            out.append(entry)
    return out


def cell(entry: dict[str, Any], key: str, fmt: str = ".3f") -> str:
    """``mean ± std`` of ``key`` in a summary entry, ``–`` when absent."""
    if key not in entry:
        return "–"
    std = entry.get(f"{key}_std")
    return f"{entry[key]:{fmt}}" + (f" ± {std:{fmt}}" if std is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="setting=value for the trained strategies, e.g. min_steps=40")
    args = parser.parse_args()
    settings = dict(pair.split("=", 1) for pair in args.settings)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    load_before = os.getloadavg()
    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            for strategy in args.strategies:
                rows.append(run(task, strategy, seed, args, settings))
                r = rows[-1]
                print(f"{task:>5} {strategy:>9} seed {seed}: accuracy {r['accuracy']:.3f}  CKA "
                      f"{r['feature_cka'] if r['feature_cka'] is not None else float('nan'):.3f}  source kept "
                      f"{r['source_agreement'] if r['source_agreement'] is not None else float('nan'):.3f}  "
                      f"{r['seconds']} s (measure {r['forgetting_seconds']:.1f} s)", flush=True)
    summary = summarise(rows)
    print("\n| task | strategy | accuracy | feature CKA (reference) | source top-1 kept | fit s | measure s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in summary:
        print(f"| {s['task']} | {s['strategy']} | {cell(s, 'accuracy')} | {cell(s, 'feature_cka')} | "
              f"{cell(s, 'source_agreement')} | {cell(s, 'seconds', '.0f')} | {cell(s, 'forgetting_seconds', '.1f')} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "python benchmarks/forgetting.py " + " ".join(
            [f"--tasks {' '.join(args.tasks)}", f"--strategies {' '.join(args.strategies)}",
             f"--per-class {args.per_class}", f"--seeds {' '.join(map(str, args.seeds))}",
             f"--image-size {args.image_size}", *[f"--set {p}" for p in args.settings]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "load_before": load_before, "load_after": os.getloadavg()},
        "summary": summary, "runs": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
