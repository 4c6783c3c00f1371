"""The Backbone interface: where transferred knowledge comes from.

A backbone turns raw examples (image paths or arrays, texts, audio files) into fixed-size feature vectors. It owns its
preprocessing, which is saved with every model built on it, so training and inference can never preprocess
differently.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.backbones.deferred import DeferredModule, memoised_fingerprint
from headstart.backbones.engine import CALIBRATION_EXAMPLES, ExtractionEngine, OnnxEngine, first_examples
from headstart.backbones.preprocess import PREPROCESSING as PREPROCESSING
from headstart.backbones.preprocess import ImagePreprocess as ImagePreprocess
from headstart.backbones.preprocess import Preprocess
from headstart.backbones.preprocess import TextPreprocess as TextPreprocess
from headstart.backbones.preprocess import preprocess_from_dict as preprocess_from_dict
from headstart.backbones.preprocess import register_preprocessing as register_preprocessing
from headstart.backbones.preprocess import restore_preprocess as restore_preprocess
from headstart.data.modality import Modality
from headstart.errors import ConfigError
from headstart.progress import track


@dataclass(frozen=True)
class SourceHead:
    """The classifier a backbone was pre-trained with (used by LEEP); logits = features @ weight.T + bias."""

    weight: np.ndarray
    bias: np.ndarray
    class_names: list[str] = field(default_factory=list)


class Backbone(ABC):
    """A pre-trained feature extractor.

    Subclasses set ``ref`` (the string that rebuilds them through :func:`headstart.backbones.create_backbone`),
    ``modality``, ``feature_dim``, ``preprocess`` and ``module`` (the ``nn.Module`` whose parameters fine-tuning
    trains), and implement :meth:`collate` and :meth:`forward`.

    ``architecture`` is set when ``ref`` alone does not name the network (``ckpt:`` backbones): then it is the
    reference that builds the same network, into which saved weights are loaded.

    A family may set ``module`` later: :meth:`defer_module` leaves it to be built when first used, so a run
    whose features are cached never builds it.
    """

    ref: str
    architecture: str | None = None
    modality: Modality
    feature_dim: int
    preprocess: Preprocess
    #: Whether training can change the weights (``False`` for a backbone that runs in ONNX Runtime only).
    trainable: bool = True
    #: Where frozen features are computed, for families that can export to ONNX Runtime (set by them).
    extraction_engine: ExtractionEngine | None = None
    #: Batches the ONNX Runtime engine runs at once (see :class:`~headstart.backbones.engine.OnnxEngine`).
    onnx_concurrent_runs: int = 1

    @property
    def module(self) -> nn.Module:
        """The ``nn.Module`` whose parameters fine-tuning trains (a deferred one is built now)."""
        if "_module" not in self.__dict__:
            deferred = self.__dict__.get("_deferred")
            if deferred is None:
                raise AttributeError(f"{type(self).__name__} has no module")
            # First use may come inside inference mode (export, prediction): weights built there would be
            # inference tensors, which have no version counter and cannot be trained later.
            with torch.inference_mode(False):
                self.adopt_module(deferred.build())
            del self._deferred
            if self.extraction_engine is not None:
                self.extraction_engine.loaded(self)
        return self._module

    @module.setter
    def module(self, module: nn.Module) -> None:
        self._module = module

    def defer_module(self, deferred: DeferredModule) -> None:
        """Build ``module`` with ``deferred`` when it is first used, not now; until then :meth:`fingerprint`
        is memoised on disk (:func:`~headstart.backbones.deferred.memoised_fingerprint`)."""
        self.__dict__.pop("_module", None)
        self._deferred = deferred

    def adopt_module(self, module: nn.Module) -> None:
        """Take a freshly built deferred module as ``module`` (families that adapt a built network, e.g. to
        keep its classifier aside, override this)."""
        self.module = module

    def has_source_head(self) -> bool:
        """Whether :meth:`source_head` is not ``None``, answered without building a deferred module."""
        deferred = self.__dict__.get("_deferred")
        return deferred.source_head if deferred is not None else self.source_head() is not None

    @abstractmethod
    def collate(self, items: Sequence[Any], *, augment: str = "off") -> Any:
        """Turn raw examples into one model-input batch.

        Args:
            items: Raw examples.
            augment: ``"off"`` for evaluation preprocessing; ``"light"`` / ``"strong"`` for training-time
                augmentation presets built on the same preprocessing (images; text backbones ignore it).
        """

    def input_lengths(self, items: Sequence[Any]) -> np.ndarray | None:
        """How long each example's input is once collated (tokens), for batching examples of similar length
        together; ``None`` where inputs have one size (images)."""
        return None

    @abstractmethod
    def forward(self, batch: Any) -> torch.Tensor:
        """Features ``[batch, feature_dim]`` for a collated batch; differentiable (used by fine-tuning)."""

    @abstractmethod
    def layer_groups(self) -> list[nn.Module]:
        """The backbone's layer groups ordered bottom (input) to top, for gradual unfreezing and
        layer-wise learning rates. Every trainable parameter of ``module`` is in exactly one group."""

    def config(self) -> dict[str, Any]:
        """What rebuilds this backbone: its reference (and architecture, when set) and its preprocessing."""
        config = {"ref": self.ref, "modality": self.modality, "feature_dim": self.feature_dim,
                  "preprocess": self.preprocess.to_dict()}
        if self.architecture is not None:
            config["architecture"] = self.architecture
        return config

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``state`` (strictly) as this backbone's own pre-trained weights, as if it had been built with
        them: a saved model folder restores the weights it holds this way."""
        self.module.load_state_dict(state, strict=True)
        if self.extraction_engine is not None:
            self.extraction_engine.loaded(self)

    def weights_version(self) -> tuple[tuple[int, int, int], ...]:
        """Identifies the current weights without reading them: each tensor's identity, address and version
        counter. In-place changes (optimizer steps, ``load_state_dict``, BatchNorm statistics) bump a version
        counter; a change through ``.data`` does not, so code editing weights that way calls
        :meth:`weights_changed`."""
        return tuple((id(t), t.data_ptr(), t._version) for t in (*self.module.parameters(), *self.module.buffers()))

    def weights_changed(self) -> None:
        """Forget the memoised :meth:`fingerprint` (after an edit :meth:`weights_version` cannot see)."""
        self.__dict__.pop("_fingerprint_memo", None)

    def fingerprint(self) -> str:
        """A content hash of the weights and preprocessing; feature caches are keyed by it.

        Hashing every weight takes a fraction of a second for a transformer, so the hash is computed once per
        weights version (:meth:`weights_version`) and reused by every cache lookup until the weights change.
        """
        config = json.dumps(self.config(), sort_keys=True)
        deferred = self.__dict__.get("_deferred")
        if deferred is not None:  # still the weights files' own weights
            return memoised_fingerprint(deferred, config, lambda: self._hash_weights(config))
        key = (config, self.weights_version())
        memo = self.__dict__.get("_fingerprint_memo")
        if memo is not None and memo[0] == key:
            return memo[1]
        self._fingerprint_memo = (key, self._hash_weights(config))
        return self._fingerprint_memo[1]

    def _hash_weights(self, config: str) -> str:
        digest = hashlib.sha256(config.encode())
        for name, tensor in sorted(self.module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]

    def __getstate__(self) -> dict[str, Any]:
        # A copy (strategies deep-copy the backbone they train) has the same weights in new tensors: the
        # fingerprint memoised for the current weights stays valid for it, re-keyed in __setstate__. A subclass
        # that overrides this without calling it leaves the flag out, and its copies hash again.
        engine = self.__dict__.get("extraction_engine")
        if "_deferred" in self.__dict__:  # nothing built, nothing to remember: the copy builds its own
            return {**self.__dict__, "_fingerprint_memo": None, "_fingerprint_current": False}
        if engine is not None:
            engine.remember_loaded(self)
        memo = self.__dict__.get("_fingerprint_memo")
        current = memo is not None and memo[0][1] == self.weights_version()
        return {**self.__dict__, "_fingerprint_memo": memo if current else None, "_fingerprint_current": current}

    def __setstate__(self, state: dict[str, Any]) -> None:
        current = state.pop("_fingerprint_current", False)
        self.__dict__.update(state)
        memo = self.__dict__.pop("_fingerprint_memo", None)
        if current and memo is not None:
            self._fingerprint_memo = ((memo[0][0], self.weights_version()), memo[1])

    @property
    def engine(self) -> str:
        """Where :meth:`embed` runs: ``"auto"``, ``"onnx"``, ``"int8"`` or ``"torch"`` (see
        :class:`~headstart.backbones.engine.ExtractionEngine`); ``"torch"`` for families without ONNX support."""
        return self.extraction_engine.engine if self.extraction_engine is not None else "torch"

    @engine.setter
    def engine(self, engine: str) -> None:
        if self.extraction_engine is None:
            raise ConfigError(f"backbone {self.ref} runs in PyTorch only; its engine cannot be {engine!r}")
        loaded = self.extraction_engine
        self.extraction_engine = ExtractionEngine(engine)
        self.extraction_engine.loaded_version = loaded.loaded_version
        self.extraction_engine.loaded_fingerprint = loaded.loaded_fingerprint

    def features_key(self) -> str | None:
        """What names this backbone's frozen features in a cache: the fingerprint, plus the engine's
        precision when it is not float32 (int8 features differ from the float32 ones) and, for an image
        backbone's int8 graph, the digest of the images it was calibrated on. ``None`` (not cached) while that
        graph is not calibrated yet (its first extraction calibrates it), or when int8 fell back to PyTorch."""
        fingerprint = self.fingerprint()
        if self.engine != "int8":
            return fingerprint
        if self.extraction_engine.failed:
            return None
        if self.modality != "image":
            return f"{fingerprint}-int8-s7"  # signed 7-bit weights (unsigned 8-bit ones were "-int8")
        calibration = self.extraction_engine.calibrated(fingerprint)
        return f"{fingerprint}-int8-{calibration}" if calibration else None

    def describe_inputs(self, items: Sequence[Any]) -> dict[str, Any]:
        """What the metrics should say about how this backbone treats ``items`` (e.g. audio clips longer than
        its input limit); empty by default."""
        return {}

    def source_head(self) -> SourceHead | None:
        """The pre-training classifier, where the weights ship one; ``None`` otherwise."""
        return None

    def progress_description(self, label: str = "") -> str:
        """What the progress display of :meth:`embed` says, e.g. ``"features train (efficientnet_lite0)"``."""
        return f"features {label} ({self.ref})" if label else f"features ({self.ref})"

    def batches(self, items: Sequence[Any], batch_size: int) -> Iterator[Sequence[Any]]:
        """Consecutive slices of ``items``."""
        for start in range(0, len(items), batch_size):
            yield items[start:start + batch_size]

    def extraction(self, progress: bool = False, sample: Any = None) -> Callable[[Any], np.ndarray]:
        """The function that turns a collated batch into frozen features (float32 array) for :meth:`embed`:
        PyTorch here; families with a faster engine (ONNX Runtime) return theirs. ``sample``: the first
        collated examples to extract, for an image backbone under int8 (its graph is calibrated on them)."""
        return self._torch_features

    def _torch_features(self, batch: Any) -> np.ndarray:
        device = next(self.module.parameters(), torch.empty(0)).device
        if device.type != "cpu":  # a backbone being trained on an accelerator
            batch = {k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict) else batch.to(device)
        return self.forward(batch).float().cpu().numpy()

    def embed(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False, label: str = ""
              ) -> np.ndarray:
        """Frozen features ``[len(items), feature_dim]`` as float32, in evaluation mode.

        Args:
            items: Raw examples (image paths / arrays / PIL images, or texts).
            batch_size: Examples per forward pass.
            progress: Show progress.
            label: Which examples these are (``"train"``, ``"test"``), named in the progress display.
        """
        batches = (self.collate(batch) for batch in self.batches(items, batch_size))
        return self.extract(batches, len(items), -(-len(items) // batch_size), progress=progress, label=label)

    def extract(self, batches: Iterable[Any], count: int, total: int, *, progress: bool = False, label: str = "",
                views: int = 1) -> np.ndarray:
        """Frozen features ``[count, feature_dim]`` of already collated ``batches`` (``total`` of them, holding
        ``count`` examples in all), in evaluation mode, through the engine in effect (:meth:`extraction`).
        With ``views`` above 1, each example fills that many consecutive rows of a batch (test-time views,
        :mod:`headstart.backbones.views`) and its features are their mean."""
        self.module.eval()
        sample = None
        if self.engine == "int8" and self.modality == "image":
            sample, batches = first_examples(batches, CALIBRATION_EXAMPLES)
        run = self.extraction(progress, sample)
        out = np.empty((count, self.feature_dim), dtype=np.float32)
        done = 0
        with torch.inference_mode():
            features = run.run_all(batches) if isinstance(run, OnnxEngine) else map(run, batches)
            for feats in track(features, total=total, unit="batches", description=self.progress_description(label),
                               enabled=progress):
                if views > 1:
                    feats = feats.reshape(-1, views, feats.shape[-1]).mean(axis=1)
                out[done:done + len(feats)] = feats
                done += len(feats)
        return out
