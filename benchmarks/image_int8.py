"""Is static int8 faster than fp32 for EfficientNet-Lite0 features on this CPU, and what does it cost in accuracy?

Issue 15 asks for image features at >= 250 img/s with int8 (fp32 >= 150) at <= 0.5 points of probe accuracy loss.
ONNX Runtime's int8 convolutions are fast on x86 CPUs with VNNI (AVX512-VNNI or AVX-VNNI); on AVX2 alone, signed
int8 weights go through an instruction that can saturate and unsigned ones through a slower path. This script
measures, side by side in one run, the fp32 graph and the static int8 graphs ONNX Runtime's quantizer can make
(QDQ format, per-channel weights, activation ranges calibrated on Fashion-MNIST training images, the pooling and
shape nodes kept in float exactly as ``headstart export --quantize int8`` does):

- unsigned 8-bit weights (no saturation, what ``headstart export --quantize int8`` used before);
- signed 8-bit weights (the fast path on VNNI CPUs);
- signed 7-bit weights (``reduce_range``: ONNX Runtime's advice against saturation on AVX2; what ``engine=int8``
  and ``headstart export --quantize int8`` use);
- unsigned 8-bit weights with the depthwise convolutions kept in float;

and, through headstart's own extraction path (``Backbone.extract`` on the same collated batches), the fp32 graph
(``engine=onnx``) and the static int8 graph ``engine=int8`` makes, calibrated on the first ``--calibration``
training images it extracts (the training features come first, as in a fit). The graphs made here are the plain
export a user would make (TF-"same" pads computed at run time); headstart's are exported with the pads as
constants that ONNX Runtime folds into the convolutions (:mod:`headstart.backbones.static_padding`).

Where the time goes: ONNX Runtime's profiler's share of kernel time per operator type, for the plain fp32 and
7-bit int8 graphs and headstart's two (``profile_op_shares`` in the JSON).

Preprocessing is timed apart (the graphs above run on collated batches): torchvision's transform image by image
and stacked, the peer's way, against headstart's ``collate`` (geometry per image, scaling and normalization once
per batch), on the same ``--test`` images in batches of 32.

For each: images/s on batches of 32 (median of interleaved rounds), the ratio to fp32, the mean cosine of the
features to fp32's (and the lowest per image), and the test accuracy of a logistic-regression probe on each
graph's own features (Fashion-MNIST, ``--train`` training and ``--test`` test images). Prints a table and writes
JSON (default benchmarks/results/image_int8.json). About 6 minutes on 2 cores::

    python benchmarks/image_int8.py
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from headstart.backbones import create_backbone, with_engine
from headstart.backbones.engine import CALIBRATION_EXAMPLES
from headstart.io import caching
from headstart.onnx_export.quantize import float_nodes
from records import machine_record, print_table, write_result

FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_MINI = Path(__file__).resolve().parent.parent / "examples" / "fashion-mnist-mini"
BATCH = 32
ROUNDS = 3


def fashion(split: str, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The first ``n`` images (uint8 28x28) and labels of Debian's Fashion-MNIST ``split`` ("train" or "t10k");
    without that package, of examples/fashion-mnist-mini's (a random sample of the same splits), in the order of
    their index in the official split."""
    if not FASHION.is_dir():
        from PIL import Image

        classes = sorted(p.name for p in (FASHION_MINI / "train").iterdir())
        files = sorted((FASHION_MINI / ("test" if split == "t10k" else "train")).glob("*/*.png"),
                       key=lambda path: path.name)[:n]
        return ([np.asarray(Image.open(path)) for path in files],
                np.array([classes.index(path.parent.name) for path in files]))
    with gzip.open(FASHION / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(FASHION / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n]
    return list(images), labels.astype(int)


def cpu_flags() -> dict[str, bool]:
    """Whether the CPU has the instructions int8 convolutions depend on."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {flag: flag in flags for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}


class Calibration:
    """ONNX Runtime's ``CalibrationDataReader``: the calibration batches, once."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def graphs(batch: torch.Tensor, calibration: torch.Tensor, folder: Path) -> dict[str, Path]:
    """The fp32 graph of EfficientNet-Lite0's features and its int8 variants, written to ``folder``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    module = create_backbone("efficientnet_lite0").module.eval()
    fp32, prepared = folder / "fp32.onnx", folder / "prepared.onnx"
    torch.onnx.export(module, (batch,), str(fp32), input_names=["input"], output_names=["features"],
                      dynamic_axes={"input": {0: "batch"}}, opset_version=17, dynamo=False)
    quant_pre_process(str(fp32), str(prepared))
    graph = onnx.load(str(prepared))
    keep = float_nodes(graph)
    depthwise = [node.name for node in graph.graph.node if node.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in node.attribute)]
    variants = {
        "int8, unsigned weights": (QuantType.QUInt8, False, []),
        "int8, signed weights": (QuantType.QInt8, False, []),
        "int8, signed 7-bit weights (reduce_range)": (QuantType.QInt8, True, []),
        "int8, unsigned weights, depthwise in fp32": (QuantType.QUInt8, False, depthwise),
    }
    paths = {"fp32": fp32}
    for index, (name, (weights, reduce_range, excluded)) in enumerate(variants.items()):
        reader = Calibration([{"input": part.numpy()} for part in calibration.split(BATCH)])
        paths[name] = folder / f"int8-{index}.onnx"
        quantize_static(str(prepared), str(paths[name]), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=weights, reduce_range=reduce_range,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep + excluded)
    return paths


def session_features(session) -> Callable[[torch.Tensor], np.ndarray]:  # noqa: ANN001 - an InferenceSession
    """Features of collated images through ``session``, in batches of ``BATCH``."""
    return lambda images: np.concatenate([session.run(None, {"input": part.numpy()})[0]
                                          for part in images.split(BATCH)])


def headstart_features(backbone) -> Callable[[torch.Tensor], np.ndarray]:  # noqa: ANN001 - a headstart Backbone
    """Features of collated images through headstart's extraction path (its engine), in batches of ``BATCH``."""
    return lambda images: backbone.extract(images.split(BATCH), len(images), -(-len(images) // BATCH))


def probe_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> float:
    """Test accuracy of a standardised ``LogisticRegression()`` (the plain peer probe) on these features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train, train_labels)
    return float(probe.score(test, test_labels))


HEADSTART_FP32 = "headstart engine=onnx (fp32)"
HEADSTART_INT8 = "headstart engine=int8 (static, calibrated on training images)"


def measure(runners: dict[str, Callable[[torch.Tensor], np.ndarray]], train_features: dict[str, np.ndarray],
            train: torch.Tensor, train_labels: np.ndarray, test: torch.Tensor, test_labels: np.ndarray
            ) -> dict[str, dict]:
    """Speed (interleaved rounds on the first test images), cosine to fp32 and probe accuracy of each runner;
    ``train_features`` holds those already computed."""
    timing = test[:BATCH * 4]
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(timing[:BATCH])  # warm-up
    for _ in range(ROUNDS):  # interleaved, so a change of load hits every graph alike
        for name, run in runners.items():
            start = time.perf_counter()
            run(timing)
            times[name].append(time.perf_counter() - start)
    results = {}
    reference = runners["fp32"](test)
    for name, run in runners.items():
        own_test = run(test)
        cosine = np.sum(own_test * reference, 1) / np.linalg.norm(own_test, axis=1) / np.linalg.norm(reference, axis=1)
        own_train = train_features[name] if name in train_features else run(train)
        results[name] = {"images_per_s": len(timing) / statistics.median(times[name]), "seconds": times[name],
                         "feature_cosine": float(cosine.mean()), "feature_cosine_min": float(cosine.min()),
                         "probe_accuracy": probe_accuracy(own_train, train_labels, own_test, test_labels)}
    return results


def preprocessing_rates(backbone, images: list[np.ndarray]) -> dict[str, float]:  # noqa: ANN001 - a Backbone
    """Images/s of torchvision's transform image by image (stacked) and of headstart's ``collate``, median of
    interleaved rounds, after checking that they give the same values."""
    from headstart.backbones.timm import build_image_transform
    from headstart.data.image_io import open_image

    transform = build_image_transform(backbone.preprocess)
    runners = {"torchvision, image by image": lambda part: torch.stack([transform(open_image(x)) for x in part]),
               "headstart collate": backbone.collate}
    first = images[:BATCH]
    if not torch.equal(runners["torchvision, image by image"](first), backbone.collate(first)):
        raise SystemExit("headstart's collate differs from torchvision's transform")
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, run in runners.items():
            start = time.perf_counter()
            for i in range(0, len(images), BATCH):
                run(images[i:i + BATCH])
            times[name].append(time.perf_counter() - start)
    return {name: len(images) / statistics.median(seconds) for name, seconds in times.items()}


def op_shares(path: Path, images: torch.Tensor) -> dict[str, float]:
    """Share of kernel time per operator type when ONNX Runtime's profiler runs the graph at ``path`` over
    ``images`` in batches of ``BATCH`` (after its optimizations, so what is left of padding shows)."""
    import json

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session_features(session)(images)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"]
    whole = sum(totals.values()) or 1.0
    return {op: round(t / whole, 3) for op, t in sorted(totals.items(), key=lambda item: -item[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--calibration", type=int, default=CALIBRATION_EXAMPLES,
                        help="Training images the int8 ranges of the graphs made here come from (engine=int8 "
                             f"always calibrates on its first {CALIBRATION_EXAMPLES}).")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "image_int8.json")
    args = parser.parse_args()
    import onnxruntime

    logging.disable(logging.WARNING)  # the quantizer's advice through the root logger
    load_before = os.getloadavg()
    backbone = create_backbone("efficientnet_lite0")
    train_images, train_labels = fashion("train", args.train)
    test_images, test_labels = fashion("t10k", args.test)
    train, test = backbone.collate(train_images), backbone.collate(test_images)
    preprocessing = preprocessing_rates(backbone, test_images)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="headstart-int8-") as folder, caching(Path(folder) / "cache"):
        paths = graphs(test[:BATCH], train[:args.calibration], Path(folder))
        runners = {name: session_features(onnxruntime.InferenceSession(str(path), options,
                                                                       providers=["CPUExecutionProvider"]))
                   for name, path in paths.items()}
        runners[HEADSTART_FP32] = headstart_features(with_engine(backbone, "onnx"))
        quantized = with_engine(backbone, "int8")
        runners[HEADSTART_INT8] = headstart_features(quantized)
        # The int8 engine calibrates on the first images it extracts: the training images, as in a fit.
        train_features = {HEADSTART_INT8: runners[HEADSTART_INT8](train)}
        if quantized.extraction_engine.failed:
            raise SystemExit("engine=int8 fell back to PyTorch (see the warning above); nothing to measure")
        results = measure(runners, train_features, train, train_labels, test, test_labels)
        cached = Path(folder) / "cache" / "onnx"
        profiled = {"fp32": paths["fp32"], "int8, signed 7-bit weights (reduce_range)":
                    paths["int8, signed 7-bit weights (reduce_range)"],
                    HEADSTART_FP32: next(cached.glob("*-static-pads.onnx")),
                    HEADSTART_INT8: next(cached.glob("*-static-pads-int8-static-*.onnx"))}
        profile = {name: op_shares(path, test[:BATCH * 4]) for name, path in profiled.items()}
    fp32 = results["fp32"]
    columns = ["graph", "img/s", "vs fp32", "feature cosine to fp32", "lowest cosine", "probe accuracy %",
               "change (points)"]
    rows = [[name, f"{r['images_per_s']:.1f}", f"{r['images_per_s'] / fp32['images_per_s']:.2f}x",
             f"{r['feature_cosine']:.4f}", f"{r['feature_cosine_min']:.4f}", f"{r['probe_accuracy']:.1%}".rstrip("%"),
             f"{(r['probe_accuracy'] - fp32['probe_accuracy']) * 100:+.1f}"] for name, r in results.items()]
    flags = cpu_flags()
    print_table(columns, rows)
    for name, shares in profile.items():
        print(f"profile, {name}: " + ", ".join(f"{op} {share:.0%}" for op, share in list(shares.items())[:6]))
    print("preprocessing: " + ", ".join(f"{name} {rate:.0f} img/s" for name, rate in preprocessing.items()))
    print(f"CPU flags: {flags}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
    write_result(args.json, {
        **machine_record(("onnxruntime", "onnx", "torch", "headstart"), load_before=load_before,
                         threads=torch.get_num_threads()),
        "data": str(FASHION if FASHION.is_dir() else FASHION_MINI.relative_to(FASHION_MINI.parents[1])),
        "train": args.train, "test": args.test, "calibration": args.calibration, "batch": BATCH, "rounds": ROUNDS,
        "results": results, "profile_op_shares": profile, "preprocessing_images_per_s": preprocessing,
        "cpu_flags": flags,
        "cpu_model": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name")), "unknown"),
        "readme_table": {"columns": columns, "rows": rows},
    })

if __name__ == "__main__":
    main()
