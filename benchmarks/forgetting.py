"""What each strategy kept of its source backbone, next to the target accuracy it bought, per seed.

For the bundled image task (examples/fashion-mnist-mini, efficientnet_lite0) and text task
(examples/wordnet-supersenses, minilm): every strategy is fitted on ``--per-class`` examples per class (drawn
with each seed) and tested on ``--test-per-class`` examples per class of the committed test split (the same for
every seed); ``metrics["forgetting"]`` gives feature CKA, mean cosine and pairwise-similarity Spearman on the
bundled reference set (70 natural-photo views / 200 WordNet verb and adjective glosses) and source top-1
agreement for the ImageNet head. The measurement's own time is set against the training time it describes.
Prints a markdown table, the ordering check (does full fine-tuning forget more than L2-SP and LoRA?) and writes
``benchmarks/results/forgetting.json`` (with the README's table).

    .venv/bin/python benchmarks/forgetting.py --tasks image --per-class 10 --test-per-class 20 \\
        --image-size 64 --set min_steps=0 --set epochs=3 --set head_epochs=2 --merge
    .venv/bin/python benchmarks/forgetting.py --tasks text --per-class 8 --test-per-class 10 \\
        --set min_steps=0 --set epochs=2 --set head_epochs=1 --merge
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
from headstart.strategies import get_strategy
from records import print_table, write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "forgetting.json"
TASKS = {"image": (ROOT / "examples" / "fashion-mnist-mini", "efficientnet_lite0"),
         "text": (ROOT / "examples" / "wordnet-supersenses", "minilm")}
STRATEGIES = ["linear", "finetune", "gradual", "lp-ft", "lora", "l2sp"]
#: Summary columns: metric key -> README column.
COLUMNS = {"accuracy": "target accuracy", "feature_cka": "feature CKA", "source_agreement": "source top-1 kept",
           "similarity_spearman": "similarity Spearman", "seconds": "fit s", "measure_fraction": "measure / training"}


def applicable(strategy: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The ``settings`` that ``strategy``'s config takes (``head_epochs`` only for the head-first ones)."""
    fields = type(get_strategy(strategy).config).model_fields
    return {key: value for key, value in settings.items() if key in fields}


def run(task: str, strategy: str, seed: int, args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """One fit; its accuracy, forgetting measures and seconds."""
    folder, ref = TASKS[task]
    splits = load_dataset(folder)
    train = sample_per_class(splits.train, args.per_class, seed=seed)
    test = sample_per_class(splits.test, args.test_per_class, seed=0)
    backbone = with_image_size(ref, args.image_size if task == "image" else None)
    started = time.perf_counter()
    model = headstart.fit(DataSplits(train, None, test, splits.source), backbone=backbone, strategy=strategy,
                          seed=seed, progress=False, val_fraction=args.val_fraction,
                          settings=applicable(strategy, settings))
    seconds = time.perf_counter() - started
    forgetting = model.metrics["forgetting"]
    reference = forgetting.get("reference", {})
    train_seconds = model.metrics["train"].get("seconds") if "train" in model.metrics else None
    return {"task": task, "strategy": strategy, "seed": seed, "accuracy": model.metrics["test"]["accuracy"],
            "backbone_changed": forgetting["backbone_changed"],
            **{k: reference.get(k) for k in ("feature_cka", "mean_cosine", "similarity_spearman",
                                             "source_agreement", "source_kl")},
            "target_cka": forgetting.get("target", {}).get("feature_cka"),
            "seconds": round(seconds, 1), "train_seconds": train_seconds, "forgetting_seconds": forgetting["seconds"],
            "measure_fraction": forgetting["seconds"] / train_seconds if train_seconds else None}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per task and strategy."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for strategy in dict.fromkeys(r["strategy"] for r in rows if r["task"] == task):
            group = [r for r in rows if r["task"] == task and r["strategy"] == strategy]
            entry: dict[str, Any] = {"task": task, "strategy": strategy, "seeds": len(group)}
            for key in (*COLUMNS, "source_kl", "mean_cosine", "train_seconds", "forgetting_seconds"):
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


def ordering(summary: list[dict[str, Any]]) -> list[str]:
    """Per task: does full fine-tuning forget more (lower reference CKA) than L2-SP and LoRA? Said with numbers."""
    lines = []
    for task in dict.fromkeys(s["task"] for s in summary):
        by = {s["strategy"]: s for s in summary if s["task"] == task and "feature_cka" in s}
        if "finetune" not in by:
            continue
        ft = by["finetune"]
        for other in ("l2sp", "lora"):
            if other in by:
                gap = by[other]["feature_cka"] - ft["feature_cka"]
                # Within the seeds' spread, the two kept the same: no ordering to claim.
                spread = max(ft.get("feature_cka_std") or 0.0, by[other].get("feature_cka_std") or 0.0)
                verdict = ("forgets more than" if gap > spread else "does NOT forget more than")
                lines.append(f"{task}: finetune (CKA {cell(ft, 'feature_cka')}, target {ft['accuracy']:.3f}) "
                             f"{verdict} {other} (CKA {cell(by[other], 'feature_cka')}, target "
                             f"{by[other]['accuracy']:.3f}; CKA gap {gap:+.4f}, seed spread {spread:.4f})")
    return lines


def readme_table(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """The README's table: one row per task and strategy, mean ± std over seeds."""
    rows = [[s["task"], s["strategy"], str(s["seeds"]),
             *(cell(s, key, ".0f" if key == "seconds" else ".3f") for key in COLUMNS)] for s in summary]
    return {"columns": ["task", "strategy", "seeds", *COLUMNS.values()], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--per-class", type=int, default=10, help="training examples per class")
    parser.add_argument("--test-per-class", type=int, default=20, help="test examples per class")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="validation share; 0 trains every strategy on its fixed schedule without selecting "
                             "an epoch, so the whole-network stage is what is measured")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="setting=value, given to each strategy that takes it, e.g. epochs=4")
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs of other tasks already in the results file (tasks run separately, "
                             "e.g. with their own settings, in parallel)")
    parser.add_argument("--summarise-only", action="store_true",
                        help="run nothing: summarise the runs already in the results file again")
    args = parser.parse_args()
    if args.summarise_only:  # keeps every task's runs and invocations (merge), adds none
        args.tasks, args.merge = [], True
        write([], None, args)
        return
    settings = dict(pair.split("=", 1) for pair in args.settings)
    torch.set_num_threads(args.threads)
    invocation = {"command": "python benchmarks/forgetting.py " + " ".join(
        [f"--tasks {' '.join(args.tasks)}", f"--strategies {' '.join(args.strategies)}",
         f"--per-class {args.per_class}", f"--test-per-class {args.test_per_class}",
         f"--seeds {' '.join(map(str, args.seeds))}", f"--image-size {args.image_size}",
         f"--val-fraction {args.val_fraction}", f"--threads {args.threads}",
         *[f"--set {p}" for p in args.settings], *(["--merge"] if args.merge else [])]),
        "tasks": args.tasks, "load_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d", time.gmtime())}
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for task in args.tasks:
        for seed in args.seeds:
            for strategy in args.strategies:
                rows.append(run(task, strategy, seed, args, settings))
                r = rows[-1]
                print(f"{task:>5} {strategy:>9} seed {seed}: accuracy {r['accuracy']:.3f}  CKA "
                      f"{r['feature_cka'] if r['feature_cka'] is not None else float('nan'):.3f}  "
                      f"{r['seconds']} s (training {r['train_seconds']} s, measure {r['forgetting_seconds']:.1f} s)",
                      flush=True)
                invocation |= {"load_after": os.getloadavg(), "seconds": round(time.perf_counter() - started)}
                write(rows, invocation, args)  # after every run, so an interrupted benchmark keeps what it measured


def write(rows: list[dict[str, Any]], invocation: dict[str, Any] | None, args: argparse.Namespace) -> None:
    """Write the results file (with ``--merge``, next to the other tasks' runs already in it) and print the table."""
    invocations = [invocation] if invocation is not None else []
    if args.merge and RESULTS.is_file():
        previous = json.loads(RESULTS.read_text())
        rows = [r for r in previous["runs"] if r["task"] not in args.tasks] + rows
        invocations = [i for i in previous["invocations"] if not set(i["tasks"]) & set(args.tasks)] + invocations
    summary = summarise(rows)
    table = readme_table(summary)
    checks = ordering(summary)
    print_table(**table)
    print("\n".join(checks))
    write_result(RESULTS, {  # atomically: a parallel task reads it
        "invocations": invocations,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "headstart": headstart.__version__, "threads": args.threads},
        "ordering": checks, "readme_table": table, "summary": summary, "runs": rows})


if __name__ == "__main__":
    main()
