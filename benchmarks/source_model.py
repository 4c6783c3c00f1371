"""The "develop a source model, then transfer it" workflow on real data: a backbone trained on a large related
labeled set (Fashion-MNIST) and transferred to a small different task (scikit-learn's digits), against training
from scratch on the target only and against ImageNet transfer.

- Source model: timm's ``test_resnet`` architecture (470k parameters, random initialisation) trained with the
  ``scratch`` strategy at 32 px on ``--source-per-class`` images per class of Fashion-MNIST's official train
  split (Debian package ``dataset-fashion-mnist``), measured on 200 per class of its test split. It is trained
  once and kept in ``--work`` (a temporary folder by default), so a second invocation with the same folder and
  settings reuses it.
- Target: the 8x8 digits upscaled to 32 px grey images; 100 per class are the fixed test set, 10 and 50 per
  class are drawn from the rest, 3 seeds; every contender sees the same samples (``compare`` draws them by
  size and seed).
- Contenders: ``scratch`` (the same architecture from random weights on the digits only), ``linear`` and
  ``finetune`` from the own source model (``ckpt:``), and the bundled ImageNet ``efficientnet_lite0`` linear
  probe at 64 px for reference. One ``compare`` study puts scratch and both linear probes on one learning curve
  (``--backbones ckpt:SOURCE,efficientnet_lite0``); a second one fine-tunes the source model on the same
  samples (fine-tuning efficientnet_lite0 at 64 px would cost minutes per run here).

    python benchmarks/source_model.py [--source-per-class 1200] [--source-epochs 4] [--work DIR]

Prints a table and writes benchmarks/results/source_model.json (with the README's table under
``readme_table``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

import headstart
from headstart.backbones import FeatureCache, build_backbone
from headstart.data import DataSplits, from_arrays, sample_per_class
from headstart.data.reference import load_fashion_mnist
from headstart.studies.records import RunRecord
from rank_validation import digits_splits

ARCHITECTURE = "test_resnet"
SHOTS = [10, 50]
SEEDS = 3
TARGET_TEST_PER_CLASS = 100
#: Digits has 174 to 183 images per class: what the test set leaves is the pool the training samples come from.
TARGET_POOL_PER_CLASS = 74


def train_source_model(work: Path, per_class: int, epochs: int, cache: FeatureCache) -> tuple[Path, dict]:
    """The source model folder (trained now, or by an earlier invocation with the same settings) and what its
    training measured: seconds and Fashion-MNIST test accuracy."""
    folder, record = work / f"source-{per_class}x{epochs}", work / f"source-{per_class}x{epochs}.json"
    if (folder / "config.json").is_file() and record.is_file():
        return folder, json.loads(record.read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        weights = timm.create_model(ARCHITECTURE, pretrained=False).state_dict()
    initial = work / f"{ARCHITECTURE}-random.safetensors"  # scratch re-draws them: only the architecture matters
    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, str(initial))
    images, labels, names = load_fashion_mnist("train")
    test_images, test_labels, _ = load_fashion_mnist("test")
    splits = DataSplits(train=sample_per_class(from_arrays(list(images), labels, class_names=names), per_class, seed=0),
                        test=sample_per_class(from_arrays(list(test_images), test_labels, class_names=names), 200,
                                              seed=0), source="Fashion-MNIST")
    started = time.perf_counter()
    model = headstart.fit(splits, backbone=f"timm:{ARCHITECTURE}@{initial}", strategy="scratch", out=folder,
                          force=True, image_size=32, val_fraction=0.1, progress=False, cache=cache,
                          settings={"epochs": epochs, "batch_size": 64, "refit": "never"})
    info = {"architecture": ARCHITECTURE, "image_size": 32, "n_labeled": len(splits.train), "val_fraction": 0.1,
            "epochs": epochs, "seconds": round(time.perf_counter() - started, 1),
            "source_test_accuracy": model.metrics["test"]["accuracy"]}
    record.write_text(json.dumps(info, indent=2) + "\n")
    return folder, info


def summarise(records: list[RunRecord]) -> list[dict]:
    """Mean ± std accuracy and median seconds per contender and size, with the gain over scratch."""
    summary = []
    for size in sorted({r.size for r in records}):
        mine = [r for r in records if r.size == size]
        scratch = np.mean([r.accuracy for r in mine if r.strategy == "scratch"])
        for contender in dict.fromkeys(r.strategy for r in mine):
            runs = [r for r in mine if r.strategy == contender]
            accuracy = [r.accuracy for r in runs]
            summary.append({"per_class": int(size), "contender": contender, "seeds": len(runs),
                            "accuracy": {"mean": float(np.mean(accuracy)), "std": float(np.std(accuracy))},
                            "gain_over_scratch": float(np.mean(accuracy) - scratch),
                            "seconds": float(np.median([r.seconds for r in runs]))})
    return summary


def readme_table(summary: list[dict], source_ref: str) -> dict:
    def name(contender: str) -> str:
        return contender.replace(source_ref, "ckpt:SOURCE")

    return {"columns": ["digits per class", "contender", "seeds", "test accuracy %", "vs scratch",
                        "seconds per run (median)"],
            "rows": [[str(e["per_class"]), name(e["contender"]), str(e["seeds"]),
                      f"{100 * e['accuracy']['mean']:.1f} ± {100 * e['accuracy']['std']:.1f}",
                      "—" if e["contender"] == "scratch" else f"{100 * e['gain_over_scratch']:+.1f}",
                      f"{e['seconds']:.0f}"] for e in summary]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-per-class", type=int, default=1200)
    parser.add_argument("--source-epochs", type=int, default=4)
    parser.add_argument("--work", type=Path, help="folder for the source model and features (default: temporary)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "source_model.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = args.work or Path(tempfile.mkdtemp(prefix="headstart-source-model-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(work / "cache")
    load_before = os.getloadavg()
    folder, source = train_source_model(work, args.source_per_class, args.source_epochs, cache)
    print("source model:", source, flush=True)
    own = f"ckpt:{folder}"
    target = digits_splits(TARGET_POOL_PER_CLASS, TARGET_TEST_PER_CLASS)
    study = {"shots": SHOTS, "seeds": SEEDS, "cache": cache, "progress": False}
    transfer = headstart.compare(target, strategies=["linear", "scratch"],
                                 backbone=[own, build_backbone("efficientnet_lite0", image_size=64)], **study)
    finetuned = headstart.compare(target, strategies=["finetune"], backbone=own, **study)
    records = transfer.records + [RunRecord(f"finetune ({own})", r.size, r.seed, r.n_train, r.accuracy, r.metrics,
                                            r.seconds) for r in finetuned.records]
    summary = summarise(records)
    versions = {name: importlib.metadata.version(name) for name in ("torch", "timm", "scikit-learn", "onnxruntime")}
    out = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
           "load_average_after": os.getloadavg(), "versions": versions, "source_model": source,
           "target": {"data": "sklearn digits, 8x8 upscaled to 32x32", "test_per_class": TARGET_TEST_PER_CLASS,
                      "pool_per_class": TARGET_POOL_PER_CLASS, "shots": SHOTS, "seeds": SEEDS,
                      "n_test": transfer.n_test},
           "skipped": [str(s) for s in transfer.skipped + finetuned.skipped],
           "verdicts": [v.message for v in transfer.verdicts + finetuned.verdicts], "summary": summary,
           "records": [{"contender": r.strategy, "per_class": r.size, "seed": r.seed, "accuracy": r.accuracy,
                        "seconds": r.seconds} for r in records],
           "readme_table": readme_table(summary, own)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    table = out["readme_table"]
    print("\n| " + " | ".join(table["columns"]) + " |\n|" + " --- |" * len(table["columns"]))
    for row in table["rows"]:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
