"""Which int8 weights make MiniLM's ONNX graph fast and faithful on this CPU, and do ONNX Runtime's transformer
fusions help?

The bundled MiniLM's float32 graph, as headstart exports it (encoder, pooling and normalization in one graph), is
quantized dynamically by ONNX Runtime with each weight kind: unsigned 8-bit per channel (what ``engine=int8`` used
before), signed 8-bit per channel, signed 7-bit per channel (``reduce_range``, what it uses now) and signed 8-bit
per tensor; and the float graph is also run after ``onnxruntime.transformers.optimizer`` fusions (BERT model type).
Every graph runs in one session on all threads over the same length-sorted batches of 64 of ``--texts`` WordNet
noun glosses (the feature-extraction benchmark's texts), interleaved over ``--rounds`` rounds (median kept).
Reported: sentences/s, the ratio to float32, and the mean and lowest cosine of each graph's embeddings to the
float32 ones. Prints a table and writes JSON (default benchmarks/results/text_int8.json). About 3 minutes::

    python benchmarks/text_int8.py
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from feature_extraction import load_texts
from headstart.backbones import create_backbone
from headstart.io import caching
from records import machine_record, print_table, write_result

BATCH = 64


def float_graph(folder: Path) -> Path:
    """The float32 graph headstart exports for MiniLM, exported into ``folder``'s cache."""
    backbone = create_backbone("minilm")
    with caching(folder):
        backbone.embed(["a first text"], batch_size=1)  # exports once per weights
    return next((folder / "onnx").glob("*.onnx"))


def variants(fp32: Path, folder: Path) -> dict[str, Path]:
    """The float graph, its fused version and its dynamically quantized versions, written to ``folder``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    paths = {"fp32": fp32}
    fused = optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    paths["fp32, transformer fusions"] = folder / "fused.onnx"
    fused.save_model_to_file(str(paths["fp32, transformer fusions"]))
    kinds = {"int8, unsigned per channel (before)": (QuantType.QUInt8, True, False),
             "int8, signed per channel": (QuantType.QInt8, True, False),
             "int8, signed 7-bit per channel (engine=int8 now)": (QuantType.QInt8, True, True),
             "int8, signed per tensor": (QuantType.QInt8, False, False)}
    for index, (name, (weights, per_channel, reduce_range)) in enumerate(kinds.items()):
        paths[name] = folder / f"int8-{index}.onnx"
        quantize_dynamic(str(fp32), str(paths[name]), weight_type=weights, per_channel=per_channel,
                         reduce_range=reduce_range, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return paths


def batches(texts: list[str]) -> list[dict[str, np.ndarray]]:
    """MiniLM's inputs for ``texts``, sorted by length and cut into batches of ``BATCH`` (as headstart batches)."""
    tokenizer = create_backbone("minilm").tokenizer
    encoded = tokenizer(sorted(texts, key=len), truncation=True, max_length=256)["input_ids"]
    out = []
    for start in range(0, len(encoded), BATCH):
        part = encoded[start:start + BATCH]
        ids = np.zeros((len(part), max(map(len, part))), dtype=np.int64)
        for row, tokens in enumerate(part):
            ids[row, :len(tokens)] = tokens
        out.append({"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64),
                    "token_type_ids": np.zeros_like(ids)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "text_int8.json")
    args = parser.parse_args()
    import onnxruntime

    logging.disable(logging.WARNING)  # the quantizer's and optimizer's advice through the root logger
    load_before = os.getloadavg()
    feeds = batches(load_texts(args.texts))
    with tempfile.TemporaryDirectory(prefix="headstart-text-int8-") as folder:
        paths = variants(float_graph(Path(folder)), Path(folder))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    for name, path in paths.items()}

        def run(session) -> np.ndarray:  # noqa: ANN001 - an InferenceSession
            names = {i.name for i in session.get_inputs()}
            return np.concatenate([session.run(None, {k: v for k, v in feed.items() if k in names})[0]
                                   for feed in feeds])

        outputs = {name: run(session) for name, session in sessions.items()}  # also the warm-up
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.rounds):
            for name, session in sessions.items():
                started = time.perf_counter()
                run(session)
                times[name].append(time.perf_counter() - started)
    reference = outputs["fp32"]
    results = {}
    for name, out in outputs.items():
        cosine = np.sum(out * reference, 1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
        results[name] = {"sentences_per_s": args.texts / statistics.median(times[name]), "seconds": times[name],
                         "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}
    fp32 = results["fp32"]["sentences_per_s"]
    columns = ["graph", "sentences/s", "vs fp32", "cosine to fp32 (mean)", "lowest cosine"]
    rows = [[name, f"{r['sentences_per_s']:.0f}", f"{r['sentences_per_s'] / fp32:.2f}x", f"{r['cosine_mean']:.4f}",
             f"{r['cosine_min']:.4f}"] for name, r in results.items()]
    print_table(columns, rows)
    write_result(args.json, {**machine_record(("onnxruntime", "onnx", "torch", "headstart"), load_before=load_before,
                                              threads=torch.get_num_threads()),
                             "texts": args.texts, "batch": BATCH, "rounds": args.rounds, "results": results,
                             "readme_table": {"columns": columns, "rows": rows}})


if __name__ == "__main__":
    main()
