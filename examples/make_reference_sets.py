"""Build the small reference sets headstart measures forgetting on (``src/headstart/evaluation/reference``).

Images: natural photos in the public domain or under CC0 shipped in the scikit-image 0.26.0 wheel, and two
CC BY 2.0 photos shipped with scikit-learn; resized to 256 px on the shorter side. Texts: WordNet 3.0 glosses of
verbs and adjectives (the bundled examples use noun glosses, so none of these is a training text).

Usage:
    pip download --no-deps scikit-image==0.26.0 -d /tmp/skimage
    python examples/make_reference_sets.py /tmp/skimage/scikit_image-0.26.0-*.whl [--wordnet /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
import io
import re
import zipfile
from pathlib import Path

from PIL import Image
from sklearn.datasets import load_sample_image

OUT = Path(__file__).resolve().parents[1] / "src" / "headstart" / "evaluation" / "reference"
#: scikit-image sample photos and their terms (from skimage.data's docstrings).
SKIMAGE = {"astronaut.png": "public domain (NASA)", "coffee.png": "CC0 (Rachel Michetti)",
           "chelsea.png": "CC0 (Stefan van der Walt)", "rocket.jpg": "public domain (SpaceX)",
           "hubble_deep_field.jpg": "public domain (NASA)", "retina.jpg": "CC0 (Wikimedia Commons)",
           "camera.png": "CC0 (Lav Varshney)", "coins.png": "no known copyright restrictions (Brooklyn Museum)"}
SKLEARN = {"china.jpg": "CC BY 2.0, danielbuechele on Flickr", "flower.jpg": "CC BY 2.0, vultilion on Flickr"}
SIDE = 256


def _save(image: Image.Image, name: str) -> None:
    image = image.convert("RGB")
    scale = SIDE / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    image.save(OUT / "images" / f"{Path(name).stem}.jpg", quality=90)


def build_images(wheel: Path) -> list[str]:
    """Write the photos; returns one licence line per photo."""
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    with zipfile.ZipFile(wheel) as archive:
        for name, terms in SKIMAGE.items():
            _save(Image.open(io.BytesIO(archive.read(f"skimage/data/{name}"))), name)
            lines.append(f"- images/{Path(name).stem}.jpg: scikit-image sample data, {terms}")
    for name, terms in SKLEARN.items():
        _save(Image.fromarray(load_sample_image(name)), name)
        lines.append(f"- images/{Path(name).stem}.jpg: scikit-learn sample image, {terms}")
    return lines


def build_sentences(wordnet: Path, per_part: int = 100) -> None:
    """Every 40th gloss of data.verb and data.adj, the definition part only, up to ``per_part`` each."""
    texts = []
    for part in ("verb", "adj"):
        glosses = []
        for line in (wordnet / f"data.{part}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            gloss = re.split(r';\s*"', line.split("|", 1)[1])[0].strip()
            if len(gloss.split()) >= 4:
                glosses.append(gloss)
        texts += glosses[::40][:per_part]
    (OUT / "sentences.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the scikit-image 0.26.0 wheel")
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    args = parser.parse_args()
    lines = build_images(args.wheel)
    build_sentences(args.wordnet)
    (OUT / "LICENSE.md").write_text(
        "# Reference sets for measuring forgetting\n\nBuilt by `examples/make_reference_sets.py`.\n\n## Images\n"
        + "\n".join(lines) + "\n\n## sentences.txt\n\nGlosses from WordNet 3.0 (data.verb, data.adj), "
        "Princeton University. WordNet 3.0 license: permission to use, copy, modify and distribute this software "
        "and database and its documentation for any purpose and without fee or royalty is hereby granted, "
        "provided that the copyright notice (WordNet 3.0 Copyright 2006 by Princeton University. All rights "
        "reserved.) appears in all copies.\n", encoding="utf-8")


if __name__ == "__main__":
    main()
