"""Where the linear probe's expected calibration error on the task suite comes from, and three principled changes.

On the suite's cached features (:mod:`suite`: same tasks, samples and seeds), per task and size, for the linear probe
with ``final="refit"`` and three variants:

- ``refit``: C chosen by 5-fold cross-validation, a temperature fitted on the out-of-fold predictions, the head
  refitted on all examples at that C.
- ``C x (k-1)/k``: the same C and temperature, the final head fitted with C scaled to the fold models'
  regularization per example (scikit-learn's penalty does not grow with the data: a head fitted on all examples
  at the fold's C is more confident than the fold models the temperature was fitted on).
- ``10 folds``: fold models that see 90% of the examples instead of 80%, so the temperature fitted on their
  predictions is closer to what the final head needs (twice the cross-validation time).
- ``crossfit`` (``final="crossfit"``): no refit; the head is the mean of the 5 fold models' logits at the chosen C,
  divided by the temperature fitted on exactly their out-of-fold predictions.

Besides ECE (15 bins, :func:`headstart.evaluation.calibration.expected_calibration_error`), each row has the mean
confidence minus accuracy (over- or under-confidence) and the ECE floor: the mean ECE of 5 label sets drawn from the
predicted probabilities themselves, what a perfectly calibrated head with these confidences would score on a test
set of this size. Features must be in the cache (run ``benchmarks/suite.py`` first); takes ~20 min on one thread::

    OMP_NUM_THREADS=1 python benchmarks/probe_calibration.py
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

import headstart
from headstart.backbones import FeatureCache, build_backbone, extract_features
from headstart.evaluation.calibration import expected_calibration_error
from headstart.strategies.linear import fit_linear_head
from suite import ROOT, SEEDS, TASKS, _proba, sample

VARIANTS = ("refit", "C x (k-1)/k", "10 folds", "crossfit")
FOLDS = 5


def fit_variants(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> dict[str, torch.nn.Linear]:
    """The probe's head under each variant on one training sample."""
    head, info = fit_linear_head(x, y, n_classes, seed=seed, folds=FOLDS, final="refit")
    folds = min(FOLDS, int(np.unique(y, return_counts=True)[1].min()))
    scaled, _ = fit_linear_head(x, y, n_classes, seed=seed, c=info["C"] * (folds - 1) / folds, final="refit")
    with torch.no_grad():  # the temperature fitted at the chosen C, folded in as fit_linear_head does
        scaled.weight /= info["temperature"]
        scaled.bias /= info["temperature"]
    return {"refit": head, "C x (k-1)/k": scaled,
            "10 folds": fit_linear_head(x, y, n_classes, seed=seed, folds=10, final="refit")[0],
            "crossfit": fit_linear_head(x, y, n_classes, seed=seed, folds=FOLDS, final="crossfit")[0]}


def cell_row(task: str, backbone: str, size: int, per_seed: dict[str, list[dict]]) -> dict:
    row: dict = {"task": task, "backbone": backbone, "per_class": size}
    for name, values in per_seed.items():
        for key in ("accuracy", "ece", "confidence_minus_accuracy", "ece_floor"):
            series = np.array([v[key] for v in values])
            row[f"{name}: {key}"], row[f"{name}: {key}_std"] = float(series.mean()), float(series.std(ddof=1))
        row[f"{name}: accuracy_per_seed"] = [v["accuracy"] for v in values]
    return row


def run_task(task, cache: FeatureCache) -> list[dict]:
    pool, test = task.load()
    net = build_backbone(task.backbone, image_size=task.image_size)
    pool_x, test_x = extract_features(net, pool, cache=cache), extract_features(net, test, cache=cache)
    rows = []
    for size in task.sizes:
        per_seed: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for seed in SEEDS:
            index = sample(pool.labels, size, seed)
            heads = fit_variants(pool_x[index], pool.labels[index], len(pool.class_names), seed)
            rng = np.random.default_rng(seed)
            for name, head in heads.items():
                proba = _proba(head, test_x)
                accuracy = float(np.mean(proba.argmax(axis=1) == test.labels))
                drawn = [np.array([rng.choice(len(p), p=p / p.sum()) for p in proba]) for _ in range(5)]
                per_seed[name].append({
                    "accuracy": accuracy, "ece": expected_calibration_error(proba, test.labels),
                    "confidence_minus_accuracy": float(proba.max(axis=1).mean() - accuracy),
                    "ece_floor": float(np.mean([expected_calibration_error(proba, labels) for labels in drawn]))})
        rows.append(cell_row(task.name, task.backbone, size, per_seed))
        print(f"{task.name} ({task.backbone}) {size}/class: " + ", ".join(
            f"{name} ECE {rows[-1][f'{name}: ece']:.3f}" for name in VARIANTS), flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Median and mean ECE, mean |confidence - accuracy| and mean accuracy per variant; the largest paired accuracy
    loss against ``refit`` with its seed spread."""
    out = {}
    for name in VARIANTS:
        losses = [(float(np.mean(np.subtract(r[f"{name}: accuracy_per_seed"], r["refit: accuracy_per_seed"]))),
                   r["refit: accuracy_std"], f"{r['task']} ({r['backbone']}) {r['per_class']}") for r in rows]
        out[name] = {"median_ece": float(np.median([r[f"{name}: ece"] for r in rows])),
                     "mean_ece": float(np.mean([r[f"{name}: ece"] for r in rows])),
                     "mean_abs_confidence_minus_accuracy": float(np.mean(
                         [abs(r[f"{name}: confidence_minus_accuracy"]) for r in rows])),
                     "mean_accuracy": float(np.mean([r[f"{name}: accuracy"] for r in rows])),
                     "worst_accuracy_change": min(losses)}
    out["median_ece_floor"] = float(np.median([r["refit: ece_floor"] for r in rows]))
    return out


def readme_table(rows: list[dict]) -> dict:
    columns = ["task (backbone)", "per class", "accuracy", "ECE", "ECE floor", "confidence − accuracy",
               *(f"ECE {name}" for name in VARIANTS[1:]), "crossfit accuracy", "crossfit confidence − accuracy"]
    return {"columns": columns, "rows": [
        [f"{r['task']} ({r['backbone']})", str(r["per_class"]),
         f"{100 * r['refit: accuracy']:.1f} ± {100 * r['refit: accuracy_std']:.1f}", f"{r['refit: ece']:.3f}",
         f"{r['refit: ece_floor']:.3f}", f"{r['refit: confidence_minus_accuracy']:+.3f}",
         *(f"{r[f'{name}: ece']:.3f}" for name in VARIANTS[1:]),
         f"{100 * r['crossfit: accuracy']:.1f} ± {100 * r['crossfit: accuracy_std']:.1f}",
         f"{r['crossfit: confidence_minus_accuracy']:+.3f}"] for r in rows]}


def main() -> None:
    torch.set_num_threads(1)
    load_before, started = os.getloadavg(), time.perf_counter()
    cache = FeatureCache()
    rows = [row for task in TASKS for row in run_task(task, cache)]
    result = {"command": " ".join(["python", *sys.argv]), "cpus": os.cpu_count(), "threads": 1,
              "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "seconds": round(time.perf_counter() - started, 1), "headstart": headstart.__version__,
              "seeds": list(SEEDS), "rows": rows, "summary": summary(rows), "readme_table": readme_table(rows)}
    path = ROOT / "benchmarks" / "results" / "probe_calibration.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
