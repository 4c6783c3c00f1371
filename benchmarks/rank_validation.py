"""Do transferability scores rank backbones the way trained accuracy does?

For each task (Fashion-MNIST images, scikit-learn digits upscaled to images, WordNet supersense definitions)
and each candidate backbone (EfficientNet-Lite0 at input sizes 224/160/112/64 for images; MiniLM at
max_length 256/32/16 and averaged GloVe for text), this computes every score of
:mod:`headstart.selection` from frozen features of the training examples, then the held-out test accuracy
of a model trained with the target strategy on the same examples. Kendall's tau between each score and that
accuracy, over the backbones of a task, says how well the score ranks them (1: the same order).

The target accuracy is reached with ``--target`` (default ``linear``: the held-out accuracy of the linear
probe, because fine-tuning every pair does not fit a CPU budget; ``--target finetune`` fine-tunes each pair
for ``--epochs`` epochs). Note that with the linear target the ``linear_probe`` score (cross-validated on the
training examples) measures nearly the same thing, so its tau is an upper reference, not a fair contest.

Usage:
    python benchmarks/rank_validation.py [--per-class 30] [--test-per-class 20] [--target linear|finetune]
Writes benchmarks/results/rank_validation.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.api import fit
from headstart.backbones import create_backbone
from headstart.data import load_dataset
from headstart.data.images import from_arrays
from headstart.data.splits import DataSplits, sample_per_class
from headstart.features import FeatureCache
from headstart.ranking import rank_backbones
from headstart.selection import SCORES, kendall_tau

ROOT = Path(__file__).resolve().parent.parent
LITE0 = {"kind": "image", "crop_pct": 0.875, "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3}
IMAGE_BACKBONES = {f"efficientnet_lite0@{size}": ("efficientnet_lite0", {**LITE0, "input_size": size})
                   for size in (224, 160, 112, 64)}
TEXT_BACKBONES = {"minilm@256": ("minilm", None),
                  "minilm@32": ("minilm", {"kind": "text", "max_length": 32, "lowercase": False}),
                  "minilm@16": ("minilm", {"kind": "text", "max_length": 16, "lowercase": False}),
                  "glove": ("glove", None)}


def digits_splits(per_class: int, test_per_class: int) -> DataSplits:
    """scikit-learn's 8x8 digits, upscaled to 32x32 grey images, disjoint train and test samples."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images / 16.0 * 255).astype(np.uint8)
    images = [np.asarray(Image.fromarray(p).resize((32, 32), Image.BICUBIC)) for p in pixels]
    data = from_arrays(images, digits.target, [str(i) for i in range(10)])
    data.source = "sklearn digits"
    test = sample_per_class(data, test_per_class, seed=1)
    held = {id(item) for item in test.items}
    rest = data.subset([i for i, item in enumerate(data.items) if id(item) not in held])
    return DataSplits(sample_per_class(rest, per_class, seed=0), None, test, data.source)


def folder_splits(path: Path, per_class: int, test_per_class: int) -> DataSplits:
    """A data set with train and test splits, subsampled per class."""
    splits = load_dataset(path)
    return DataSplits(sample_per_class(splits.train, per_class, seed=0), None,
                      sample_per_class(splits.test, test_per_class, seed=0), splits.source)


def evaluate_task(name: str, splits: DataSplits, candidates: dict[str, tuple[str, dict | None]], target: str,
                  epochs: int, cache: FeatureCache) -> dict[str, Any]:
    """Scores and target accuracy of every candidate backbone on one task, and tau per score."""
    rows = []
    for label, (ref, preprocess) in candidates.items():
        net = create_backbone(ref, preprocess=preprocess)
        started = time.perf_counter()
        ranked = rank_backbones(splits.train, [net], cache=cache)
        options = {"epochs": epochs, "head_epochs": 1} if target == "finetune" else {}
        model = fit(splits, backbone=net, strategy=target, cache=cache, progress=False, **options)
        rows.append({"backbone": label, "scores": ranked.rows[0].scores,
                     "target_accuracy": model.metrics["test"]["accuracy"],
                     "seconds": round(time.perf_counter() - started, 1)})
        print(f"  {name:>10} {label:<22} accuracy {rows[-1]['target_accuracy']:.3f}  "
              + "  ".join(f"{k} {v:.3g}" for k, v in rows[-1]["scores"].items())
              + f"  ({rows[-1]['seconds']} s)", flush=True)
    taus = {}
    for score in SCORES:
        pairs = [(r["scores"][score], r["target_accuracy"]) for r in rows if score in r["scores"]]
        tau = kendall_tau(*zip(*pairs, strict=True)) if len(pairs) >= 2 else float("nan")
        taus[score] = None if np.isnan(tau) else round(tau, 3)  # nan: a constant score or accuracy
    return {"task": name, "n_train": len(splits.train), "n_test": len(splits.test), "backbones": rows,
            "kendall_tau": taus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=30, help="Training examples per class.")
    parser.add_argument("--test-per-class", type=int, default=20, help="Test examples per class.")
    parser.add_argument("--target", choices=["linear", "finetune"], default="linear",
                        help="How the target accuracy is reached (see the module docstring).")
    parser.add_argument("--epochs", type=int, default=2, help="Fine-tuning epochs with --target finetune.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rank_validation.json")
    args = parser.parse_args()
    cache = FeatureCache()
    tasks = [
        ("fmnist", folder_splits(ROOT / "examples" / "fashion-mnist-mini", args.per_class, args.test_per_class),
         IMAGE_BACKBONES),
        ("digits", digits_splits(args.per_class, args.test_per_class), IMAGE_BACKBONES),
        ("wordnet", folder_splits(ROOT / "examples" / "wordnet-supersenses", args.per_class, args.test_per_class),
         TEXT_BACKBONES),
    ]
    target_text = ("held-out test accuracy of the linear probe (frozen features + logistic regression)"
                   if args.target == "linear" else
                   f"held-out test accuracy after fine-tuning (1 head epoch + {args.epochs} epochs)")
    print(f"target accuracy: {target_text}; {args.per_class} training / {args.test_per_class} test examples "
          "per class", flush=True)
    started = time.perf_counter()
    results = [evaluate_task(name, splits, candidates, args.target, args.epochs, cache)
               for name, splits, candidates in tasks]
    header = f"{'task':<10}" + "".join(f"{score:>14}" for score in SCORES)
    print("\nKendall tau between each score and the target accuracy, over the backbones of each task")
    print(header)
    for result in results:
        taus = result["kendall_tau"]
        print(f"{result['task']:<10}" + "".join(f"{'n/a':>14}" if taus[s] is None else f"{taus[s]:>14.2f}"
                                                for s in SCORES))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"target": args.target, "target_description": target_text,
                                    "per_class": args.per_class, "test_per_class": args.test_per_class,
                                    "seconds": round(time.perf_counter() - started, 1), "tasks": results},
                                   indent=2) + "\n")
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
