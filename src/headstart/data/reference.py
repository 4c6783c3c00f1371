"""The full reference data sets behind the benchmarks and the demo data, read from Debian packages.

- Fashion-MNIST (``apt-get install dataset-fashion-mnist``; MIT licence, Zalando Research): 28x28 grayscale
  clothing images, 60,000 train / 10,000 test, 10 classes.
- WordNet supersenses (``apt-get install wordnet-base``; WordNet 3.0 licence, Princeton University): each
  noun (or verb) synset's gloss labeled with its lexicographer file (``noun.animal``, ``verb.motion``, ...).
- Free Spoken Digit Dataset (FSDD; Zohar Jackson et al., CC BY-SA 4.0): 8 kHz recordings of the digits 0-9
  named ``{digit}_{speaker}_{index}.wav``, from the ``recordings/`` folder of
  https://github.com/Jakobovski/free-spoken-digit-dataset (or a folder given by ``HEADSTART_FSDD``).
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from headstart.errors import DataError

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
WORDNET_ROOT = "/usr/share/wordnet"
# The noun lexicographer files by number (WordNet's lexnames(5) table; 00-02 are adjective/adverb files and
# 29-44 verb/adjective files, which never occur in data.noun).
NOUN_LEXNAMES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute", 8: "noun.body",
    9: "noun.cognition", 10: "noun.communication", 11: "noun.event", 12: "noun.feeling", 13: "noun.food",
    14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object", 18: "noun.person",
    19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process", 23: "noun.quantity",
    24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance", 28: "noun.time",
}
VERB_LEXNAMES = {
    29: "verb.body", 30: "verb.change", 31: "verb.cognition", 32: "verb.communication", 33: "verb.competition",
    34: "verb.consumption", 35: "verb.contact", 36: "verb.creation", 37: "verb.emotion", 38: "verb.motion",
    39: "verb.perception", 40: "verb.possession", 41: "verb.social", 42: "verb.stative", 43: "verb.weather",
}
LEXNAMES = {"noun": NOUN_LEXNAMES, "verb": VERB_LEXNAMES}
FSDD_ROOT = os.environ.get("HEADSTART_FSDD", "/work/shared/data/fsdd-2speakers")
_FSDD_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")


def _require(path: Path, package: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path} not found; install the Debian package with `apt-get install {package}` "
                        "or pass root= pointing at a copy of its files")
    return path


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX array (big-endian header: magic, then one uint32 per dimension; then uint8 data)."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = magic & 0xFF
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (magic {int(header[0]):#x}, expected "
                        f"{magic:#x})")
    shape = tuple(int(n) for n in header[1:])
    return np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(shape)


def load_fashion_mnist(split: str = "train", root: str | Path = FASHION_MNIST_ROOT
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The official Fashion-MNIST ``"train"`` (60,000) or ``"test"`` (10,000) split.

    Returns:
        ``(images, labels, class_names)``: ``uint8 [N, 28, 28]``, ``int64 [N]``, the 10 official class names.

    Raises:
        DataError: The files are missing (``apt-get install dataset-fashion-mnist``) or ``split`` is unknown.

    Example:
        >>> images, labels, names = load_fashion_mnist("test")
    """
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise DataError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    package = "dataset-fashion-mnist"
    images = _read_idx(_require(root / f"{prefixes[split]}-images-idx3-ubyte.gz", package), 0x803)
    labels = _read_idx(_require(root / f"{prefixes[split]}-labels-idx1-ubyte.gz", package), 0x801)
    if len(images) != len(labels):
        raise DataError(f"Fashion-MNIST {split} under {root} has {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64), list(FASHION_MNIST_CLASSES)


def definition(gloss: str) -> str:
    """The definition part of a WordNet gloss: the ``;``-separated parts that are not quoted examples.

    Example:
        >>> definition('a domestic cat; "the cat purred"')
        'a domestic cat'
    """
    return "; ".join(part.strip() for part in gloss.split(";")
                     if part.strip() and not part.strip().startswith('"'))


def usage_example(gloss: str) -> str:
    """The first quoted usage example of a WordNet gloss, without its quotes, or ``""`` when it has none.

    Example:
        >>> usage_example('a domestic cat; "the cat purred"; "a cat sat"')
        'the cat purred'
    """
    quoted = [part.strip() for part in gloss.split(";") if part.strip().startswith('"')]
    return quoted[0].strip('"').strip() if quoted else ""


def load_wordnet_supersenses(root: str | Path = WORDNET_ROOT, classes: Sequence[str] | None = None,
                             pos: str = "noun", part: str = "definition") -> tuple[list[str], np.ndarray, list[str]]:
    """Noun (or verb) synset definitions labeled with their supersense (lexicographer file), from
    ``data.noun`` (or ``data.verb``).

    The text of each example is the synset's definition with the quoted example sentences removed (see
    :func:`definition`): the examples often contain the word itself, the definition rarely does. Synsets
    whose definition is empty are left out.

    Args:
        root: Folder holding WordNet's ``data.noun``.
        classes: Supersenses to keep (e.g. ``["noun.animal", "noun.food"]``); default: all of ``pos``
            (26 noun or 15 verb supersenses).
        pos: ``"noun"`` or ``"verb"``.
        part: ``"definition"``, or ``"example"``: the first usage example of each synset's gloss instead
            (synsets without one are left out): the same labels in another style of text, a domain shift.

    Returns:
        ``(texts, labels, class_names)``: definitions (or examples) in file order, ``int64`` labels, the class names in
        lexicographer-file order.

    Raises:
        DataError: The data file is missing (``apt-get install wordnet-base``), or ``pos`` or a class is
            unknown.
    """
    if pos not in LEXNAMES:
        raise DataError(f"WordNet part of speech must be 'noun' or 'verb', got {pos!r}")
    if part not in ("definition", "example"):
        raise DataError(f"the part of a WordNet gloss must be 'definition' or 'example', got {part!r}")
    lexnames = LEXNAMES[pos]
    path = _require(Path(root) / f"data.{pos}", "wordnet-base")
    names = list(lexnames.values()) if classes is None else list(classes)
    unknown = sorted(set(names) - set(lexnames.values()))
    if unknown:
        raise DataError(f"unknown {pos} supersense(s) {unknown}; choose from {list(lexnames.values())}")
    names = [name for name in lexnames.values() if name in names]
    index = {name: i for i, name in enumerate(names)}
    texts: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("  "):  # the licence header
                continue
            fields, _, gloss = line.partition(" | ")
            label = index.get(lexnames.get(int(fields.split(" ", 2)[1]), ""))
            text = definition(gloss.strip()) if part == "definition" else usage_example(gloss.strip())
            if label is not None and text:
                texts.append(text)
                labels.append(label)
    return texts, np.array(labels, dtype=np.int64), names


def load_fsdd(root: str | Path = FSDD_ROOT, speakers: Sequence[str] | None = None
              ) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """The Free Spoken Digit Dataset's recordings, sorted by speaker, digit and index.

    Args:
        root: Folder of ``{digit}_{speaker}_{index}.wav`` files.
        speakers: Speakers to keep; default all.

    Returns:
        ``(paths, digits, speakers, indices)``: file paths, ``int64`` digits 0-9, each file's speaker, and
        ``int64`` recording indices.

    Raises:
        DataError: The folder holds no FSDD recording (of the speakers asked for).

    Example:
        >>> paths, digits, speakers, _ = load_fsdd(speakers=["george"])
    """
    found = [(m.group(2), int(m.group(1)), int(m.group(3)), p) for p in Path(root).glob("*.wav")
             if (m := _FSDD_NAME.fullmatch(p.name)) and (speakers is None or m.group(2) in speakers)]
    if not found:
        raise DataError(f"no FSDD recordings{f' of {list(speakers)}' if speakers else ''} in {root}; clone "
                        "https://github.com/Jakobovski/free-spoken-digit-dataset and set HEADSTART_FSDD to its "
                        "recordings/ folder, or pass root=")
    found.sort()
    return ([str(p) for *_, p in found], np.array([d for _, d, _, _ in found], dtype=np.int64),
            [s for s, *_ in found], np.array([i for _, _, i, _ in found], dtype=np.int64))
