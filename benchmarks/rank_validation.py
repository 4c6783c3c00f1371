"""Do transferability scores rank backbones the way trained accuracy does?

For each task (Fashion-MNIST images, scikit-learn digits upscaled to images, WordNet noun and verb supersense
definitions) and each candidate backbone (EfficientNet-Lite0 at input sizes 224/160/112/64 and cut after its
5th or 4th stage; MiniLM whole, cut to 3 or 1 of its 6 layers, or at max_length 16; averaged GloVe vectors),
this computes every score of
:mod:`headstart.transferability.scores` from frozen features of the training examples, then the held-out test accuracy
of a model trained with the target strategy on the same examples. Kendall's tau between each score and that
accuracy, over the backbones of a task, says how well the score ranks them (1: the same order).

The target accuracy is reached with ``--target``: ``finetune`` (the question the scores answer: which backbone
will be best after fine-tuning; each pair is fine-tuned with the strategy's defaults, ``--epochs`` to bound it)
or ``linear`` (the held-out accuracy of the linear probe: cheap, but then the ``linear_probe`` score,
cross-validated on the training examples, measures nearly the same thing, so its tau is an upper reference).

Usage:
    python benchmarks/rank_validation.py [--per-class 30] [--test-per-class 20] [--target finetune|linear]
Writes benchmarks/results/rank_validation.json.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.api import fit
from headstart.backbones import Backbone, create_backbone, with_image_size
from headstart.backbones.features import FeatureCache
from headstart.data import Dataset, load_dataset
from headstart.data.images import from_arrays
from headstart.data.reference import load_wordnet_supersenses
from headstart.data.splits import DataSplits, sample_per_class
from headstart.transferability.ranking import rank_backbones
from headstart.transferability.scores import SCORES, kendall_tau
from records import machine_record, write_result

ROOT = Path(__file__).resolve().parent.parent


def lite0_cut(stages: int, size: int) -> Backbone:
    """EfficientNet-Lite0 keeping only its first ``stages`` stages (no 1x1 head conv): shallower features."""
    import torch
    from torch import nn

    net = with_image_size("efficientnet_lite0", size)
    module = net.module
    module.blocks = module.blocks[:stages]
    module.conv_head, module.bn2 = nn.Identity(), nn.Identity()
    with torch.no_grad():
        net.feature_dim = module(torch.zeros(1, 3, 32, 32)).shape[1]
    net.ref = f"efficientnet_lite0[:{stages} stages]"  # its own config, so its own cache key
    net.source = None  # the ImageNet classifier reads the removed head: no LEEP/NCE
    net.extraction_engine.loaded(net)  # the cut weights are still pre-trained ones (ONNX engine)
    return net


def minilm_cut(layers: int) -> Backbone:
    """MiniLM keeping only its first ``layers`` transformer layers."""
    net = create_backbone("minilm")
    net.module.encoder.layer = net.module.encoder.layer[:layers]
    net.module.config.num_hidden_layers = layers
    net.ref = f"minilm[:{layers} layers]"
    return net


Candidates = dict[str, Callable[[], Backbone]]
IMAGE_BACKBONES: Candidates = {
    **{f"efficientnet_lite0@{size}": (lambda size=size: with_image_size("efficientnet_lite0", size))
       for size in (224, 160, 112, 64)},
    "efficientnet_lite0[:5]@160": lambda: lite0_cut(5, 160),
    "efficientnet_lite0[:4]@160": lambda: lite0_cut(4, 160),
}
TEXT_BACKBONES: Candidates = {
    "minilm": lambda: create_backbone("minilm"),
    "minilm[:3]": lambda: minilm_cut(3),
    "minilm[:1]": lambda: minilm_cut(1),
    "minilm@16 tokens": lambda: create_backbone("minilm", preprocess={"kind": "text", "max_length": 16,
                                                                      "lowercase": False}),
    "glove": lambda: create_backbone("glove"),
}


def disjoint_splits(data: Dataset, per_class: int, test_per_class: int) -> DataSplits:
    """Disjoint stratified train and test samples of one pool of labeled examples."""
    test = sample_per_class(data, test_per_class, seed=1)
    held = {id(item) for item in test.items}
    rest = data.subset([i for i, item in enumerate(data.items) if id(item) not in held])
    return DataSplits(sample_per_class(rest, per_class, seed=0), None, test, data.source)


def digits_splits(per_class: int, test_per_class: int) -> DataSplits:
    """scikit-learn's 8x8 digits, upscaled to 32x32 grey images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images / 16.0 * 255).astype(np.uint8)
    images = [np.asarray(Image.fromarray(p).resize((32, 32), Image.BICUBIC)) for p in pixels]
    data = from_arrays(images, digits.target, [str(i) for i in range(10)])
    data.source = "sklearn digits"
    return disjoint_splits(data, per_class, test_per_class)


def wordnet_verb_splits(per_class: int, test_per_class: int) -> DataSplits:
    """Definitions of WordNet verb synsets labeled with their 15 supersenses (needs Debian wordnet-base)."""
    texts, labels, names = load_wordnet_supersenses(pos="verb")
    return disjoint_splits(Dataset(texts, labels, names, "text", source="WordNet verb supersenses"),
                           per_class, test_per_class)


def folder_splits(path: Path, per_class: int, test_per_class: int) -> DataSplits:
    """A data set with train and test splits, subsampled per class."""
    splits = load_dataset(path)
    return DataSplits(sample_per_class(splits.train, per_class, seed=0), None,
                      sample_per_class(splits.test, test_per_class, seed=0), splits.source)


def evaluate_task(name: str, splits: DataSplits, candidates: Candidates, target: str, epochs: int | None,
                  cache: FeatureCache) -> dict[str, Any]:
    """Scores and target accuracy of every candidate backbone on one task, and tau per score."""
    rows = []
    for label, build in candidates.items():
        net = build()
        started = time.perf_counter()
        ranked = rank_backbones(splits.train, [net], cache=cache)
        options = {"epochs": epochs} if target == "finetune" and epochs else {}
        model = fit(splits, backbone=net, strategy=target, cache=cache, progress=False, settings=options)
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
    parser.add_argument("--target", choices=["finetune", "linear"], default="finetune",
                        help="How the target accuracy is reached (see the module docstring).")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Main-stage fine-tuning epochs with --target finetune (default: the strategy's).")
    parser.add_argument("--tasks", nargs="+", default=["fmnist", "digits", "wordnet-nouns", "wordnet-verbs"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rank_validation.json")
    args = parser.parse_args()
    cache = FeatureCache()
    n, m = args.per_class, args.test_per_class
    builders = {
        "fmnist": (lambda: folder_splits(ROOT / "examples" / "fashion-mnist-mini", n, m), IMAGE_BACKBONES),
        "digits": (lambda: digits_splits(n, m), IMAGE_BACKBONES),
        "wordnet-nouns": (lambda: folder_splits(ROOT / "examples" / "wordnet-supersenses", n, m), TEXT_BACKBONES),
        "wordnet-verbs": (lambda: wordnet_verb_splits(n, m), TEXT_BACKBONES),
    }
    unknown = sorted(set(args.tasks) - set(builders))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {sorted(builders)}")
    tasks = [(name, builders[name][0](), builders[name][1]) for name in args.tasks]
    target_text = ("held-out test accuracy of the linear probe (frozen features + logistic regression)"
                   if args.target == "linear" else
                   "held-out test accuracy after fine-tuning (the finetune strategy: head first, then all "
                   "layers with layer-wise learning rates" + (f", {args.epochs} epochs)" if args.epochs else ")"))
    print(f"target accuracy: {target_text}; {args.per_class} training / {args.test_per_class} test examples "
          "per class", flush=True)
    load_before, started = os.getloadavg(), time.perf_counter()
    results = [evaluate_task(name, splits, candidates, args.target, args.epochs, cache)
               for name, splits, candidates in tasks]
    header = f"{'task':<14}" + "".join(f"{score:>14}" for score in SCORES)
    print("\nKendall tau between each score and the target accuracy, over the backbones of each task")
    print(header)
    for result in results:
        taus = result["kendall_tau"]
        print(f"{result['task']:<14}" + "".join(f"{'n/a':>14}" if taus[s] is None else f"{taus[s]:>14.2f}"
                                                for s in SCORES))
    write_result(args.out, {**machine_record(("headstart", "torch", "timm", "transformers", "scikit-learn"),
                                             load_before=load_before),
                            "target": args.target, "target_description": target_text,
                            "candidates": {"image": list(IMAGE_BACKBONES), "text": list(TEXT_BACKBONES)},
                            "per_class": args.per_class, "test_per_class": args.test_per_class,
                            "seconds": round(time.perf_counter() - started, 1), "tasks": results})
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
