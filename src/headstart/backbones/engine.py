"""Process-level tuning and the ONNX Runtime engine for frozen feature extraction.

Frozen extraction is the hot path of transfer learning on a CPU: every linear probe, ranking and study
starts with it. Three things make it several times faster than plain eager PyTorch:

* Pre-trained weights push some activations into denormal floats, which x86 CPUs process about 100 times
  slower; :func:`tune_runtime` flushes them to zero (measured: about 4x for EfficientNet-Lite0's forward pass).

* glibc's allocator returns large blocks to the OS after each use by default, so every convolution
  re-faults fresh pages. :func:`tune_runtime` keeps them in the process (measured: about 1.5x for
  channels-last EfficientNet-Lite0 on 2 cores). The equivalent ``MALLOC_*_`` environment variables are read
  only at process start, so this is done in-process with ``mallopt``.
* ONNX Runtime runs the same graph faster than eager PyTorch on CPU. :class:`OnnxEngine` exports a module
  once per weights fingerprint into the cache folder in effect (:func:`headstart.io.cache_dir`) and runs it
  there; with no cache, or one that cannot be written, the graph lives in a temporary folder for the session.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.errors import HeadstartWarning
from headstart.io import cache_dir
from headstart.progress import status

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

_tuned = False


def tune_runtime() -> bool:
    """Flush denormal floats to zero and tune the allocator for repeated large tensor allocations; idempotent.

    Denormals (below 1e-38) become zero, which changes no feature measurably. Then, on glibc only, stops
    glibc from serving large blocks with ``mmap`` and from trimming the heap, so activation buffers are
    reused across batches instead of being page-faulted in again. The process keeps its peak heap
    (a few hundred MB for a CNN batch), which is the right trade for a feature extraction run.

    Returns:
        Whether the allocator was tuned (``False`` off Linux/glibc).
    """
    global _tuned
    if _tuned:
        return True
    torch.set_flush_denormal(True)
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))
    _tuned = all(libc.mallopt(param, value) == 1 for param, value in settings)
    return _tuned


class OnnxEngine:
    """A module exported to ONNX and run with ONNX Runtime on CPU.

    Args:
        module: The model to export (evaluation mode is used); its output must be ``[batch, dim]``.
        example: An example input batch ``[batch, ...]``; the batch axis is exported as dynamic.
        key: Names the exported file (a weights fingerprint), so each set of weights is exported once.
        progress: Say so while exporting (which takes seconds to minutes, once).

    Raises:
        RuntimeError: Export or session creation failed (callers fall back to PyTorch).
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, key: str, *, progress: bool = False) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        # The session reads the whole graph when it is created, so a temporary export can go right after.
        with tempfile.TemporaryDirectory(prefix="headstart-onnx-") as scratch:
            with status("preparing the backbone for ONNX Runtime (exported once per weights)", enabled=progress):
                path = _graph(module, example, key, Path(scratch))
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """Features for a contiguous float32 batch, as a float32 array."""
        array = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        return self.session.run(None, {self.input_name: array})[0]


def _graph(module: nn.Module, example: torch.Tensor, key: str, scratch: Path) -> Path:
    """The exported graph of ``module``: in the cache when there is one (exported there once), else in
    ``scratch``."""
    root = cache_dir()
    if root is not None:
        path = root / "onnx" / f"{key}.onnx"
        if path.is_file():
            return path
        try:
            _export(module, example, path)
            return path
        except OSError as err:
            warnings.warn(f"cannot write to the cache folder {root} ({err.strerror or err}); the ONNX graph is "
                          "not cached", HeadstartWarning, stacklevel=4)
    path = scratch / f"{key}.onnx"
    _export(module, example, path)
    return path


def _export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    was_training = module.training
    module.eval()
    try:
        # The TorchScript exporter handles timm CNNs (including TF "same" padding) with a dynamic batch
        # axis; it warns that it is deprecated, which is noise to a user extracting features.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example.contiguous(),), str(tmp), input_names=["input"],
                              output_names=["features"], dynamic_axes={"input": {0: "batch"}},
                              opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        module.train(was_training)
