"""PyTorch eager vs fp32 ONNX vs int8 ONNX: speed (items/s at batch 1 and 32) and test accuracy on the demo tasks.

Trains a linear model on examples/fashion-mnist-mini (EfficientNet-Lite0) and examples/wordnet-supersenses
(MiniLM), exports each with ``headstart.export`` (fp32, then int8: static for the CNN, dynamic for MiniLM), and
times the three engines on the same preprocessed batches, interleaved over rounds so machine load hits them
alike (mean ± std over rounds). Preprocessing (image decoding, tokenizing) is not timed: it is the same for all
three. Accuracy is on the 500 committed test examples.

    python benchmarks/export.py [--rounds 3] [--work runs/bench-shipping]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

import headstart
from demo_models import TASKS, environment, train_demo_models
from headstart.data import load_dataset
from headstart.onnx_export import OnnxModel
from headstart.onnx_export.export import spread
from headstart.onnx_export.graph import ProbabilityGraph, graph_inputs
from records import print_table, write_result

RESULTS = Path(__file__).parent / "results" / "export.json"
CALLS = {1: 16, 32: 2}  # forward passes per engine, batch size and round


def _rate(run, batch: int, calls: int) -> float:
    run()  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return batch * calls / (time.perf_counter() - start)


def measure(model_dir: Path, data: Path, rounds: int) -> dict[str, object]:
    model = headstart.load(model_dir)
    fp32_report = headstart.export(model_dir, force=True)
    int8_report = headstart.export(model_dir, quantize="int8", force=True)
    engines = {"onnx fp32": OnnxModel(fp32_report.path), "onnx int8": OnnxModel(int8_report.path)}
    inputs = graph_inputs(model.backbone)
    graph = ProbabilityGraph(model, inputs)
    test = load_dataset(data).test
    speeds: dict[str, dict[int, list[float]]] = {name: {1: [], 32: []} for name in ["pytorch eager", *engines]}
    for _ in range(rounds):
        for batch in CALLS:
            items = spread(test.items, batch)
            feeds = engines["onnx fp32"].inputs(items)
            tensors = tuple(torch.from_numpy(feeds[name]) for name in inputs.names)

            def eager(tensors=tensors) -> None:
                with torch.inference_mode():
                    graph(*tensors)

            speeds["pytorch eager"][batch].append(_rate(eager, batch, CALLS[batch]))
            for name, engine in engines.items():
                speeds[name][batch].append(_rate(lambda e=engine, f=feeds: e.session.run(None, f), batch,
                                                 CALLS[batch]))
    accuracy = {"pytorch eager": model.metrics["test"]["accuracy"], "onnx fp32": int8_report.accuracy["fp32"],
                "onnx int8": int8_report.accuracy["int8"]}
    return {"backbone": model.backbone.ref, "n_test": int8_report.accuracy["n_examples"],
            "quantization": int8_report.quantization,
            "parity_fp32": vars(fp32_report.parity), "parity_int8": vars(int8_report.quantized_parity),
            "size_mb": {"onnx fp32": fp32_report.path.stat().st_size / 1e6,
                        "onnx int8": int8_report.path.stat().st_size / 1e6},
            "rows": [{"engine": name, "accuracy": accuracy[name],
                      **{f"batch{b}_items_per_s": float(np.mean(v)) for b, v in by_batch.items()},
                      **{f"batch{b}_std": float(np.std(v)) for b, v in by_batch.items()}}
                     for name, by_batch in speeds.items()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-shipping"))
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    load_before = os.getloadavg()
    folders = train_demo_models(args.work)
    results = {modality: measure(folders[modality], TASKS[modality][0], args.rounds) for modality in TASKS}
    for modality, result in results.items():
        print_table(["task", "engine", "batch 1 items/s", "batch 32 items/s", "test accuracy"],
                    [[f"{modality} ({result['backbone']})", r["engine"],
                      f"{r['batch1_items_per_s']:.1f} ± {r['batch1_std']:.1f}",
                      f"{r['batch32_items_per_s']:.1f} ± {r['batch32_std']:.1f}", f"{r['accuracy']:.1%}"]
                     for r in result["rows"]])
        print(f"  parity fp32 max |Δprob| {result['parity_fp32']['max_abs_diff']:.1e}; int8 top-1 agreement "
              f"{result['parity_int8']['top1_agreement']:.1%}; sizes {result['size_mb']}")
    write_result(args.json, {**environment(load_before), "rounds": args.rounds, "tasks": results,
                             "readme_table": readme_table(results)})


def readme_table(results: dict[str, dict]) -> dict[str, list]:
    """The README's table: per model and engine, items/s at batch 1 and 32, test accuracy and graph size."""
    names = {"pytorch eager": "PyTorch eager", "onnx fp32": "ONNX fp32",
             "onnx int8": "ONNX int8 ({})"}
    rows = []
    for modality, result in results.items():
        task = {"image": "Fashion-MNIST", "text": "WordNet"}.get(modality, modality)
        for index, r in enumerate(result["rows"]):
            size = result["size_mb"].get(r["engine"])
            rows.append([f"{task}, `{result['backbone']}`" if index == 0 else "",
                         names[r["engine"]].format(result["quantization"].replace("int8 ", "")),
                         f"{r['batch1_items_per_s']:.1f}", f"{r['batch32_items_per_s']:.1f}", f"{r['accuracy']:.1%}",
                         f"{size:.1f} MB" if size else ""])
    return {"columns": ["model", "engine", "batch 1, items/s", "batch 32, items/s", "test accuracy", "size"],
            "rows": rows}


if __name__ == "__main__":
    main()
