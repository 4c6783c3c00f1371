"""Rebuild the committed demo data sets from the Debian packages and FSDD, with fixed seeds.

    apt-get install dataset-fashion-mnist wordnet-base
    python examples/make_datasets.py [--only fsdd-mini]

- ``examples/fashion-mnist-mini/``: ``train/<class>/*.png`` (100 per class, official train split) and
  ``test/<class>/*.png`` (50 per class, official test split); file names are the image's index in its split.
- ``examples/wordnet-supersenses/``: ``train.csv`` (100 per class) and ``test.csv`` (50 per class), columns
  ``text,label``: noun synset definitions and their supersense.
- ``examples/fashion-mnist-lowcontrast/``: a domain shift of ``fashion-mnist-mini``: images of the official
  test split that the mini set does not use, rendered at low contrast on a grey background
  (``96 + 0.35 * pixel``); ``target/*.png`` (20 per class, unlabeled: no class folders) and
  ``test/<class>/*.png`` (20 per class).
- ``examples/wordnet-usage/``: a domain shift of ``wordnet-supersenses``: the usage examples quoted in the
  glosses instead of the definitions, same supersenses; ``target.csv`` (column ``text`` only) and
  ``test.csv`` (``text,label``), each 30 per class (11 plant and 19 animal texts: all there are).
- ``examples/fsdd-mini/``: ``train/<digit>/*.wav`` (speaker george, 5 per digit) and ``test/<digit>/*.wav``
  (speaker jackson, 20 per digit), copied unchanged from the Free Spoken Digit Dataset (``HEADSTART_FSDD``):
  a speaker-independent test.

The README and LICENSE files next to the data are written by hand and left alone.
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from headstart.data.reference import load_fashion_mnist, load_fsdd, load_wordnet_supersenses

EXAMPLES = Path(__file__).resolve().parent
SEED = 0
FASHION_PER_CLASS = {"train": 100, "test": 50}
WORDNET_PER_CLASS = {"train": 100, "test": 50}
FSDD_PER_DIGIT = {"train": ("george", 5), "test": ("jackson", 20)}
SHIFT_PER_CLASS = {"fashion": 20, "wordnet": 30}  # per class, in each of the target and the test set
WORDNET_CLASSES = ["noun.act", "noun.animal", "noun.artifact", "noun.body", "noun.communication", "noun.food",
                   "noun.location", "noun.person", "noun.plant", "noun.substance"]


def folder_name(class_name: str) -> str:
    """A filesystem-safe class folder name: ``"T-shirt/top"`` -> ``"t-shirt_top"``."""
    return class_name.lower().replace("/", "_").replace(" ", "_")


def fashion_mnist_sample() -> dict[str, dict[int, np.ndarray]]:
    """The official-split indices of ``fashion-mnist-mini``, per split and label (a seeded sample)."""
    rng = np.random.default_rng(SEED)
    chosen: dict[str, dict[int, np.ndarray]] = {}
    for split, per_class in FASHION_PER_CLASS.items():
        labels = load_fashion_mnist(split)[1]
        chosen[split] = {label: np.sort(rng.choice(np.flatnonzero(labels == label), per_class, replace=False))
                         for label in range(len(np.unique(labels)))}
    return chosen


def make_fashion_mnist(out: Path) -> None:
    """Write ``out/{train,test}/<class>/<index>.png``, a seeded sample per class of each official split."""
    for split, per_label in fashion_mnist_sample().items():
        images, _, class_names = load_fashion_mnist(split)
        shutil.rmtree(out / split, ignore_errors=True)
        for label, name in enumerate(class_names):
            folder = out / split / folder_name(name)
            folder.mkdir(parents=True)
            for index in per_label[label]:
                Image.fromarray(images[index], mode="L").save(folder / f"{index:05d}.png", optimize=True)


def low_contrast(image: np.ndarray) -> np.ndarray:
    """Fashion-MNIST's white-on-black rendering at low contrast on a grey background: ``96 + 0.35 * pixel``."""
    return np.round(96 + 0.35 * image.astype(np.float64)).astype(np.uint8)


def make_fashion_lowcontrast(out: Path) -> None:
    """Write ``out/target/<index>.png`` (unlabeled) and ``out/test/<class>/<index>.png``: official test images
    that ``fashion-mnist-mini`` does not hold, rendered by :func:`low_contrast`."""
    used = np.concatenate(list(fashion_mnist_sample()["test"].values()))
    images, labels, class_names = load_fashion_mnist("test")
    rng = np.random.default_rng(SEED + 1)
    for part in ("target", "test"):
        shutil.rmtree(out / part, ignore_errors=True)
    for label, name in enumerate(class_names):
        free = np.setdiff1d(np.flatnonzero(labels == label), used)
        chosen = rng.choice(free, 2 * SHIFT_PER_CLASS["fashion"], replace=False)
        for part, indices in (("target", chosen[::2]), ("test", chosen[1::2])):
            folder = out / part if part == "target" else out / part / folder_name(name)
            folder.mkdir(parents=True, exist_ok=True)
            for index in np.sort(indices):
                Image.fromarray(low_contrast(images[index]), mode="L").save(folder / f"{index:05d}.png",
                                                                            optimize=True)


def make_wordnet_supersenses(out: Path) -> None:
    """Write ``out/train.csv`` and ``out/test.csv``: a seeded sample of definitions per supersense.

    Definitions that occur more than once in WordNet are left out, so no text appears under two labels or in
    both files.
    """
    texts, labels, class_names = load_wordnet_supersenses(classes=WORDNET_CLASSES)
    counts = Counter(texts)
    rng = np.random.default_rng(SEED)
    rows: dict[str, list[tuple[str, str]]] = {split: [] for split in WORDNET_PER_CLASS}
    for label, name in enumerate(class_names):
        unique = [i for i in np.flatnonzero(labels == label) if counts[texts[i]] == 1]
        chosen = rng.choice(unique, sum(WORDNET_PER_CLASS.values()), replace=False)
        start = 0
        for split, per_class in WORDNET_PER_CLASS.items():
            rows[split] += [(texts[i], name) for i in sorted(chosen[start:start + per_class])]
            start += per_class
    out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        pd.DataFrame(split_rows, columns=["text", "label"]).to_csv(out / f"{split}.csv", index=False)


def make_wordnet_usage(out: Path) -> None:
    """Write ``out/target.csv`` (``text``) and ``out/test.csv`` (``text,label``): a seeded sample per supersense
    of the usage examples quoted in noun glosses (each text once in WordNet, none in both files)."""
    texts, labels, class_names = load_wordnet_supersenses(classes=WORDNET_CLASSES, part="example")
    counts = Counter(texts)
    rng = np.random.default_rng(SEED)
    rows: dict[str, list[tuple[str, str]]] = {"target": [], "test": []}
    for label, name in enumerate(class_names):
        unique = [i for i in np.flatnonzero(labels == label) if counts[texts[i]] == 1]
        # Few animal and plant glosses quote an example: those classes get what there is, split in two.
        chosen = rng.choice(unique, 2 * min(SHIFT_PER_CLASS["wordnet"], len(unique) // 2), replace=False)
        rows["target"] += [(texts[i], name) for i in sorted(chosen[::2])]
        rows["test"] += [(texts[i], name) for i in sorted(chosen[1::2])]
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([text for text, _ in rows["target"]], columns=["text"]).to_csv(out / "target.csv", index=False)
    pd.DataFrame(rows["test"], columns=["text", "label"]).to_csv(out / "test.csv", index=False)


def make_fsdd_mini(out: Path) -> None:
    """Write ``out/{train,test}/<digit>/<file>.wav``: a seeded sample per digit of one speaker for each split,
    the files copied byte for byte."""
    rng = np.random.default_rng(SEED)
    for split, (speaker, per_digit) in FSDD_PER_DIGIT.items():
        paths, digits, _, _ = load_fsdd(speakers=[speaker])
        shutil.rmtree(out / split, ignore_errors=True)
        for digit in range(10):
            folder = out / split / str(digit)
            folder.mkdir(parents=True)
            for index in np.sort(rng.choice(np.flatnonzero(digits == digit), per_digit, replace=False)):
                shutil.copyfile(paths[index], folder / Path(paths[index]).name)


MAKERS = {"fashion-mnist-mini": make_fashion_mnist, "wordnet-supersenses": make_wordnet_supersenses,
          "fsdd-mini": make_fsdd_mini, "fashion-mnist-lowcontrast": make_fashion_lowcontrast,
          "wordnet-usage": make_wordnet_usage}


def main() -> None:
    """Build the data sets under ``--out`` (default: this folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="folder to write the data sets into")
    parser.add_argument("--only", choices=sorted(MAKERS), action="append", help="build only these (repeatable)")
    args = parser.parse_args()
    for name in args.only or MAKERS:
        MAKERS[name](args.out / name)


if __name__ == "__main__":
    main()
