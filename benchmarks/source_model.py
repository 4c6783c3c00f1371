"""The "develop a source model, then transfer it" workflow on real data: a backbone trained on a large labeled
set and transferred to a small task, against training from scratch on the task only and against ImageNet
transfer, on two targets.

- ``digits``: the source model is trained on all 10 Fashion-MNIST classes (official train split, Debian package
  ``dataset-fashion-mnist``) and transferred to scikit-learn's 8x8 digits upscaled to 32 px grey images; 100 per
  class are the fixed test set and the training samples come from the rest (74 per class). A source that is
  only loosely related: clothing silhouettes against handwritten strokes.
- ``fashion-split``: the classic "develop a model" setup, where a related source really exists. Fashion-MNIST's
  classes are split by class: the source model learns the six classes T-shirt/top, trouser, pullover, dress,
  coat and sandal; the target is the other four, shirt, sneaker, bag and ankle boot. Both sides are
  non-trivial: the source holds the four look-alike tops (T-shirt, pullover, coat, dress) that make
  Fashion-MNIST hard, and the target still has to tell a shirt from the tops-like bag silhouette and a sneaker
  from an ankle boot, with the source knowing tops and one kind of footwear (sandal) but not these classes
  themselves. The target's training samples come from a pool of 200 per class of the train split's target
  classes (disjoint from the source by class), its fixed test set is 200 per class of the official test
  split's target classes.

Every target is measured at 10 and 50 labeled examples per class (``--shots``), 3 seeds, every contender on the
same samples (``compare`` draws them by size and seed):

- ``scratch``: the source model's architecture (timm's 470k-parameter ``test_resnet``) from random weights,
  trained on the target only;
- ``linear`` and ``finetune`` from the own source model (``ckpt:``);
- the bundled ImageNet ``efficientnet_lite0`` linear probe at 64 px, for reference.

One ``compare`` study puts scratch and both linear probes on one learning curve
(``--backbones ckpt:SOURCE,efficientnet_lite0``); a second one fine-tunes the source model on the same samples
(fine-tuning efficientnet_lite0 at 64 px would cost minutes per run here). The source model is trained with
the ``scratch`` strategy at 32 px on ``--source-per-class`` images of each of its classes for
``--source-epochs`` epochs, measured on 200 per class of the test split, and kept in ``--work`` (a temporary
folder by default), so a later invocation with the same folder and settings reuses it.

    OMP_NUM_THREADS=1 python benchmarks/source_model.py [--targets digits fashion-split] [--shots 10 50]
        [--source-per-class 6000] [--source-epochs 10] [--work DIR]

Each invocation replaces the runs it measured (per target and size) in benchmarks/results/source_model.json and
keeps the others, so the targets and sizes can be measured in separate invocations; the file records each
invocation's command, date and load, and the README's table (``readme_table``) covers every target.
Runtime of ``--source-per-class 6000 --source-epochs 10`` on 2 shared cores at load 3 to 8, one thread: 45
minutes for both targets (source models 16 minutes for 6 classes, 21 for 10; each scratch or fine-tuning run
10 to 25 s, the linear probes seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

import headstart
from headstart.backbones import FeatureCache, build_backbone
from headstart.data import Dataset, DataSplits, from_arrays, sample_per_class
from headstart.data.reference import load_fashion_mnist
from headstart.studies.records import RunRecord
from headstart.studies.statistics import transfer_verdict
from rank_validation import digits_splits
from records import machine_record, package_versions, print_table, write_result

ARCHITECTURE = "test_resnet"
PACKAGES = ("torch", "timm", "scikit-learn", "onnxruntime")  # whose versions the results record
SEEDS = 3
SOURCE_LABEL = "ckpt:SOURCE"
#: Fashion-MNIST class indices of the class-split target (shirt, sneaker, bag, ankle boot); the rest are the source.
SPLIT_TARGET_CLASSES = (6, 7, 8, 9)
SPLIT_POOL_PER_CLASS, SPLIT_TEST_PER_CLASS = 200, 200
#: Digits has 174 to 183 images per class: what the 100-per-class test set leaves is the training pool.
DIGITS_POOL_PER_CLASS, DIGITS_TEST_PER_CLASS = 74, 100


def fashion_classes(split: str, classes: tuple[int, ...], per_class: int) -> Dataset:
    """``per_class`` images of each of Fashion-MNIST's ``classes`` from ``split`` (seed 0), relabelled 0..n-1."""
    images, labels, names = load_fashion_mnist(split)
    keep = np.flatnonzero(np.isin(labels, classes))
    relabelled = np.searchsorted(np.asarray(classes), labels[keep])
    data = from_arrays(list(images[keep]), relabelled, class_names=[names[c] for c in classes])
    return sample_per_class(data, per_class, seed=0)


def split_target() -> DataSplits:
    """The class-split target: shirt, sneaker, bag and ankle boot (pool from train, test from test)."""
    return DataSplits(train=fashion_classes("train", SPLIT_TARGET_CLASSES, SPLIT_POOL_PER_CLASS),
                      test=fashion_classes("test", SPLIT_TARGET_CLASSES, SPLIT_TEST_PER_CLASS),
                      source="Fashion-MNIST shirt, sneaker, bag, ankle boot")


#: name: (the source model's Fashion-MNIST classes, the target's splits, what the target is)
TARGETS: dict[str, tuple[tuple[int, ...], Callable[[], DataSplits], str]] = {
    "digits": (tuple(range(10)), lambda: digits_splits(DIGITS_POOL_PER_CLASS, DIGITS_TEST_PER_CLASS),
               f"sklearn digits, 8x8 upscaled to 32x32; {DIGITS_TEST_PER_CLASS}/class test, "
               f"{DIGITS_POOL_PER_CLASS}/class pool"),
    "fashion-split": (tuple(c for c in range(10) if c not in SPLIT_TARGET_CLASSES), split_target,
                      f"Fashion-MNIST shirt, sneaker, bag, ankle boot: {SPLIT_POOL_PER_CLASS}/class pool from the "
                      f"train split, {SPLIT_TEST_PER_CLASS}/class of the test split; source: the other 6 classes"),
}


def train_source_model(work: Path, classes: tuple[int, ...], per_class: int, epochs: int, cache: FeatureCache
                       ) -> tuple[Path, dict]:
    """The source model folder (trained now, or by an earlier invocation with the same settings) and what its
    training measured: seconds and test accuracy on its classes of Fashion-MNIST."""
    name = f"source-{''.join(map(str, classes))}-{per_class}x{epochs}"
    folder, record = work / name, work / f"{name}.json"
    if (folder / "config.json").is_file() and record.is_file():
        return folder, json.loads(record.read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        weights = timm.create_model(ARCHITECTURE, pretrained=False).state_dict()
    initial = work / f"{ARCHITECTURE}-random.safetensors"  # scratch re-draws them: only the architecture matters
    save_file({key: tensor.contiguous() for key, tensor in weights.items()}, str(initial))
    splits = DataSplits(train=fashion_classes("train", classes, per_class),
                        test=fashion_classes("test", classes, 200), source="Fashion-MNIST")
    started, cpu = time.perf_counter(), time.process_time()
    model = headstart.fit(splits, backbone=f"timm:{ARCHITECTURE}@{initial}", strategy="scratch", out=folder,
                          force=True, image_size=32, val_fraction=0.1, progress=False, cache=cache,
                          settings={"epochs": epochs, "batch_size": 64, "refit": "never"})
    info = {"architecture": ARCHITECTURE, "image_size": 32, "classes": splits.train.class_names,
            "n_labeled": len(splits.train), "val_fraction": 0.1, "epochs": epochs,
            "seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "source_test_accuracy": model.metrics["test"]["accuracy"]}
    record.write_text(json.dumps(info, indent=2) + "\n")
    return folder, info


def measure(target: DataSplits, own: str, shots: list[int], cache: FeatureCache) -> tuple[list[dict], list[str]]:
    """Every contender's runs on ``target`` (contenders named with ``ckpt:SOURCE``) and the skipped runs."""
    study = {"shots": shots, "seeds": SEEDS, "cache": cache, "progress": False}
    transfer = headstart.compare(target, strategies=["linear", "scratch"],
                                 backbone=[own, build_backbone("efficientnet_lite0", image_size=64)], **study)
    finetuned = headstart.compare(target, strategies=["finetune"], backbone=own, **study)
    runs = [(r.strategy, r) for r in transfer.records] + [(f"finetune ({own})", r) for r in finetuned.records]
    records = [{"contender": name.replace(own, SOURCE_LABEL), "per_class": int(r.size), "seed": r.seed,
                "n_train": r.n_train, "accuracy": r.accuracy, "seconds": r.seconds} for name, r in runs]
    return records, [str(s) for s in transfer.skipped + finetuned.skipped]


def summarise(records: list[dict]) -> tuple[list[dict], list[str]]:
    """Mean ± std accuracy and median seconds per contender and size, with the gain over scratch; and each
    transfer contender's verdict against scratch (Welch's t-test over the seeds)."""
    summary = []
    for size in sorted({r["per_class"] for r in records}):
        mine = [r for r in records if r["per_class"] == size]
        scratch = np.mean([r["accuracy"] for r in mine if r["contender"] == "scratch"])
        for contender in dict.fromkeys(r["contender"] for r in mine):
            accuracy = [r["accuracy"] for r in mine if r["contender"] == contender]
            summary.append({"per_class": size, "contender": contender, "seeds": len(accuracy),
                            "accuracy": {"mean": float(np.mean(accuracy)), "std": float(np.std(accuracy))},
                            "gain_over_scratch": float(np.mean(accuracy) - scratch),
                            "seconds": float(np.median([r["seconds"] for r in mine if r["contender"] == contender]))})
    runs = [RunRecord(r["contender"], r["per_class"], r["seed"], r["n_train"], r["accuracy"]) for r in records]
    verdicts = [transfer_verdict(runs, name).message for name in dict.fromkeys(r.strategy for r in runs)
                if name != "scratch"]
    return summary, verdicts


def readme_table(targets: dict[str, dict]) -> dict:
    """Every target's summary as one table (cells formatted)."""
    return {"columns": ["target", "per class", "contender", "seeds", "test accuracy %", "vs scratch",
                        "seconds per run (median)"],
            "rows": [[name, str(e["per_class"]), e["contender"], str(e["seeds"]),
                      f"{100 * e['accuracy']['mean']:.1f} ± {100 * e['accuracy']['std']:.1f}",
                      "—" if e["contender"] == "scratch" else f"{100 * e['gain_over_scratch']:+.1f}",
                      f"{e['seconds']:.0f}"] for name, entry in targets.items() for e in entry["summary"]]}


def run_target(name: str, args: argparse.Namespace, work: Path, cache: FeatureCache, earlier: dict) -> dict:
    """Measure one target at ``args.shots`` and merge the runs with ``earlier`` ones at other sizes."""
    classes, splits, description = TARGETS[name]
    load_before, started = os.getloadavg(), time.perf_counter()
    folder, source = train_source_model(work, classes, args.source_per_class, args.source_epochs, cache)
    print(f"{name}: source model {source}", flush=True)
    same = ("classes", "n_labeled", "epochs")
    if earlier and any(earlier["source_model"].get(key) != source[key] for key in same):
        earlier = {}  # runs from another source model do not belong in the same table
    records, skipped = measure(splits(), f"ckpt:{folder}", args.shots, cache)
    kept = [r for r in earlier.get("records", []) if r["per_class"] not in args.shots]
    records = sorted(kept + records, key=lambda r: r["per_class"])
    summary, verdicts = summarise(records)
    invocation = {**machine_record(PACKAGES, load_before=load_before, threads=torch.get_num_threads(),
                                   names={"threads": "torch_threads"}),
                  "shots": args.shots, "seconds": round(time.perf_counter() - started, 1)}
    invocations = [i for i in earlier.get("invocations", []) if set(i["shots"]) - set(args.shots)]
    return {"target": description, "source_model": source, "seeds": SEEDS, "invocations": invocations + [invocation],
            "skipped": skipped, "verdicts": verdicts, "summary": summary, "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--shots", nargs="+", type=int, default=[10, 50], help="labeled target examples per class")
    parser.add_argument("--source-per-class", type=int, default=6000, help="source images per class "
                        "(Fashion-MNIST's train split has 6000)")
    parser.add_argument("--source-epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, help="folder for the source model and features (default: temporary)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "source_model.json")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="headstart-source-model-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(work / "cache")
    out = json.loads(args.json.read_text()) if args.json.is_file() else {"targets": {}}
    for name in args.targets:
        out["targets"][name] = run_target(name, args, work, cache, out["targets"].get(name, {}))
        out |= {"cpus": os.cpu_count(), "versions": package_versions(PACKAGES),
                "readme_table": readme_table(out["targets"])}
        write_result(args.json, out)  # after each target: a later failure keeps it
    print_table(**out["readme_table"])


if __name__ == "__main__":
    main()
