"""Choosing `contrastive`'s defaults on data benchmarks/fewshot.py does not report: 8 examples per class drawn
with other seeds (100, 101) from the training pools of the WordNet nouns and verbs, scored on the rest of those
pools (up to 30 per class, never the test splits), and Debian's fortunes (benchmarks/suite.py's task, scored on
its 50 per class test set, a task the few-shot benchmark does not have).

Each tuning variant (loss, passes) is trained once per sample; its tuned weights are then averaged with the
pretrained ones (WiSE-FT) at several weights, each scored with the linear probe refitted on the averaged
backbone's embeddings (weight 0 is the frozen backbone's linear probe). Rows go to --rows (JSONL, skipped when
done), the table to benchmarks/results/fewshot_selection.json.

    OMP_NUM_THREADS=1 python benchmarks/fewshot_selection.py --seeds 100 101 --variants supcon-20

takes about 2.5 CPU minutes per task and seed for ``supcon-20`` (20 passes, the default number; 60 passes cost
about 3x) on one core, ``cosine-20`` (SetFit's cosine pair loss) about as much; fortunes' longer texts cost 4-7
CPU minutes a seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot import ROOT, verb_splits
from headstart.backbones import build_backbone
from headstart.data import Dataset, load_dataset
from headstart.data.splits import sample_per_class
from headstart.strategies import get_strategy
from headstart.strategies.contrastive import interpolate_weights
from headstart.strategies.linear import fit_linear_head
from headstart.training import FitContext
from suite import _fortunes

RESULTS = Path(__file__).parent / "results"
# Explicit loss and no averaging: the weights below are applied here, whatever the strategy's defaults become.
VARIANTS = {f"{loss}-{passes}": {"loss": loss, "passes": float(passes), "interpolate": 1.0}
            for loss in ("supcon", "cosine") for passes in (20, 60)}
WEIGHTS = (1.0, 0.75, 0.5, 0.0)
SHOTS = 8
VALIDATION_PER_CLASS = 30


def pool_and_validation(task: str, seed: int) -> tuple[Dataset, Dataset]:
    """The ``SHOTS``-per-class training sample (``seed``) of ``task`` and the examples it is scored on."""
    if task == "fortunes":
        pool, test = _fortunes()
        return sample_per_class(pool, SHOTS, seed=seed), test
    pool = verb_splits().train if task == "verb" else load_dataset(ROOT / "examples" / "wordnet-supersenses").train
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for label in range(len(pool.class_names)):
        index = rng.permutation(np.flatnonzero(pool.labels == label))
        train.extend(index[:SHOTS])
        validation.extend(index[SHOTS:SHOTS + VALIDATION_PER_CLASS])
    return pool.subset(sorted(train)), pool.subset(sorted(validation))


def probe_accuracy(backbone, train: Dataset, validation: Dataset, seed: int) -> float:
    """Validation accuracy of the linear probe (C by cross-validation) on ``backbone``'s embeddings."""
    head, _ = fit_linear_head(backbone.embed(train.items), train.labels, len(train.class_names), seed=seed)
    with torch.no_grad():
        logits = head(torch.from_numpy(backbone.embed(validation.items)).float())
    return float(np.mean(logits.argmax(1).numpy() == validation.labels))


def run_sample(task: str, seed: int, variant: str) -> list[dict[str, Any]]:
    """Tune ``variant`` on one sample; one row per WiSE-FT weight."""
    train, validation = pool_and_validation(task, seed)
    pretrained = build_backbone("minilm")
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        context = FitContext(Path(folder) / "run", seed=seed, cache=None, progress=False)
        tuned = get_strategy("contrastive", **VARIANTS[variant]).fit(pretrained, train, None, context).backbone
    tuning_cpu = time.process_time() - cpu
    rows = []
    for weight in WEIGHTS:
        averaged = copy.deepcopy(tuned)
        interpolate_weights(averaged, pretrained, weight)
        rows.append({"task": task, "seed": seed, "variant": variant, "interpolate": weight,
                     "accuracy": probe_accuracy(averaged, train, validation, seed), "tuning_cpu_seconds": tuning_cpu,
                     "n_validation": len(validation), "loadavg": os.getloadavg()})
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Mean validation accuracy per (task, variant, weight) over the seeds done, and the mean over tasks."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["interpolate"], row["task"]), []).append(row["accuracy"])
    lines = []
    for variant in VARIANTS:
        for weight in WEIGHTS:
            cells = {task: statistics.mean(groups[(variant, weight, task)]) * 100
                     for task in ("noun", "verb", "fortunes") if (variant, weight, task) in groups}
            if cells:
                lines.append(f"{variant:<10} w={weight:<5} " + "  ".join(f"{t} {v:5.1f}" for t, v in cells.items())
                             + f"  | mean {statistics.mean(cells.values()):5.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[100, 101])
    parser.add_argument("--tasks", nargs="+", default=["noun", "verb", "fortunes"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rows", type=Path, default=RESULTS / "fewshot_selection_rows.jsonl")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    for seed in [] if args.summary_only else args.seeds:
        for task in args.tasks:
            for variant in args.variants:
                done = [json.loads(line) for line in args.rows.read_text().splitlines()] if args.rows.exists() else []
                if any((r["task"], r["seed"], r["variant"]) == (task, seed, variant) for r in done):
                    continue
                rows = run_sample(task, seed, variant)
                with args.rows.open("a") as handle:
                    handle.writelines(json.dumps(row) + "\n" for row in rows)
                print(task, seed, variant, [f"{r['interpolate']}: {r['accuracy']:.3f}" for r in rows],
                      f"{rows[0]['tuning_cpu_seconds']:.0f} CPU s", flush=True)
    rows = [json.loads(line) for line in args.rows.read_text().splitlines()]
    lines = table(rows)
    print("\n".join(lines))
    (RESULTS / "fewshot_selection.json").write_text(json.dumps(
        {"command": " ".join([Path(sys.executable).name, *sys.argv]), "table": lines, "rows": rows,
         "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count(),
         "torch_threads": 1}, indent=2) + "\n")


if __name__ == "__main__":
    main()
