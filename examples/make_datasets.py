"""Rebuild the committed demo data sets from the Debian packages and FSDD, with fixed seeds.

    apt-get install dataset-fashion-mnist wordnet-base
    python examples/make_datasets.py [--only fsdd-mini]

- ``examples/fashion-mnist-mini/``: ``train/<class>/*.png`` (100 per class, official train split) and
  ``test/<class>/*.png`` (50 per class, official test split); file names are the image's index in its split.
- ``examples/wordnet-supersenses/``: ``train.csv`` (100 per class) and ``test.csv`` (50 per class), columns
  ``text,label``: noun synset definitions and their supersense.
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
WORDNET_CLASSES = ["noun.act", "noun.animal", "noun.artifact", "noun.body", "noun.communication", "noun.food",
                   "noun.location", "noun.person", "noun.plant", "noun.substance"]


def folder_name(class_name: str) -> str:
    """A filesystem-safe class folder name: ``"T-shirt/top"`` -> ``"t-shirt_top"``."""
    return class_name.lower().replace("/", "_").replace(" ", "_")


def make_fashion_mnist(out: Path) -> None:
    """Write ``out/{train,test}/<class>/<index>.png``, a seeded sample per class of each official split."""
    rng = np.random.default_rng(SEED)
    for split, per_class in FASHION_PER_CLASS.items():
        images, labels, class_names = load_fashion_mnist(split)
        shutil.rmtree(out / split, ignore_errors=True)
        for label, name in enumerate(class_names):
            folder = out / split / folder_name(name)
            folder.mkdir(parents=True)
            for index in np.sort(rng.choice(np.flatnonzero(labels == label), per_class, replace=False)):
                Image.fromarray(images[index], mode="L").save(folder / f"{index:05d}.png", optimize=True)


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
          "fsdd-mini": make_fsdd_mini}


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
