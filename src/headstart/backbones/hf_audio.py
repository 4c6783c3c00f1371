"""Transformers audio encoders as backbones (``hf:<folder>``): wav2vec2, HuBERT, WavLM, Data2VecAudio, AST.

A folder is recognised as an audio model by the ``sampling_rate`` in its ``preprocessor_config.json``. Features
are the last hidden states averaged over the clip's frames (padding excluded); every layer can be fine-tuned.
Preprocessing is the shared :class:`~headstart.backbones.audio.AudioPreprocess`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from headstart.backbones.audio import AudioBackbone, AudioPreprocess, clip_windows
from headstart.backbones.base import restore_preprocess
from headstart.backbones.engine import tune_runtime
from headstart.backbones.hf import HF_FOLDER_LOADERS, stacked_layer_groups
from headstart.errors import BackboneError, ConfigError

if TYPE_CHECKING:
    from transformers import FeatureExtractionMixin, PreTrainedModel

# Where transformers audio encoders keep what runs before their transformer stack: the convolutional feature
# encoder and its projection (wav2vec2 family), the patch embeddings (AST).
_AUDIO_BOTTOM = ("feature_extractor", "feature_projection", "encoder.pos_conv_embed", "embeddings")


class TransformerAudioBackbone(AudioBackbone):
    """A transformers audio encoder: its last hidden states pooled over the clip's frames.

    Args:
        model: The encoder (``AutoModel``: ``Wav2Vec2Model``, ``HubertModel``, ``ASTModel``, ...).
        feature_extractor: Its feature extractor (normalisation, or the spectrogram for AST).
        ref: The reference that rebuilds it.
        preprocess: Defaults to the feature extractor's rate, no level change (the feature extractor
            normalises), no padding.
    """

    def __init__(self, model: PreTrainedModel, feature_extractor: FeatureExtractionMixin, *, ref: str,
                 preprocess: AudioPreprocess | None = None) -> None:
        tune_runtime()
        self.module = model.eval()
        self.feature_extractor = feature_extractor
        self.ref = ref
        self.feature_dim = int(model.config.hidden_size)
        rate = int(feature_extractor.sampling_rate)
        self.preprocess = preprocess or AudioPreprocess(sample_rate=rate, target_dbfs=None)
        if self.preprocess.sample_rate != rate:
            raise ConfigError(f"{ref} takes {rate} Hz audio; its sample_rate cannot be {self.preprocess.sample_rate}")
        # Models whose first layer normalises over time (wav2vec2-base's group norm) must not get an attention
        # mask (their feature extractor says so), and then padding changes the features of shorter clips.
        self.uses_mask = bool(getattr(feature_extractor, "return_attention_mask", False))

    def collate(self, items: Sequence[Any], *, augment: str = "off") -> dict[str, torch.Tensor]:
        """The feature extractor's input for every window of every clip, each window's length in samples and
        the clip it belongs to (``owner``)."""
        windows = [clip_windows(item, self.preprocess) for item in items]
        flat = [window for clip in windows for window in clip]
        inputs = self.feature_extractor(flat, sampling_rate=self.preprocess.sample_rate, padding=True,
                                        return_tensors="pt", return_attention_mask=True)
        batch = {"input_values": inputs["input_values"], "lengths": torch.tensor([len(w) for w in flat]),
                 "owner": torch.tensor([i for i, clip in enumerate(windows) for _ in clip])}
        if self.uses_mask:
            batch["attention_mask"] = inputs["attention_mask"]
        return batch

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled embeddings ``[clips, feature_dim]`` (padding frames excluded, windows of a clip averaged)."""
        inputs = {key: batch[key] for key in ("input_values", "attention_mask") if key in batch}
        hidden = self.module(**inputs).last_hidden_state
        steps = hidden.shape[1]
        if hasattr(self.module, "_get_feat_extract_output_lengths"):
            frames = self.module._get_feat_extract_output_lengths(batch["lengths"]).clamp(1, steps)
        else:  # spectrogram models (AST) see a fixed-size input
            frames = torch.full_like(batch["lengths"], steps)
        mask = (torch.arange(steps, device=hidden.device)[None] < frames[:, None]).unsqueeze(-1)
        if self.preprocess.pooling == "max":
            pooled = hidden.masked_fill(~mask, torch.finfo(hidden.dtype).min).amax(dim=1)
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        owner = batch["owner"]
        clips = int(owner.max()) + 1
        sums = torch.zeros(clips, pooled.shape[1], dtype=pooled.dtype, device=pooled.device).index_add(0, owner, pooled)
        return sums / torch.bincount(owner, minlength=clips).clamp(min=1)[:, None].to(pooled.dtype)

    def layer_groups(self) -> list[nn.Module]:
        """The feature encoder (convolutions, projection, positional convolution), each transformer layer, then
        the rest (final norm)."""
        return stacked_layer_groups(self.module, _AUDIO_BOTTOM)

    def embed(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False, label: str = ""
              ) -> np.ndarray:
        """Frozen embeddings ``[len(items), feature_dim]``; clips go one at a time to models that take no
        attention mask, so a clip's features never depend on the other clips of its batch."""
        return super().embed(items, batch_size=batch_size if self.uses_mask else 1, progress=progress, label=label)


def is_audio_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a transformers audio model (its preprocessor config has a ``sampling_rate``)."""
    config = folder / "preprocessor_config.json"
    return config.is_file() and "sampling_rate" in json.loads(config.read_text())


def load_audio_folder(folder: Path, ref: str, preprocess: dict[str, Any] | None) -> TransformerAudioBackbone:
    """A :class:`TransformerAudioBackbone` from a local transformers folder (``trust_remote_code`` stays off).

    Raises:
        BackboneError: The folder is not a loadable audio encoder.
    """
    from transformers import AutoFeatureExtractor, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(folder)
        feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise BackboneError(f"cannot load a transformers audio encoder from {folder} ({str(err)[:300]}); the "
                            f"folder needs config.json, the weights and preprocessor_config.json") from None
    return TransformerAudioBackbone(model, feature_extractor, ref=ref,
                                    preprocess=restore_preprocess(preprocess, AudioPreprocess, ref))


HF_FOLDER_LOADERS.append((is_audio_folder, load_audio_folder))
