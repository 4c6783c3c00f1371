"""The whole model as one ONNX graph: backbone, head, temperature and softmax, with a dynamic batch axis.

A trained model is ``softmax(head(backbone(x)) / temperature)``; :class:`ProbabilityGraph` is exactly that as
one ``nn.Module``, exported with the TorchScript exporter (it handles timm's TF-"same" padding and
transformers encoders with dynamic axes). What the graph cannot hold — how raw images or texts become its
input tensors — is written into the graph's ``metadata_props`` and a sidecar JSON (see :func:`graph_metadata`),
and for text the tokenizer files are saved next to the graph.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart import __version__
from headstart.backbones import Backbone
from headstart.backbones.hf import TransformerTextBackbone
from headstart.backbones.static_padding import drop_empty_inputs, static_same_padding
from headstart.backbones.timm import TimmBackbone
from headstart.errors import ExportError
from headstart.model import TransferModel

OPSET = 17
OUTPUT = "probabilities"


@dataclass(frozen=True)
class GraphInputs:
    """The graph's inputs for one kind of backbone.

    Attributes:
        names: Input names, in the order :class:`ProbabilityGraph` takes them.
        dynamic_axes: Input name -> {axis: name} of the axes that may vary (batch, sequence).
    """

    names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]

    def tensors(self, batch: Any) -> tuple[torch.Tensor, ...]:
        """The graph's inputs from what ``backbone.collate`` returns (a tensor or a dict of tensors)."""
        if isinstance(batch, torch.Tensor):
            return (batch.contiguous(),)
        return tuple(batch[name] for name in self.names)


IMAGE_INPUTS = GraphInputs(("pixel_values",), {"pixel_values": {0: "batch"}})
# Token type ids are left out: single-text inputs have them all zero, which is the encoders' default.
TEXT_INPUTS = GraphInputs(("input_ids", "attention_mask"), {"input_ids": {0: "batch", 1: "sequence"},
                                                            "attention_mask": {0: "batch", 1: "sequence"}})


def graph_inputs(backbone: Backbone) -> GraphInputs:
    """The inputs of the exported graph for ``backbone``.

    Raises:
        ExportError: A backbone family that has no ONNX export (names the ones that have).
    """
    if isinstance(backbone, TimmBackbone):
        return IMAGE_INPUTS
    if isinstance(backbone, TransformerTextBackbone):
        return TEXT_INPUTS
    raise ExportError(f"ONNX export supports timm image backbones (efficientnet_lite0, timm:...) and transformers "
                      f"text backbones (minilm, hf:...); {backbone.ref!r} is a {type(backbone).__name__}. Use the "
                      f"saved PyTorch model (headstart.load) for it")


class ProbabilityGraph(nn.Module):
    """``softmax(head(backbone(inputs)) / temperature)`` as one module, in evaluation mode.

    Args:
        model: The trained model (its modules are shared, not copied).
        inputs: What the graph takes (:func:`graph_inputs`).
    """

    def __init__(self, model: TransferModel, inputs: GraphInputs) -> None:
        super().__init__()
        self.backbone_module = model.backbone.module  # registered so its weights are the graph's initializers
        self.head = model.head
        self.register_buffer("temperature", torch.tensor(float(model.temperature)))
        self._backbone = model.backbone
        self._names = inputs.names
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs[0] if len(inputs) == 1 else dict(zip(self._names, inputs, strict=True))
        logits = self.head(self._backbone.forward(batch))
        return torch.softmax(logits / self.temperature, dim=-1)


def graph_metadata(model: TransferModel, inputs: GraphInputs) -> dict[str, Any]:
    """What a user needs besides the graph: classes, inputs, output and how raw examples become the inputs.

    Written (values JSON-encoded) into the ONNX ``metadata_props`` and, as is, into the sidecar JSON.
    """
    preprocess = model.backbone.preprocess.to_dict()
    if model.modality == "image":
        resize = int(preprocess["input_size"] / preprocess["crop_pct"])
        steps = ["open the image and convert it to RGB",
                 f"resize the shorter side to {resize} px ({preprocess['interpolation']} interpolation, "
                 "torchvision Resize with antialiasing)",
                 f"centre-crop {preprocess['input_size']}x{preprocess['input_size']} px",
                 "scale pixel values to [0, 1] (divide by 255)",
                 f"subtract mean {list(preprocess['mean'])} and divide by std {list(preprocess['std'])} per channel",
                 f"stack as float32 [batch, 3, {preprocess['input_size']}, {preprocess['input_size']}] (NCHW) "
                 "into input 'pixel_values'"]
    else:
        steps = [*(["lowercase the text"] if preprocess["lowercase"] else []),
                 "tokenize with the tokenizer saved next to the graph (AutoTokenizer.from_pretrained(folder))",
                 f"truncate to {preprocess['max_length']} tokens, pad to the longest text of the batch",
                 "feed input_ids and attention_mask as int64 [batch, sequence]"]
    return {"format": "headstart-onnx", "headstart_version": __version__, "modality": model.modality,
            "class_names": model.class_names, "backbone": model.backbone.ref, "strategy": model.strategy,
            "temperature": model.temperature, "inputs": list(inputs.names), "output": OUTPUT,
            "preprocess": preprocess, "preprocess_steps": steps}


def export_graph(model: TransferModel, example_items: list[Any], path: Path) -> dict[str, Any]:
    """Export ``model`` to ``path`` as one fp32 ONNX graph with its metadata; returns the metadata.

    Args:
        model: The model to export.
        example_items: A few raw examples to trace the graph with (two or more, so no size is baked in).
        path: The ``.onnx`` file to write (atomically).

    Raises:
        ExportError: Unsupported backbone, or the exporter failed.
    """
    import onnx

    inputs = graph_inputs(model.backbone)
    graph = ProbabilityGraph(model, inputs)
    example = inputs.tensors(model.backbone.collate(example_items))
    metadata = graph_metadata(model, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # The TorchScript exporter warns that it is deprecated and prints diagnostics: noise to the user.
        # An image graph's input size is fixed, so TF-"same" pads are exported as constants ONNX Runtime folds
        # into the convolutions (:mod:`headstart.backbones.static_padding`).
        padding = (static_same_padding(model.backbone.features_module(), example[0]) if inputs is IMAGE_INPUTS
                   else contextlib.nullcontext())
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False), \
                padding:
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, str(tmp), input_names=list(inputs.names), output_names=[OUTPUT],
                              dynamic_axes={**inputs.dynamic_axes, OUTPUT: {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)
        proto = onnx.load(str(tmp))
        drop_empty_inputs(proto)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
        proto.doc_string = f"headstart {model.strategy} on {model.backbone.ref}: {OUTPUT} over {model.class_names}"
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except Exception as err:  # the exporter fails in many ways; the message is what a user can report
        raise ExportError(f"exporting {model.backbone.ref} to ONNX failed: {type(err).__name__}: "
                          f"{str(err)[:400]}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return metadata
