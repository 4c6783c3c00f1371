"""Frozen image features from the last two feature stages (``--preprocess stages=last2``) against the pooled
pre-logits (``stages=last``, the default), with the linear probe.

The suite's image tasks and samples (:mod:`suite`: digits and Fashion-MNIST mini, 10 and 50 per class, seeds
0-2, the same samples for every setting), ``efficientnet_lite0``. Each setting's features are extracted into a
fresh cache folder and timed in CPU seconds after a warm-up batch (the ONNX export is not counted). Which pair
of stages: besides ``last2`` (the last two block stages, 112 + 320 channels, pooled), the probe is fitted on the
other candidates, made of the two extractions' columns: the head convolution's 1280 pooled features followed by
the last block stage's 320 (the stage that feeds it), and all three::

    OMP_NUM_THREADS=1 python benchmarks/last2_stages.py --cache /tmp/last2-cache
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import suite
from headstart.backbones import FeatureCache, build_backbone, extract_features
from headstart.backbones.features import cache_scope
from headstart.evaluation import classification_metrics
from headstart.strategies.linear import fit_linear_head
from records import machine_record, print_table, write_result

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("digits", "fashion-mnist-mini", "fashion-mnist")
BACKBONE = "efficientnet_lite0"
#: The earlier of EfficientNet-Lite0's two last feature stages has 112 channels, the last 320.
EARLIER = 112
#: What the probe is fitted on: name -> features from the ``last`` and ``last2`` extractions.
FEATURES = {
    "last": lambda last, last2: last,
    "last2": lambda last, last2: last2,
    "head + last stage": lambda last, last2: np.concatenate([last, last2[:, EARLIER:]], axis=1),
    "head + last2": lambda last, last2: np.concatenate([last, last2], axis=1),
}


def extract(task: suite.Task, stages: str, cache: FeatureCache) -> dict:
    """Pool and test features of ``task`` under ``stages``, and the extraction's CPU and wall seconds."""
    pool, test = task.load()
    backbone = build_backbone(BACKBONE, image_size=task.image_size, preprocess={"stages": stages})
    with cache_scope(cache):
        backbone.embed(pool.items[:2])  # the ONNX export and session are not extraction time
        started, cpu_started = time.perf_counter(), time.process_time()
        pool_x = extract_features(backbone, pool, cache=cache, label="pool")
        test_x = extract_features(backbone, test, cache=cache, label="test")
    return {"pool": pool, "test": test, "pool_x": pool_x, "test_x": test_x, "dim": backbone.feature_dim,
            "cpu_seconds": time.process_time() - cpu_started, "seconds": time.perf_counter() - started}


def probe_rows(task: str, extracted: dict[str, dict], sizes: tuple[int, ...]) -> list[dict]:
    """The linear probe per feature setting, size and seed on the suite's samples."""
    rows = []
    pool, test = extracted["last"]["pool"], extracted["last"]["test"]
    for size in sizes:
        for name, features in FEATURES.items():
            pool_x = features(extracted["last"]["pool_x"], extracted["last2"]["pool_x"])
            test_x = features(extracted["last"]["test_x"], extracted["last2"]["test_x"])
            per_seed = []
            for seed in suite.SEEDS:
                index = suite.sample(pool.labels, size, seed)
                head, _ = fit_linear_head(pool_x[index], pool.labels[index], len(pool.class_names), seed=seed)
                with torch.no_grad():
                    proba = torch.softmax(head(torch.from_numpy(test_x).float()), dim=1).numpy()
                per_seed.append(classification_metrics(test.labels, proba, test.class_names))
            accuracy = [m["accuracy"] for m in per_seed]
            rows.append({"task": task, "per_class": size, "features": name, "feature_dim": pool_x.shape[1],
                         "n_test": len(test), "accuracy": float(np.mean(accuracy)),
                         "accuracy_std": float(np.std(accuracy, ddof=1)), "accuracy_per_seed": accuracy,
                         "macro_f1": float(np.mean([m["macro_f1"] for m in per_seed])),
                         "ece": float(np.mean([m["ece"] for m in per_seed])),
                         "feature_cpu_seconds": {k: round(v["cpu_seconds"], 1) for k, v in extracted.items()},
                         "feature_seconds": {k: round(v["seconds"], 1) for k, v in extracted.items()}})
            print(f"{task} {size}/class {name}: {100 * rows[-1]['accuracy']:.1f} ± "
                  f"{100 * rows[-1]['accuracy_std']:.1f}", flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Paired gains of each setting over ``last`` per task and size, against the seed spread."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["per_class"]), {})[r["features"]] = r
    out = {}
    for name in FEATURES:
        if name == "last":
            continue
        gains = [float(np.mean(np.subtract(by[name]["accuracy_per_seed"], by["last"]["accuracy_per_seed"])))
                 for by in cells.values()]
        spread = [max(by[name]["accuracy_std"], by["last"]["accuracy_std"]) for by in cells.values()]
        out[name] = {"mean_gain_over_last": float(np.mean(gains)), "gains": gains, "seed_std": spread,
                     "gains_above_seed_std": int(sum(g > s for g, s in zip(gains, spread, strict=True))),
                     "cells": len(gains)}
    cpu = [by["last"]["feature_cpu_seconds"] for by in cells.values()]
    out["feature_cpu_ratio_last2_to_last"] = float(np.mean([c["last2"] / c["last"] for c in cpu]))
    return out


def readme_table(rows: list[dict]) -> dict:
    """Accuracy per setting (mean ± std over seeds), the paired gain over ``last``, ECE and extraction time."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["per_class"]), {})[r["features"]] = r
    others = [n for n in FEATURES if n != "last"]

    def gain(by: dict, name: str) -> str:
        paired = 100 * np.subtract(by[name]["accuracy_per_seed"], by["last"]["accuracy_per_seed"])
        return f"{paired.mean():+.1f} ± {paired.std(ddof=1):.1f}"

    columns = ["task", "per class", *(f"accuracy {n} ({cells[next(iter(cells))][n]['feature_dim']})"
                                      for n in FEATURES),
               *(f"gain {n}" for n in others), "ECE last", "ECE last2", "feature CPU s last", "feature CPU s last2"]
    body = [[task, str(size), *(f"{100 * by[n]['accuracy']:.1f} ± {100 * by[n]['accuracy_std']:.1f}"
                                for n in FEATURES),
             *(gain(by, n) for n in others), f"{by['last']['ece']:.3f}", f"{by['last2']['ece']:.3f}",
             f"{by['last']['feature_cpu_seconds']['last']:.0f}", f"{by['last']['feature_cpu_seconds']['last2']:.0f}"]
            for (task, size), by in cells.items()]
    return {"columns": columns, "rows": body}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="a fresh feature cache folder, so every "
                                                                   "setting's extraction is timed")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "last2_stages.json")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks to run; the rows of the "
                        "others are kept from --json when it exists")
    args = parser.parse_args()
    run = args.tasks.split(",")
    torch.set_num_threads(1)
    load_before, started = os.getloadavg(), time.perf_counter()
    cache = FeatureCache(args.cache)
    rows = [r for r in json.loads(args.json.read_text())["rows"] if r["task"] not in run] if args.json.exists() else []
    for task in (t for t in suite.TASKS if t.name in run):
        extracted = {stages: extract(task, stages, cache) for stages in ("last", "last2")}
        rows += probe_rows(task.name, extracted, task.sizes)
    table = readme_table(rows)
    write_result(args.json, {**machine_record(("headstart", "torch", "timm"), load_before=load_before, threads=1),
                             "seconds": round(time.perf_counter() - started, 1), "seeds": list(suite.SEEDS),
                             "backbone": BACKBONE, "rows": rows, "summary": summary(rows), "readme_table": table})
    print_table(**table)


if __name__ == "__main__":
    main()
