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
import itertools
import os
import platform
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.backbones.int8 import calibration_digest, dynamic_int8, static_int8
from headstart.backbones.static_padding import fusable_pads
from headstart.errors import ConfigError, HeadstartWarning
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


#: Where a backbone's frozen features are computed (see :class:`ExtractionEngine`).
ENGINES = ("auto", "onnx", "int8", "torch")
#: What an exported graph must reproduce of PyTorch's features before it is used: the largest absolute
#: difference and the smallest cosine similarity per example (int8 graphs are held to the cosine only).
PARITY_MAX_ABS = 1e-4
PARITY_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.98
#: Statically quantized image graphs (7-bit weights, see :mod:`headstart.backbones.int8`) are further from float32:
#: EfficientNet-Lite0 on Fashion-MNIST measured a mean cosine of 0.94, the lowest 0.88 over its 64 calibration
#: images (where the check runs) and 0.84 over 500 test images; signed 8-bit weights saturating on a CPU without
#: VNNI gave a mean of 0.79 (``benchmarks/image_int8.py``).
INT8_STATIC_MIN_COSINE = 0.8
#: An image backbone's int8 graph is calibrated on the first this many images it extracts (a fit's training images).
CALIBRATION_EXAMPLES = 64

Batch = torch.Tensor | dict[str, torch.Tensor]


class OnnxEngine:
    """A module exported to ONNX and run with ONNX Runtime on CPU, checked against PyTorch when it is loaded.

    Args:
        module: The model to export (evaluation mode is used); its output must be ``[batch, dim]``. A dict
            batch is passed as positional arguments, in the dict's order.
        example: An example input batch: a tensor ``[batch, ...]`` or a dict of them (token ids and masks);
            the parity check runs on it, so it should look like real input (varied lengths for text).
        key: Names the exported file (a weights fingerprint), so each set of weights is exported once.
        dynamic: The axes of each input that vary, beyond the batch axis (``{"input_ids": {1: "sequence"}}``).
        int8: Quantize to int8, cached beside the float graph: dynamic quantization, or static with ``calibration``.
        calibration: Images ``[n, 3, H, W]`` (preprocessed as for float32) to quantize statically on
            (:func:`~headstart.backbones.int8.static_int8`); they replace ``example`` in the parity check.
        calibrated: The digest of the calibration images of a static graph that must be used (a saved model's);
            the graph must then be in the cache.
        concurrent_runs: How many batches :meth:`run_all` runs at once, each on ``threads // concurrent_runs``
            intra-op threads (``threads``: PyTorch's thread count; never more runs than threads). Small
            matrices, as in a transformer on short texts, keep two single-threaded runs busier than one run
            split over two threads.
        progress: Say so while exporting (which takes seconds to minutes, once).

    Raises:
        RuntimeError: Export, session creation or the parity check failed (callers fall back to PyTorch).
    """

    def __init__(self, module: nn.Module, example: Batch, key: str, *,
                 dynamic: dict[str, dict[int, str]] | None = None, int8: bool = False,
                 calibration: torch.Tensor | None = None, calibrated: str | None = None, concurrent_runs: int = 1,
                 progress: bool = False) -> None:
        import onnxruntime

        static = int8 and calibration is not None
        own = calibration_digest(calibration.numpy()) if static else None
        #: The digest of the images a static int8 graph was calibrated on (``None``: no static graph).
        self.calibration = (calibrated or own) if static else None

        threads = torch.get_num_threads()
        self.concurrent_runs = max(1, min(concurrent_runs, threads))
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, threads // self.concurrent_runs)
        # Idle worker threads otherwise spin after each run, taking CPU from whatever runs next (PyTorch in
        # the same process, other processes): measured 1.25x faster text extraction on a loaded 2-core machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        inputs = example if isinstance(example, dict) else {"input": example}
        axes = {name: {0: "batch", **(dynamic or {}).get(name, {})} for name in inputs}
        # The session reads the whole graph when it is created, so a temporary export can go right after.
        with tempfile.TemporaryDirectory(prefix="headstart-onnx-") as scratch:
            with status("preparing the backbone for ONNX Runtime (exported once per weights)", enabled=progress):
                path = _graph(module, inputs, axes, key, Path(scratch))
                if static:
                    path = static_int8(path, calibration.numpy() if self.calibration == own else None,
                                       self.calibration)
                elif int8:
                    path = dynamic_int8(path)
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        floor = INT8_STATIC_MIN_COSINE if static else INT8_MIN_COSINE if int8 else PARITY_MIN_COSINE
        self._check_parity(module, calibration if static else example, floor, exact=not int8)

    def __call__(self, batch: Batch) -> np.ndarray:
        """Features for a batch (float32 tensor, or a dict of input tensors), as a float32 array."""
        if isinstance(batch, dict):
            feed = {name: np.ascontiguousarray(batch[name].numpy()) for name in self.input_names}
        else:
            feed = {self.input_names[0]: np.ascontiguousarray(batch.numpy(), dtype=np.float32)}
        return self.session.run(None, feed)[0]

    def run_all(self, batches: Iterable[Batch]) -> Iterator[np.ndarray]:
        """Each batch's features, in order. With several concurrent runs, up to twice that many batches are
        in flight on a thread pool: ONNX Runtime releases the GIL while it runs, so the runs overlap each
        other and the collation of the next batches in the calling thread."""
        if self.concurrent_runs == 1:
            yield from map(self, batches)
            return
        with ThreadPoolExecutor(self.concurrent_runs, thread_name_prefix="headstart-onnx") as pool:
            pending: deque[Future[np.ndarray]] = deque()
            for batch in batches:
                pending.append(pool.submit(self, batch))
                if len(pending) == 2 * self.concurrent_runs:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _check_parity(self, module: nn.Module, example: Batch, floor: float, exact: bool) -> None:
        was_training = module.training
        module.eval()
        with torch.inference_mode():
            expected = (module(*example.values()) if isinstance(example, dict) else module(example)).float().numpy()
        module.train(was_training)
        got = self(example)
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
        # Rows that are (near) zero in both have no direction to compare; the absolute difference covers them.
        cosine = float(np.min(np.sum(got * expected, axis=1) / norms, initial=1.0, where=norms > 1e-12))
        largest = float(np.max(np.abs(got - expected)))
        if cosine < floor or (exact and largest > PARITY_MAX_ABS):
            raise RuntimeError(f"the ONNX graph's features differ from PyTorch's (max |difference| {largest:.2e}, "
                               f"cosine {cosine:.6f})")


def _graph(module: nn.Module, inputs: dict[str, torch.Tensor], axes: dict[str, dict[int, str]], key: str,
           scratch: Path) -> Path:
    """The exported graph of ``module``: in the cache when there is one (exported there once), else in
    ``scratch``."""
    root = cache_dir()
    if root is not None:
        path = root / "onnx" / f"{key}.onnx"
        if path.is_file():
            return path
        try:
            _export(module, inputs, axes, path)
            return path
        except OSError as err:
            warnings.warn(f"cannot write to the cache folder {root} ({err.strerror or err}); the ONNX graph is "
                          "not cached", HeadstartWarning, stacklevel=4)
    path = scratch / f"{key}.onnx"
    _export(module, inputs, axes, path)
    return path


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], axes: dict[str, dict[int, str]], path: Path
            ) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    was_training = module.training
    module.eval()
    try:
        # The TorchScript exporter handles timm CNNs (including TF "same" padding) and BERT-like encoders with
        # dynamic axes; it warns that it is deprecated, which is noise to a user extracting features.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(v.contiguous() for v in inputs.values()), str(tmp),
                              input_names=list(inputs), output_names=["features"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        fusable_pads(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        module.train(was_training)


def first_examples(batches: Iterable[torch.Tensor], count: int) -> tuple[torch.Tensor | None, Iterator[torch.Tensor]]:
    """The first ``count`` examples of ``batches`` as one tensor (``None`` when there are none), and all the
    batches again, those already read included, for extraction."""
    batches = iter(batches)
    taken: list[torch.Tensor] = []
    for batch in batches:
        taken.append(batch)
        if sum(map(len, taken)) >= count:
            break
    return (torch.cat(taken)[:count] if taken else None), itertools.chain(taken, batches)


class ExtractionEngine:
    """Where a backbone's frozen features are computed, and its ONNX Runtime session for the current weights.

    Args:
        engine: ``"auto"``: ONNX Runtime while the weights are the ones loaded, PyTorch once they have changed
            (fine-tuning; exporting after every change would cost more than it saves); ``"onnx"``: always ONNX
            Runtime (exported again when the weights change); ``"int8"``: as ``"onnx"``, quantized to int8
            (image backbones: calibrated on the first images extracted, :mod:`headstart.backbones.int8`);
            ``"torch"``: PyTorch only.

    Raises:
        ConfigError: An unknown engine.
    """

    def __init__(self, engine: str = "auto") -> None:
        if engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.engine = engine
        self.loaded_version: object = None
        self.loaded_fingerprint: str | None = None
        self.failed = False
        #: The digest of the images the loaded weights' static int8 graph is calibrated on: set by its first
        #: build, or restored from a saved model so that it predicts with the graph it was fitted with.
        self.calibration: str | None = None
        self._session: tuple[str, OnnxEngine] | None = None

    def loaded(self, backbone: Any) -> None:
        """Record ``backbone``'s current weights as the loaded ones (its fingerprint is taken when needed)."""
        self.loaded_version, self.loaded_fingerprint = backbone.weights_version(), None

    def remember_loaded(self, backbone: Any) -> None:
        """Take the loaded weights' fingerprint now if they are still current (before a copy of the backbone
        is made, whose tensors no longer match the recorded version)."""
        if self.loaded_fingerprint is None and self.loaded_version == backbone.weights_version():
            self.loaded_fingerprint = backbone.fingerprint()

    def calibrated(self, fingerprint: str) -> str | None:
        """The calibration digest of the static int8 graph for the weights ``fingerprint``, where it is known
        (built in this process, or restored for the loaded weights); ``None`` otherwise."""
        if self._session is not None and self._session[0] == fingerprint:
            return self._session[1].calibration
        return self.calibration if fingerprint == self.loaded_fingerprint else None

    def session(self, backbone: Any, build: Callable[[str], OnnxEngine]) -> OnnxEngine | None:
        """The ONNX Runtime session for ``backbone``'s current weights (built once per fingerprint by
        ``build(fingerprint)``), or ``None`` where PyTorch runs: engine ``"torch"``, changed weights under
        ``"auto"``, or a failed export or parity check (warned about once). A static int8 graph built for the
        loaded weights records its :attr:`calibration`."""
        if self.engine == "torch" or self.failed:
            return None
        self.remember_loaded(backbone)
        fingerprint = backbone.fingerprint()
        if self.engine == "auto" and fingerprint != self.loaded_fingerprint:
            return None
        if self._session is None or self._session[0] != fingerprint:
            try:
                self._session = (fingerprint, build(fingerprint))
                if fingerprint == self.loaded_fingerprint and self._session[1].calibration is not None:
                    self.calibration = self._session[1].calibration
            except Exception as err:  # any exporter/runtime/parity failure: PyTorch gives the same features
                self.failed = True
                warnings.warn(f"ONNX Runtime cannot run {backbone.ref} ({str(err)[:300]}); using PyTorch",
                              HeadstartWarning, stacklevel=4)
                return None
        return self._session[1]

    def __getstate__(self) -> dict[str, Any]:
        # An ONNX Runtime session cannot be pickled or deep-copied (strategies deep-copy the backbone they
        # train); a copy builds its own session when it first needs one.
        return {**self.__dict__, "_session": None}
