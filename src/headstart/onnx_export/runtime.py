"""Running an exported graph with ONNX Runtime: raw images or texts in, probabilities out.

:class:`OnnxModel` answers the same ``predict`` / ``predict_proba`` as :class:`~headstart.model.TransferModel`,
preprocessing as the graph's metadata says (image transform, or the tokenizer saved next to the graph), so
``headstart predict FILE.onnx`` and ``headstart serve`` can use an exported graph in place of the PyTorch model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headstart.backbones.base import ImagePreprocess, preprocess_from_dict
from headstart.backbones.timm import build_image_transform
from headstart.data.image_io import open_image
from headstart.data.inputs import as_examples
from headstart.errors import ConfigError, ModelFileError
from headstart.model import TransferModel
from headstart.progress import track

ENGINES = ("torch", "onnx")
#: Where ``headstart export`` writes a model folder's graphs (and ``engine="onnx"`` finds them).
EXPORT_FOLDER = "onnx"


def session(path: str | Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path`` with every graph optimisation.

    Args:
        path: An ``.onnx`` file.
        threads: Intra-op threads; default: PyTorch's thread count (which respects the process's limits).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An exported headstart graph, ready to predict on raw examples.

    Args:
        path: The ``.onnx`` file written by :func:`headstart.onnx_export.export_onnx`.
        threads: Intra-op threads of the ONNX Runtime session.

    Raises:
        ModelFileError: The file is missing, not an ONNX graph, or not one that headstart exported.

    Example:
        >>> model = OnnxModel("runs/demo/onnx/model.onnx")
        >>> model.predict(["shoe.png"])
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path} does not exist; write it with `headstart export MODEL_DIR`")
        try:
            self.session = session(path, threads=threads)
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelFileError(f"{path} is not a readable ONNX graph ({str(err)[:200]})") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        if json.loads(raw.get("format", "null")) != "headstart-onnx":
            raise ModelFileError(f"{path} was not exported by headstart (no headstart metadata); run it with "
                                 "onnxruntime directly")
        self.path = path
        self.metadata: dict[str, Any] = {key: json.loads(value) for key, value in raw.items()}
        self.class_names: list[str] = self.metadata["class_names"]
        self.modality: str = self.metadata["modality"]
        self.temperature = float(self.metadata["temperature"])
        self.preprocess = preprocess_from_dict(self.metadata["preprocess"])
        self.metrics: dict[str, Any] = {}
        self._inputs = self._image_inputs() if isinstance(self.preprocess, ImagePreprocess) else self._text_inputs()

    def _image_inputs(self) -> Callable[[list[Any]], dict[str, np.ndarray]]:
        transform = build_image_transform(self.preprocess)
        return lambda items: {"pixel_values": torch.stack([transform(open_image(i)) for i in items]).numpy()}

    def _text_inputs(self) -> Callable[[list[Any]], dict[str, np.ndarray]]:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path.parent)
        except (OSError, ValueError) as err:
            raise ModelFileError(f"the tokenizer files next to {self.path} are missing or unreadable "
                                 f"({str(err)[:200]}); export the model again") from None

        def tokenize(items: list[Any]) -> dict[str, np.ndarray]:
            texts = [t.lower() for t in items] if self.preprocess.lowercase else list(items)
            tokens = tokenizer(texts, padding=True, truncation=True, max_length=self.preprocess.max_length,
                               return_tensors="np")
            return {name: tokens[name].astype(np.int64) for name in self.metadata["inputs"]}

        return tokenize

    def inputs(self, items: Any) -> dict[str, np.ndarray]:
        """The graph's input arrays for raw examples (preprocessed as the metadata says)."""
        return self._inputs(as_examples(items, self.modality))

    def predict_proba(self, items: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Class probabilities ``[n_examples, n_classes]`` (inputs as for
        :meth:`headstart.model.TransferModel.predict_proba`)."""
        examples = as_examples(items, self.modality)
        parts = [self.session.run(None, self._inputs(examples[start:start + batch_size]))[0]
                 for start in track(range(0, len(examples), batch_size), total=-(-len(examples) // batch_size),
                                    description=f"predict ({self.path.name})", enabled=progress)]
        return np.concatenate(parts).astype(np.float64)

    def predict(self, items: Any, *, batch_size: int = 64, progress: bool = False) -> list[str]:
        """Predicted class names, one per example."""
        proba = self.predict_proba(items, batch_size=batch_size, progress=progress)
        return [self.class_names[i] for i in proba.argmax(axis=1)]


def load_predictor(model: TransferModel | OnnxModel | str | Path, engine: str = "torch", *,
                   allow_download: bool = False) -> TransferModel | OnnxModel:
    """A model ready to predict: a model folder (PyTorch, or its exported graph with ``engine="onnx"``), an
    ``.onnx`` file written by :func:`headstart.export`, or a model object (returned as is).

    Raises:
        ConfigError: Unknown ``engine``.
        ModelFileError: ``engine="onnx"`` on a folder that has not been exported.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if not isinstance(model, (str, Path)):
        return model
    path = Path(model)
    if path.suffix == ".onnx":
        return OnnxModel(path)
    if engine == "onnx":
        graph = path / EXPORT_FOLDER / "model.onnx"
        if not graph.is_file():
            raise ModelFileError(f"{graph} does not exist; run `headstart export {path}` first, or pass an .onnx file")
        return OnnxModel(graph)
    return TransferModel.load(path, allow_download=allow_download)
