"""Linear-probe accuracy of the bundled backbones on the full reference tasks.

- Fashion-MNIST: train on N images per class from the official train split, test on the whole official test set
  (10,000 images), backbone efficientnet_lite0.
- WordNet noun supersenses (10 classes of examples/wordnet-supersenses): train on N glosses per class, test on
  every other gloss of those classes, backbones minilm and glove.

Needs the Debian packages dataset-fashion-mnist and wordnet-base (`apt-get install dataset-fashion-mnist
wordnet-base`). Prints a table and writes JSON (default benchmarks/results/linear_probe.json).

    python benchmarks/linear_probe.py --per-class 100
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import headstart
from headstart.data import DataSplits, from_arrays, from_texts
from headstart.data.reference import load_fashion_mnist, load_wordnet_supersenses
from headstart.data.splits import sample_per_class
from records import machine_record, print_table, write_result

WORDNET_CLASSES = ["noun.act", "noun.animal", "noun.artifact", "noun.body", "noun.communication", "noun.food",
                   "noun.location", "noun.person", "noun.plant", "noun.substance"]


def fashion_mnist(per_class: int, seed: int) -> DataSplits:
    train_x, train_y, names = load_fashion_mnist("train")
    test_x, test_y, _ = load_fashion_mnist("test")
    train = sample_per_class(from_arrays(list(train_x), train_y, class_names=names), per_class, seed=seed)
    test = from_arrays(list(test_x), test_y, class_names=names)
    return DataSplits(train=train, test=test, source="Fashion-MNIST")


def wordnet(per_class: int, seed: int) -> DataSplits:
    texts, labels, names = load_wordnet_supersenses(classes=WORDNET_CLASSES)
    full = from_texts(texts, [names[i] for i in labels])
    train = sample_per_class(full, per_class, seed=seed)
    chosen = set(train.items)
    rest = [i for i, text in enumerate(full.items) if text not in chosen]
    return DataSplits(train=train, test=full.subset(rest), source="WordNet noun supersenses")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "linear_probe.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for task, make, backbones in (("fashion-mnist", fashion_mnist, ["efficientnet_lite0"]),
                                  ("wordnet-supersenses", wordnet, ["minilm", "glove"])):
        splits = make(args.per_class, args.seed)
        for backbone in backbones:
            start = time.perf_counter()
            model = headstart.fit(splits, backbone=backbone, strategy="linear", seed=args.seed, progress=False)
            test = model.metrics["test"]
            rows.append({"task": task, "backbone": backbone, "n_train": len(splits.train),
                         "n_test": test["n_examples"], "accuracy": test["accuracy"],
                         "balanced_accuracy": test["balanced_accuracy"], "macro_f1": test["macro_f1"],
                         "ece": test["ece"], "seconds": round(time.perf_counter() - start, 1)})
            print(rows[-1], flush=True)

    print_table(["task", "backbone", "train", "test", "accuracy", "macro F1", "ECE", "seconds"],
                [[r["task"], r["backbone"], r["n_train"], r["n_test"], f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}",
                  f"{r['ece']:.4f}", r["seconds"]] for r in rows])
    # "load_average" is the load at the end, under the name the stored results use.
    record = machine_record(("headstart", "torch", "scikit-learn"), load_before=load_before,
                            names={"load_average_after": "load_average"})
    write_result(args.json, {**record, "per_class": args.per_class, "seed": args.seed, "rows": rows})


if __name__ == "__main__":
    main()
