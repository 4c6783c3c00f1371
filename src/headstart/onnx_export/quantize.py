"""int8 quantization of an exported graph with ``onnxruntime.quantization``.

Transformers get dynamic quantization (int8 weights, activations quantized per batch at run time: no
calibration data, and the usual choice for attention models on CPU). CNNs get static quantization: int8
weights per channel and activation ranges calibrated on the model's own training images (QDQ format, which
ONNX Runtime fuses into int8 convolutions). Pooling, head, temperature and softmax stay in float: they cost
nothing and carry the probabilities.

Weights are unsigned 8-bit, like the activations. The usual signed weights multiply through an instruction
that saturates on x86 CPUs without VNNI (AVX2 only), which ONNX Runtime's documentation warns about: measured
on EfficientNet-Lite0 on such a CPU, signed weights kept the top class of 63% of images, 7-bit
(``reduce_range``) 88%, unsigned 95%.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from headstart.errors import ExportError

if TYPE_CHECKING:
    import onnx

_HEAVY = {"Conv", "MatMul"}
_SHAPE_CONSUMERS = {"Pad", "Reshape", "Slice", "Expand", "Resize", "ConstantOfShape", "Tile"}


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that stay in float: everything after the last convolution or matrix product
    (pooling, head, temperature, softmax: cheap, and where int8 steps would show in the probabilities), and
    every node that computes a shape (timm's TF-"same" padding computes its pads from the input size in
    float; rounded to int8, the pads come out wrong)."""
    nodes = list(model.graph.node)
    last_heavy = max((i for i, node in enumerate(nodes) if node.op_type in _HEAVY), default=-1)
    keep = {node.name for node in nodes[last_heavy + 1:]}
    producer = {output: node for node in nodes for output in node.output}
    pending = [name for node in nodes if node.op_type in _SHAPE_CONSUMERS for name in node.input[1:]]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in keep:
            continue
        keep.add(node.name)
        if node.op_type != "Shape":  # a Shape node reads only the size of its input, not its values
            pending.extend(node.input)
    return sorted(keep)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


class _Batches:
    """``CalibrationDataReader``: the calibration input batches, once."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(fp32: Path, out: Path, *, calibration: list[dict[str, np.ndarray]] | None) -> str:
    """Write an int8 version of the graph ``fp32`` to ``out``, keeping its metadata.

    Args:
        fp32: The exported float graph.
        out: Where the int8 graph goes (written atomically).
        calibration: Input batches for static quantization (CNNs); ``None`` for dynamic quantization
            (transformers).

    Returns:
        ``"static"`` or ``"dynamic"``: what was done.

    Raises:
        ExportError: ONNX Runtime's quantizer failed.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(fp32))
    keep_float = float_nodes(source)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    method = "dynamic" if calibration is None else "static"
    try:
        # The quantizer logs advice through the root logger ("consider pre-processing"): noise to a user.
        with tempfile.TemporaryDirectory(prefix="headstart-quant-") as scratch, _quiet_root_logger():
            if calibration is None:
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QUInt8, nodes_to_exclude=keep_float)
            else:
                # Shape inference and graph fusions first, as ONNX Runtime's quantization guide advises.
                prepared = Path(scratch) / "prepared.onnx"
                quant_pre_process(str(fp32), str(prepared))
                quantize_static(str(prepared), str(tmp), _Batches(calibration), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
        quantized = onnx.load(str(tmp))
        del quantized.metadata_props[:]
        quantized.metadata_props.extend(source.metadata_props)
        entry = quantized.metadata_props.add()
        entry.key, entry.value = "quantization", f'"int8 {method}"'
        quantized.doc_string = source.doc_string
        onnx.save(quantized, str(tmp))
        os.replace(tmp, out)
    except Exception as err:  # the quantizer raises many exception types
        raise ExportError(f"int8 quantization of {fp32} failed: {type(err).__name__}: {str(err)[:400]}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return method
