"""Tiny backbones and data sets for the training-loop tests: seconds per fit, no downloads."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel

from headstart.backbones import register_backbone
from headstart.backbones.base import Backbone, ImagePreprocess, TextPreprocess
from headstart.data.base import Dataset


class TinyImageBackbone(Backbone):
    """Two conv + BatchNorm blocks on 12x12 RGB arrays; "light" augmentation flips horizontally.

    Records a short hash of every example it collates for training in ``seen`` (the sharding tests use it).
    """

    ref = "test-tiny-image"
    modality = "image"
    feature_dim = 16

    def __init__(self, seed: int = 0) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = nn.Sequential(
                nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
                nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
                nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.preprocess = ImagePreprocess(input_size=12)
        self.seen: list[str] = []

    def collate(self, items: Sequence[Any], *, augment: str = "off") -> torch.Tensor:
        batch = torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2).float() / 255.0
        if augment != "off":
            self.seen.extend(hashlib.md5(np.asarray(i).tobytes()).hexdigest()[:12] for i in items)
            flip = torch.rand(len(items)) < 0.5
            batch[flip] = batch[flip].flip(-1)
        return (batch - 0.5) / 0.25

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch)

    def layer_groups(self) -> list[nn.Module]:
        return [self.module[0], self.module[1]]


class TinyTextBackbone(Backbone):
    """A 2-layer, 32-wide random BERT over a character vocabulary, mean-pooled."""

    ref = "test-tiny-text"
    modality = "text"
    feature_dim = 32

    def __init__(self, seed: int = 0) -> None:
        config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=40, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = BertModel(config, add_pooling_layer=False)
        self.module.eval()
        self.preprocess = TextPreprocess(max_length=40)

    def collate(self, items: Sequence[str], *, augment: str = "off") -> dict[str, torch.Tensor]:
        ids = [[1] + [ord(c) % 60 + 4 for c in text[:38]] for text in items]
        width = max(len(i) for i in ids)
        input_ids = torch.tensor([i + [0] * (width - len(i)) for i in ids])
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}

    def input_lengths(self, items: Sequence[str]) -> np.ndarray:
        return np.array([1 + len(text[:38]) for text in items])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.module(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1)

    def layer_groups(self) -> list[nn.Module]:
        return [self.module.embeddings, *self.module.encoder.layer]


class TinyAudioBackbone(Backbone):
    """1-D conv + BatchNorm blocks over 400-sample waveforms (in-memory float arrays), mean-pooled, then a linear
    projection (what LoRA adapts on audio encoders)."""

    ref = "test-tiny-audio"
    modality = "audio"
    feature_dim = 8

    def __init__(self, seed: int = 0) -> None:
        from headstart.backbones.audio import AudioPreprocess

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = nn.Sequential(
                nn.Sequential(nn.Conv1d(1, 8, 9, stride=4), nn.BatchNorm1d(8), nn.ReLU()),
                nn.Sequential(nn.Conv1d(8, 8, 5, stride=2), nn.ReLU()),
                nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 8))
        self.preprocess = AudioPreprocess(sample_rate=16000)

    def collate(self, items: Sequence[Any], *, augment: str = "off") -> torch.Tensor:
        from headstart.data.audio_io import read_audio

        clips = [read_audio(i, 16000) if isinstance(i, (str, Path)) else np.asarray(i, dtype=np.float32)
                 for i in items]
        return torch.from_numpy(np.stack([np.pad(c[:400], (0, max(400 - len(c), 0))) for c in clips]))[:, None, :]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch)

    def layer_groups(self) -> list[nn.Module]:
        return [self.module[0], self.module[1], self.module[4]]


@register_backbone("test-tiny-audio", modality="audio", offline=True, description="test fixture")
def _tiny_audio(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                allow_download: bool = True) -> TinyAudioBackbone:
    return TinyAudioBackbone()


@register_backbone("test-tiny-image", modality="image", offline=True, description="test fixture")
def _tiny_image(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                allow_download: bool = True) -> TinyImageBackbone:
    return TinyImageBackbone()


@register_backbone("test-tiny-text", modality="text", offline=True, description="test fixture")
def _tiny_text(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
               allow_download: bool = True) -> TinyTextBackbone:
    return TinyTextBackbone()


def color_images(n: int, seed: int = 0) -> Dataset:
    """``n`` noisy 12x12 images whose dominant color (red, green, blue) is the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 90, size=(n, 12, 12, 3)).astype(np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[..., label] += 140
    return Dataset(list(images), labels, ["red", "green", "blue"], "image")


def unlabeled_images(n: int = 16, seed: int = 5) -> Dataset:
    """``n`` images like :func:`color_images`, brighter and without labels: a target domain for adaptation."""
    images = [np.clip(image.astype(np.int64) + 60, 0, 255).astype(np.uint8) for image in color_images(n, seed).items]
    return Dataset(images, np.full(n, -1), [], "image")


def sentiment_texts(n: int, seed: int = 0) -> Dataset:
    """``n`` short texts labeled by which of two marker words they contain."""
    rng = np.random.default_rng(seed)
    filler = ["the", "a", "movie", "was", "plot", "and", "it", "very"]
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(filler, size=4))
        words.insert(int(rng.integers(0, 5)), "zzzz" if label else "xxxx")
        texts.append(" ".join(words))
        labels.append(label)
    return Dataset(texts, np.array(labels), ["neg", "pos"], "text")


def tone_clips(n: int, seed: int = 0) -> Dataset:
    """``n`` noisy 400-sample tones whose pitch (low, mid, high) is the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    t = np.arange(400) / 16000
    clips = [(np.sin(2 * np.pi * (300 + 900 * label) * t) + 0.3 * rng.normal(size=400)).astype(np.float32)
             for label in labels]
    return Dataset(clips, labels, ["low", "mid", "high"], "audio")


def tone_files(n: int) -> list[Path]:
    """:func:`tone_clips` written as 16 kHz WAV files (a fresh temporary folder), for backbones that read files."""
    import tempfile

    import soundfile

    folder = Path(tempfile.mkdtemp(prefix="headstart-tones-"))
    paths = [folder / f"{i}.wav" for i in range(n)]
    for path, clip in zip(paths, tone_clips(n).items, strict=True):
        soundfile.write(path, np.tile(clip, 3), 16000)
    return paths


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a module's state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
