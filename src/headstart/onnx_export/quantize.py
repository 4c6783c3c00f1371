"""int8 quantization of an exported graph with ``onnxruntime.quantization``.

Transformers get dynamic quantization (int8 weights, activations quantized per batch at run time: no
calibration data, and the usual choice for attention models on CPU). CNNs get static quantization: int8
weights per channel and activation ranges calibrated on the model's own training images (QDQ format, which
ONNX Runtime fuses into int8 convolutions). Pooling, head, temperature and softmax stay in float: they cost
nothing and carry the probabilities.

A CNN's weights are signed with a 7-bit range (``reduce_range``), one scale per output channel, as in the
extraction engine's int8 graphs (:mod:`headstart.backbones.int8`). Full 8-bit signed weights saturate in the
instruction that multiplies them on x86 CPUs without VNNI (AVX2 only); unsigned weights avoid that but take
ONNX Runtime's slow path: 0.2x float32's speed on EfficientNet-Lite0 (``benchmarks/image_int8.py``), against
about 2x for the 7-bit graph with the same probe accuracy. A transformer's dynamically quantized weights are
the same kind (per channel too): 1.76x unsigned 8-bit ones on MiniLM, as faithful (``benchmarks/text_int8.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from headstart.backbones.int8 import CalibrationBatches, float_nodes, quiet_quantizer
from headstart.errors import ExportError


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
        with tempfile.TemporaryDirectory(prefix="headstart-quant-") as scratch, quiet_quantizer():
            if calibration is None:
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=True, nodes_to_exclude=keep_float)
            else:
                # Shape inference and graph fusions first, as ONNX Runtime's quantization guide advises.
                prepared = Path(scratch) / "prepared.onnx"
                quant_pre_process(str(fp32), str(prepared))
                quantize_static(str(prepared), str(tmp), CalibrationBatches(calibration),
                                quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8,
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
