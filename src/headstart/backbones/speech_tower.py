"""The bundled speech embedding graph cut in two, so that its network can be fine-tuned.

The ONNX graph of ``speech_embedding`` is a log-mel front end (an ONNX ``Loop`` over 775 ms windows that no
PyTorch converter handles; it has no weights worth training) followed by a convolutional tower (330k weights).
The front end stays an ONNX graph run by ONNX Runtime; the tower is converted to a PyTorch module by
``onnx2torch``, after its ``SAME_UPPER`` paddings are written out as explicit pads (the converter does not take
``auto_pad``). The tower is convolutional over time: every 8 log-mel frames give one 96-d output frame, and
output frame ``i`` reads only input frames ``8i .. 8i + 75``, so clips padded at their end to a common length
give, for their first :func:`output_frames` frames, exactly what they give alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

#: The front end's output (log-mel frames ``[clips, frames, 32]``) and the whole graph's input and output.
MEL_OUTPUT = "Squeeze:0"
SAMPLES_INPUT = "samples:0"
EMBEDDING_OUTPUT = "default"


def front_end_graph(path: str | Path) -> bytes:
    """The graph ``samples [clips, n] -> log-mel frames [clips, frames, 32]`` (the original graph stopped at its
    log-mel node), serialised for ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    last = next(i for i, node in enumerate(nodes) if MEL_OUTPUT in node.output)
    del model.graph.node[last + 1:]
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(MEL_OUTPUT, TensorProto.FLOAT, None))
    return model.SerializeToString()


def tower_graph(path: str | Path) -> Any:
    """The tower ``log-mel frames [clips, frames, 32] -> embeddings [clips, output frames, 1, 96]`` as an ONNX
    model (its BatchNorm layers folded into the convolutions, as exported), paddings written out explicitly."""
    import onnx
    from onnx import helper

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    model = onnx.utils.Extractor(graph).extract_model([MEL_OUTPUT], [EMBEDDING_OUTPUT])
    for node in model.graph.node:
        pad = next((a for a in node.attribute if a.name == "auto_pad" and a.s == b"SAME_UPPER"), None)
        if pad is None:
            continue
        node.attribute.remove(pad)
        node.attribute.append(helper.make_attribute("pads", _same_pads(node)))
    return model


def tower_module(graph: Any) -> nn.Module:
    """The tower graph of :func:`tower_graph` as a PyTorch module with the same weights."""
    import onnx2torch

    return onnx2torch.convert(graph)


def _same_pads(node) -> list[int]:
    """Explicit ``[top, left, bottom, right]`` pads equal to ``SAME_UPPER`` for this graph's stride-1
    convolutions; its one ``SAME_UPPER`` pooling halves an even width (16 mel bands), which needs no pad."""
    if node.op_type != "Conv":
        return [0, 0, 0, 0]
    height, width = next(a.ints for a in node.attribute if a.name == "kernel_shape")
    return [(height - 1) // 2, (width - 1) // 2, height // 2, width // 2]


def output_frames(mel_frames: int) -> int:
    """How many 96-d frames the tower gives for ``mel_frames`` log-mel frames (valid convolutions over time:
    3 + 2 rows lost, pool by 2, 4 rows lost twice with a pool by 2 between them, pool by 2, 2 rows lost)."""
    first = (mel_frames - 4) // 2
    second = (first - 8) // 2
    return max((second - 8) // 2 - 2, 0)


def masked_pool(frames: torch.Tensor, counts: list[int], pooling: str) -> torch.Tensor:
    """Pool ``frames [clips, T, 96]`` over each clip's first ``counts[i]`` frames (``"mean"`` or ``"max"``)."""
    mask = torch.arange(frames.shape[1])[None, :] < torch.tensor(counts)[:, None]
    if pooling == "max":
        return frames.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
    return (frames * mask[..., None]).sum(dim=1) / torch.tensor(counts, dtype=frames.dtype)[:, None]
