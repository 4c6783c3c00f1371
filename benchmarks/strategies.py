"""Accuracy and wall time of every strategy at its default settings, side by side on the same split and seed.

Two tasks: the image task (examples/fashion-mnist-mini, efficientnet_lite0) and the text task
(examples/wordnet-supersenses, minilm), each with ``--per-class`` training examples per class drawn with
``--seed`` and the committed test split. Each strategy gets the same stratified validation share for early
stopping (``--val-fraction``), a wall-clock budget (``--max-time``, the loop stops at the end of the step that
exceeds it) and no feature cache, so every row pays for its own feature extraction. Prints a markdown table and
writes ``benchmarks/results/strategies.json``.

    .venv/bin/python benchmarks/strategies.py --tasks text image --per-class 100 \\
        --strategies linear finetune lp-ft lora scratch gradual l2sp --image-size 224 --max-time 900
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

import headstart.strategies
from records import machine_record, write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "strategies.json"
TASKS = {"image": (ROOT / "examples" / "fashion-mnist-mini", "efficientnet_lite0"),
         "text": (ROOT / "examples" / "wordnet-supersenses", "minilm")}
STRATEGIES = list(headstart.strategies.STRATEGIES)
# Resolved settings worth showing next to each result.
SHOWN = ["epochs", "head_epochs", "lr", "head_lr", "rank"]


def task_splits(task: str, per_class: int | None, seed: int):
    """The task's training subset (``per_class`` examples of every class, all when ``None``) and test split."""
    from headstart.data import DataSplits, load_dataset
    from headstart.data.splits import sample_per_class

    folder, _ = TASKS[task]
    splits = load_dataset(folder)
    train = sample_per_class(splits.train, per_class, seed=seed) if per_class else splits.train
    return DataSplits(train=train, val=None, test=splits.test, source=splits.source)


def task_backbone(task: str, image_size: int | None):
    """The task's backbone, images resized to ``image_size`` pixels when given."""
    from headstart.backbones import create_backbone

    ref = TASKS[task][1]
    backbone = create_backbone(ref)
    if task == "image" and image_size:
        backbone = create_backbone(ref, preprocess={**backbone.preprocess.to_dict(), "input_size": image_size})
    return backbone


def run_row(task: str, strategy: str, splits, backbone, args: argparse.Namespace) -> dict[str, Any]:
    """Fit one strategy; its test accuracy, seconds and the settings it resolved to."""
    import headstart

    options: dict[str, Any] = {}
    if strategy != "linear" and args.epochs is not None:
        options["epochs"] = args.epochs
    started = time.perf_counter()
    model = headstart.fit(splits, backbone=backbone, strategy=strategy, seed=args.seed, cache=False,
                          progress=False, max_time=args.max_time, val_fraction=args.val_fraction, settings=options)
    seconds = time.perf_counter() - started
    train = model.metrics.get("train", {})
    return {"task": task, "strategy": strategy, "accuracy": model.metrics["test"]["accuracy"],
            "seconds": round(seconds, 1), "n_train": model.metrics["data"]["n_train"],
            "n_val": model.metrics["data"].get("n_val"), "stop_reason": train.get("stop_reason"),
            "best_epoch": train.get("best_epoch"), "epochs_run": len(train.get("history") or []),
            "settings": {k: model.strategy_config[k] for k in SHOWN if k in model.strategy_config},
            "load_average": os.getloadavg()}


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = ["| task | strategy | test acc | seconds | epochs run | stop | settings | load avg (1 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | {r['strategy']} | failed: {r['error']} | | | | | |")
            continue
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(f"| {r['task']} | {r['strategy']} | {r['accuracy']:.1%} | {r['seconds']:.0f} | "
                     f"{r['epochs_run']} | {r['stop_reason'] or '-'} | {settings} | {r['load_average'][0]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["text", "image"],
                        help="Tasks to run, in this order.")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=STRATEGIES)
    parser.add_argument("--per-class", type=int, default=100, help="Training examples per class (0: all).")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Main-stage epochs of the loop-trained strategies (default: their own defaults).")
    parser.add_argument("--image-size", type=int, default=None,
                        help="Input size of the image backbone in pixels (default: its own, 224).")
    parser.add_argument("--max-time", type=float, default=900.0, help="Training budget per row in seconds.")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for task in args.tasks:
        splits = task_splits(task, args.per_class or None, args.seed)
        backbone = task_backbone(task, args.image_size)
        for strategy in args.strategies:
            try:
                row = run_row(task, strategy, splits, backbone, args)
            except Exception as err:  # noqa: BLE001 - one failed row must not lose the others
                row = {"task": task, "strategy": strategy, "error": f"{type(err).__name__}: {err}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_result(args.out, {
                "machine": machine_record(("torch",), threads=torch.get_num_threads(), flat_versions=True),
                "settings": {"per_class": args.per_class or "all", "epochs": args.epochs or "defaults",
                             "image_size": args.image_size or "backbone default", "max_time": args.max_time,
                             "val_fraction": args.val_fraction, "seed": args.seed},
                "results": rows})
    print(table(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
