"""int8 versions of the graphs frozen features are extracted with (``engine="int8"``), made once beside the float graph.

Text encoders get dynamic quantization: int8 weights (signed, 7-bit range, per channel), activations quantized
per batch at run time, no calibration data. Image CNNs get static quantization: int8 weights and activation
ranges calibrated on the user's own images (the first ones the backbone extracts, a fit's training images).
Dynamic quantization is a trap for CNNs on x86 CPUs without VNNI (AVX2 only): measured on EfficientNet-Lite0
(``benchmarks/image_int8.py``), its convolutions ran at 0.15x float32's speed, while the static graph made here
ran at about 1.1x there; on a CPU with AVX-512 VNNI, 1.8-2.1x (its float graph's "same" pads made static first,
:mod:`headstart.backbones.static_padding`).

Static graphs have signed weights with 7-bit range (``reduce_range``), one scale per output channel, in QDQ format,
which ONNX Runtime fuses into int8 convolutions. Full 8-bit signed weights saturate in the AVX2 instruction that
multiplies them (feature cosine to float32 0.79 in that benchmark, against 0.94 with 7 bits); unsigned weights
avoid saturation but take the slow path. Pooling and every shape computation stay in float (:func:`float_nodes`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

_HEAVY = {"Conv", "MatMul"}
_SHAPE_CONSUMERS = {"Pad", "Reshape", "Slice", "Expand", "Resize", "ConstantOfShape", "Tile"}
#: Calibration batches are run this many examples at a time (the ranges are the same; memory is smaller).
_CALIBRATION_BATCH = 16


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
def quiet_quantizer() -> Iterator[None]:
    """A block in which ONNX Runtime's quantizer does not log its advice ("consider pre-processing") through the
    root logger: noise to a user."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


class CalibrationBatches:
    """ONNX Runtime's ``CalibrationDataReader``: the calibration input batches, once."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, ``None`` after the last."""
        return next(self._batches, None)


def calibration_digest(images: np.ndarray) -> str:
    """A short hash of calibration images (their shape and values): names the static graph made from them."""
    digest = hashlib.sha256(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def dynamic_int8(fp32: Path) -> Path:
    """The dynamically quantized version of the graph ``fp32`` beside it (made once): signed weights with a 7-bit
    range, one scale per output channel, as the static image graphs. On MiniLM (``benchmarks/text_int8.py``:
    1,000 WordNet glosses, a CPU with AVX-512 VNNI) they ran 1.76x faster than the unsigned 8-bit weights used
    before (611 against 347 sentences/s; float32 316) with the same fidelity (lowest cosine to the float32
    embeddings 0.979 against 0.981); signed per-tensor scales were a little faster but fell to cosine 0.90."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = fp32.with_name(f"{fp32.stem}-int8-s7.onnx")
    if not path.is_file():
        with _atomic(path) as tmp, quiet_quantizer():
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    return path


def static_int8(fp32: Path, images: np.ndarray | None, digest: str) -> Path:
    """The statically quantized version of the image graph ``fp32`` beside it, calibrated on ``images``
    (``[n, 3, H, W]`` float32, preprocessed as for ``fp32``) whose :func:`calibration_digest` is ``digest``;
    made once per weights and calibration images (MinMax activation ranges).

    Raises:
        FileNotFoundError: No ``images`` were given and the graph calibrated on ``digest`` is not there.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = fp32.with_name(f"{fp32.stem}-int8-static-{digest}.onnx")
    if path.is_file():
        return path
    if images is None:
        raise FileNotFoundError(f"the int8 graph calibrated on the training images ({path.name}) is not in the "
                                "cache folder; fit the model again on this machine to use engine 'int8'")
    batches = [{"input": images[i:i + _CALIBRATION_BATCH]} for i in range(0, len(images), _CALIBRATION_BATCH)]
    with tempfile.TemporaryDirectory(prefix="headstart-quant-") as scratch, _atomic(path) as tmp, quiet_quantizer():
        # Shape inference and graph fusions first, as ONNX Runtime's quantization guide advises.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(str(prepared), str(tmp), CalibrationBatches(batches), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=float_nodes(onnx.load(str(prepared))))
    return path


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed to ``path`` when the block succeeds."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
