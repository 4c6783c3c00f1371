"""``headstart export``: write a model as one ONNX graph, prove it computes what the model computes, and
optionally quantize it to int8.

Every export runs a parity check on real examples: probabilities from the PyTorch model (eager, on the
model's own preprocessing) against ONNX Runtime on the exported graph (preprocessing as the graph's
metadata describes it), so the check covers the written recipe as well as the graph. An fp32 graph further
than :data:`PARITY_TOLERANCE` from PyTorch is an error and nothing is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headstart.backbones.hf import TransformerTextBackbone
from headstart.backbones.timm import TimmBackbone
from headstart.data import Dataset
from headstart.errors import ConfigError, ExportError, option
from headstart.evaluation import aligned_labels
from headstart.io import write_json
from headstart.model import TransferModel
from headstart.onnx_export.graph import ProbabilityGraph, export_graph, graph_inputs
from headstart.onnx_export.quantize import quantize_int8
from headstart.onnx_export.runtime import OnnxModel

#: Largest |probability difference| allowed between PyTorch and the fp32 graph.
PARITY_TOLERANCE = 1e-4
QUANTIZATIONS = ("int8",)
#: Examples used for the parity check and for calibrating static quantization.
PARITY_EXAMPLES = 64
CALIBRATION_EXAMPLES = 128
_CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class Parity:
    """How closely a graph reproduces the PyTorch model's probabilities.

    Attributes:
        n_examples: Examples compared.
        max_abs_diff: Largest absolute difference of any class probability.
        top1_agreement: Share of examples whose top class is the same.
    """

    n_examples: int
    max_abs_diff: float
    top1_agreement: float


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        path: The graph written (int8 when quantized).
        sidecar: The JSON next to it (metadata, preprocessing, these checks).
        parity: fp32 graph vs PyTorch.
        quantization: ``None``, or ``"int8 static"`` / ``"int8 dynamic"``.
        quantized_parity: int8 graph vs PyTorch.
        accuracy: ``{"fp32": ..., "int8": ..., "n_examples": ..., "source": ...}`` on held-out data, when given.
        notes: What was not measured and why.
    """

    path: Path
    sidecar: Path
    parity: Parity
    quantization: str | None = None
    quantized_parity: Parity | None = None
    accuracy: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the sidecar's ``checks`` holds)."""
        data = asdict(self)
        data["path"], data["sidecar"] = str(self.path), str(self.sidecar)
        return data


def spread(items: list[Any], n: int) -> list[Any]:
    """``n`` items evenly spread over ``items`` (data sets are often sorted by class), or all of them."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


@torch.inference_mode()
def torch_probabilities(model: TransferModel, items: list[Any], *, batch_size: int = 32) -> np.ndarray:
    """Probabilities of the PyTorch model in eager mode (the graph's reference), batch by batch."""
    inputs = graph_inputs(model.backbone)
    graph = ProbabilityGraph(model, inputs)
    parts = [graph(*inputs.tensors(model.backbone.collate(items[start:start + batch_size]))).numpy()
             for start in range(0, len(items), batch_size)]
    return np.concatenate(parts).astype(np.float64)


def compare(reference: np.ndarray, proba: np.ndarray) -> Parity:
    """:class:`Parity` of ``proba`` against ``reference`` (both ``[N, K]``)."""
    return Parity(n_examples=len(reference), max_abs_diff=float(np.abs(reference - proba).max()),
                  top1_agreement=float((reference.argmax(1) == proba.argmax(1)).mean()))


def _accuracy(graph: OnnxModel, model: TransferModel, held_out: Dataset) -> float:
    labels = aligned_labels(model, held_out)
    return float((graph.predict_proba(held_out.items, batch_size=32).argmax(1) == labels).mean())


def export_onnx(model: TransferModel, out: str | Path, *, parity_items: list[Any], quantize: str | None = None,
                calibration_items: list[Any] | None = None, held_out: Dataset | None = None) -> ExportReport:
    """Export ``model`` as one ONNX graph (probabilities, dynamic batch axis) into ``out``.

    Writes ``out`` (the graph), ``out`` with suffix ``.json`` (metadata, preprocessing, checks) and, for text
    models, the tokenizer files into ``out``'s folder. Files are written only after the parity check passed.

    Args:
        model: The trained model.
        out: The ``.onnx`` file to write.
        parity_items: Real examples for the parity check (up to :data:`PARITY_EXAMPLES` are used).
        quantize: ``None`` (fp32) or ``"int8"``.
        calibration_items: Training examples for static int8 calibration of image models (up to
            :data:`CALIBRATION_EXAMPLES`); required for them with ``quantize="int8"``.
        held_out: Labeled data to measure the accuracy change of quantization on.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ConfigError: Unknown ``quantize``, no parity examples, or no calibration examples for a CNN.
        ExportError: Unsupported backbone, a failing exporter, or an fp32 graph that does not reproduce the
            model within :data:`PARITY_TOLERANCE`.
    """
    out = Path(out)
    static = _check_request(model, parity_items, quantize, calibration_items)
    checked = spread(parity_items, PARITY_EXAMPLES)
    reference = torch_probabilities(model, checked)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".headstart-export-", dir=out.parent) as scratch:
        work = Path(scratch)
        written = work / "model.onnx"
        metadata = export_graph(model, checked[:2] if len(checked) > 1 else checked * 2, written)
        if isinstance(model.backbone, TransformerTextBackbone):
            model.backbone.tokenizer.save_pretrained(work)
        fp32 = OnnxModel(written)
        parity = compare(reference, fp32.predict_proba(checked, batch_size=32))
        if parity.max_abs_diff > PARITY_TOLERANCE:
            raise ExportError(f"the fp32 ONNX graph differs from the PyTorch model by up to {parity.max_abs_diff:.2e} "
                              f"in probability on {parity.n_examples} examples (allowed {PARITY_TOLERANCE:g}); "
                              "nothing was written. Please report this with the backbone name")
        report = ExportReport(path=out, sidecar=out.with_suffix(".json"), parity=parity)
        if quantize is not None:
            calibration = spread(calibration_items or [], CALIBRATION_EXAMPLES) if static else None
            written = _add_int8(report, model, fp32, (checked, reference), calibration, held_out)
        for extra in work.iterdir():
            if extra.suffix != ".onnx":
                os.replace(extra, out.parent / extra.name)
        shutil.move(str(written), str(out))
    write_json(report.sidecar, {**metadata, "file": out.name, "quantization": report.quantization,
                                "checks": report.to_dict()})
    return report


def _check_request(model: TransferModel, parity_items: list[Any], quantize: str | None,
                   calibration_items: list[Any] | None) -> bool:
    """Refuse an export that cannot be done, before any work; returns whether int8 will be static."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"{option('quantize')} must be one of {', '.join(QUANTIZATIONS)}, not {quantize!r}")
    if not parity_items:
        raise ConfigError(f"the parity check needs real examples; pass {option('data')} with a few inputs of the "
                          "model's kind")
    graph_inputs(model.backbone)
    views = getattr(model.backbone.preprocess, "views", "none")
    if views != "none":
        raise ConfigError(f"the model averages each image's features over test-time views (views={views}), which "
                          "an exported graph, taking one view per image, would not reproduce; export a model "
                          "fitted without them (preprocessing setting views=none)")
    static = quantize is not None and isinstance(model.backbone, TimmBackbone)
    if static and not calibration_items:
        raise ConfigError("static int8 quantization of an image model needs calibration images from its training "
                          f"data, and the data it was trained on cannot be found; pass {option('data')}")
    return static


def _add_int8(report: ExportReport, model: TransferModel, fp32: OnnxModel,
              checked: tuple[list[Any], np.ndarray], calibration_items: list[Any] | None,
              held_out: Dataset | None) -> Path:
    """Quantize ``fp32`` next to it, record parity and accuracy change in ``report``; returns the int8 path."""
    int8_path = fp32.path.with_name("model.int8.onnx")
    calibration = None if calibration_items is None else [
        fp32.inputs(calibration_items[i:i + _CALIBRATION_BATCH])
        for i in range(0, len(calibration_items), _CALIBRATION_BATCH)]
    report.quantization = f"int8 {quantize_int8(fp32.path, int8_path, calibration=calibration)}"
    int8 = OnnxModel(int8_path)
    items, reference = checked
    report.quantized_parity = compare(reference, int8.predict_proba(items, batch_size=32))
    if held_out is not None:
        report.accuracy = {"fp32": _accuracy(fp32, model, held_out), "int8": _accuracy(int8, model, held_out),
                           "n_examples": len(held_out), "source": held_out.source}
    else:
        report.notes.append(f"accuracy change not measured: pass {option('data')} with labeled held-out data")
    return int8_path
