"""Exported image graphs without run-time padding.

timm's TF-ported networks (``tf_efficientnet_lite*``, the bundled defaults) pad "same" in their strided
convolutions (``Conv2dSame``): the pads are computed from the input's size on every call, so the exported graph
computes them at run time and pads with a separate ``Pad`` node. On EfficientNet-Lite0 at 224 px those five
``Pad`` nodes and the layout conversions ONNX Runtime puts around them took 45% of the float32 graph's kernel
time, and with the quantize steps around them 74% of the int8 graph's (``benchmarks/image_int8.py``). The
graph's input size is fixed (only the batch axis is dynamic), so the pads are known at export:
:func:`static_same_padding` swaps each ``Conv2dSame`` for a convolution after a constant zero pad while
exporting, and :func:`fusable_pads` removes the empty optional input the exporter writes into each ``Pad`` node,
which otherwise keeps ONNX Runtime from folding the pad into the convolution after it. The features are the same
to the bit.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import onnx


class PaddedConv(nn.Module):
    """``conv`` after a constant zero pad ``(left, right, top, bottom)``: what a ``Conv2dSame`` computes for one
    input size (the convolution's weights are shared, not copied)."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv, self.pads = conv, pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(F.pad(x, self.pads), c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """The (before, after) zero padding of TF "same" along one axis of ``size`` pixels.

    Example:
        >>> same_pads(224, kernel=3, stride=2, dilation=1)  # TF pads the extra pixel after
        (0, 1)
    """
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


@contextlib.contextmanager
def static_same_padding(module: nn.Module, example: torch.Tensor) -> Iterator[nn.Module]:
    """A block in which ``module``'s ``Conv2dSame`` layers pad as they do for inputs the size of ``example``, with
    constants (their input sizes are taken from one forward pass of its first item); they are put back after."""
    from timm.layers import Conv2dSame  # timm takes seconds to import: only when exporting

    sizes: dict[str, tuple[int, int]] = {}
    hooks = [layer.register_forward_pre_hook(lambda _, args, name=name: sizes.__setitem__(
        name, tuple(args[0].shape[-2:]))) for name, layer in module.named_modules() if isinstance(layer, Conv2dSame)]
    try:
        if hooks:
            with torch.no_grad():
                module(example[:1])
    finally:
        for hook in hooks:
            hook.remove()
    swapped = []
    try:
        for name, (height, width) in sizes.items():
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name)
            conv = getattr(parent, child)
            top, bottom = same_pads(height, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
            left, right = same_pads(width, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
            setattr(parent, child, PaddedConv(conv, (left, right, top, bottom)))
            swapped.append((parent, child, conv))
        yield module
    finally:
        for parent, child, conv in swapped:
            setattr(parent, child, conv)


def fusable_pads(path: Path) -> None:
    """Rewrite the ONNX graph at ``path`` with :func:`drop_empty_inputs` (when it has any)."""
    import onnx

    model = onnx.load(str(path))
    if drop_empty_inputs(model):
        onnx.save(model, str(path))


def drop_empty_inputs(model: onnx.ModelProto) -> bool:
    """Remove the trailing empty inputs of ``model``'s nodes; whether there were any. The exporter writes
    ``Pad``'s optional ``constant_value`` as ``""``, and ONNX Runtime folds a zero pad into the next convolution
    only without it; an omitted trailing optional input and an empty one mean the same."""
    changed = False
    for node in model.graph.node:
        while node.input and node.input[-1] == "":
            node.input.pop()
            changed = True
    return changed
