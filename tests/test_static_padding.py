"""TF-"same" padding exported as constants that ONNX Runtime folds into the convolutions."""

from collections import Counter

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from timm.layers import Conv2dSame
from torch import nn

from headstart.backbones.engine import _export
from headstart.backbones.static_padding import PaddedConv, same_pads, static_same_padding


def same_network() -> nn.Module:
    """Strided "same" convolutions of several kernels and a dilation, as in timm's TF ports."""
    torch.manual_seed(0)
    return nn.Sequential(Conv2dSame(3, 8, 3, stride=2), nn.ReLU6(), Conv2dSame(8, 8, 5, stride=2, groups=8),
                         nn.Conv2d(8, 8, 1), Conv2dSame(8, 4, 3, stride=1, dilation=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


@pytest.mark.parametrize(("size", "kernel", "stride", "dilation", "pads"), [
    (224, 3, 2, 1, (0, 1)), (112, 5, 2, 1, (1, 2)), (15, 3, 2, 1, (1, 1)), (7, 3, 1, 2, (2, 2)), (4, 1, 2, 1, (0, 0))])
def test_same_pads_are_what_tensorflow_pads(size, kernel, stride, dilation, pads):
    assert same_pads(size, kernel, stride, dilation) == pads
    x = torch.randn(1, 1, size, size)
    conv = Conv2dSame(1, 1, kernel, stride=stride, dilation=dilation)
    padded = PaddedConv(conv, (*pads, *pads))
    assert torch.equal(conv(x), padded(x))


@pytest.mark.parametrize("size", [32, 33])
def test_the_swapped_network_computes_the_same_to_the_bit_and_is_put_back(size):
    network, x = same_network(), torch.randn(3, 3, size, size)
    with torch.no_grad():
        expected = network(x)
        with static_same_padding(network, x) as swapped:
            assert swapped is network
            assert Counter(type(m).__name__ for m in network.modules())["PaddedConv"] == 3
            assert torch.equal(network(x), expected)
    assert not any(isinstance(m, PaddedConv) for m in network.modules())
    assert sum(isinstance(m, Conv2dSame) for m in network.modules()) == 3


def test_a_network_without_same_padding_is_left_as_it_is():
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()
    with static_same_padding(network, torch.randn(1, 3, 8, 8)):
        assert isinstance(network[0], nn.Conv2d)


def optimized_ops(path, tmp_path) -> Counter:
    """The node types of the graph at ``path`` after ONNX Runtime's portable (basic) optimizations."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


def test_the_exported_graph_has_no_pad_left_after_onnx_runtime_folds_it(tmp_path):
    network, x = same_network(), torch.randn(2, 3, 32, 32)
    axes = {"input": {0: "batch"}}
    _export(network, {"input": x}, axes, tmp_path / "dynamic.onnx")
    with static_same_padding(network, x):
        _export(network, {"input": x}, axes, tmp_path / "static.onnx")
    assert optimized_ops(tmp_path / "dynamic.onnx", tmp_path)["Pad"] == 3, "pads computed at run time stay"
    ops = optimized_ops(tmp_path / "static.onnx", tmp_path)
    assert ops["Pad"] == 0 and ops["Conv"] == 4, ops
    session = onnxruntime.InferenceSession(str(tmp_path / "static.onnx"), providers=["CPUExecutionProvider"])
    batch = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = network(batch).numpy()
    np.testing.assert_allclose(session.run(None, {"input": batch.numpy()})[0], expected, atol=1e-5)
