"""TransferModel: a backbone plus a classification head, saved as safetensors + JSON, reloaded exactly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from headstart import __version__
from headstart.backbones import Backbone, create_backbone
from headstart.errors import ModelFileError
from headstart.io import write_json

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class TransferModel:
    """A trained classifier: ``softmax(head(backbone(x)) / temperature)``.

    Args:
        backbone: The feature extractor (frozen or fine-tuned).
        head: Linear layer from ``backbone.feature_dim`` to ``len(class_names)``.
        class_names: Names of the classes, indexed by output position.
        strategy: Name of the strategy that trained it.
        strategy_config: That strategy's hyperparameters, as saved in ``config.json``.
        backbone_trained: Whether the backbone's weights changed in training (then they are saved too).
        temperature: Softmax temperature (1.0 unless calibrated).
        metrics: Metrics measured when it was trained.
    """

    def __init__(self, backbone: Backbone, head: nn.Linear, class_names: Sequence[str], *, strategy: str,
                 strategy_config: dict[str, Any] | None = None, backbone_trained: bool = False,
                 temperature: float = 1.0, metrics: dict[str, Any] | None = None) -> None:
        if head.out_features != len(class_names):
            raise ValueError(f"head has {head.out_features} outputs for {len(class_names)} classes")
        self.backbone = backbone
        self.head = head.eval()
        self.class_names = list(class_names)
        self.strategy = strategy
        self.strategy_config = dict(strategy_config or {})
        self.backbone_trained = backbone_trained
        self.temperature = float(temperature)
        self.metrics = dict(metrics or {})

    @property
    def modality(self) -> str:
        """The backbone's modality (``"image"``, ``"text"``, ...)."""
        return self.backbone.modality

    @torch.inference_mode()
    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        """Head logits (before temperature) for precomputed backbone features."""
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        return self.head(x).numpy()

    def logits(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False, label: str = ""
               ) -> np.ndarray:
        """Head logits (before temperature) for raw examples (``label`` names them in the progress display)."""
        return self.logits_from_features(self.backbone.embed(items, batch_size=batch_size, progress=progress,
                                                             label=label))

    def proba_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities from logits, with this model's temperature."""
        scaled = np.asarray(logits, dtype=np.float64) / self.temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict_proba(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False
                      ) -> np.ndarray:
        """Class probabilities ``[len(items), n_classes]``."""
        return self.proba_from_logits(self.logits(items, batch_size=batch_size, progress=progress))

    def predict(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> list[str]:
        """Predicted class names."""
        proba = self.predict_proba(items, batch_size=batch_size, progress=progress)
        return [self.class_names[i] for i in proba.argmax(axis=1)]

    def config(self) -> dict[str, Any]:
        """What ``config.json`` holds."""
        return {
            "format_version": FORMAT_VERSION,
            "headstart_version": __version__,
            "backbone": self.backbone.config(),
            "backbone_trained": self.backbone_trained,
            "class_names": self.class_names,
            "feature_dim": self.head.in_features,
            "strategy": self.strategy,
            "strategy_config": self.strategy_config,
            "temperature": self.temperature,
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors saved to ``model.safetensors``: the head, and the backbone when it was trained."""
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        if self.backbone_trained:
            tensors.update({f"backbone.{k}": v for k, v in self.backbone.module.state_dict().items()})
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``metrics.json`` into ``folder``.

        Each file is written atomically. To publish a whole folder atomically, save into a working folder and
        use :func:`headstart.io.publish` (as ``fit`` does).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{WEIGHTS_FILE}.tmp"
        save_file(self.state_dict(), str(tmp), metadata={"format": "pt"})
        tmp.replace(folder / WEIGHTS_FILE)
        write_json(folder / CONFIG_FILE, self.config())
        write_json(folder / "metrics.json", self.metrics)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TransferModel:
        """Rebuild a model saved with :meth:`save`; predictions are identical to the saved model's."""
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ModelFileError(f"{path} is missing: {folder} is not a saved headstart model folder")
        config = json.loads(config_path.read_text())
        if config.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(f"{config_path} has format_version {config.get('format_version')!r}; "
                                 f"this headstart reads version {FORMAT_VERSION}")
        tensors = load_file(str(weights_path))
        backbone = create_backbone(config["backbone"]["ref"], preprocess=config["backbone"]["preprocess"])
        if config["backbone_trained"]:
            state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
            backbone.module.load_state_dict(state, strict=True)
        head = nn.Linear(config["feature_dim"], len(config["class_names"]))
        head.load_state_dict({k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")})
        metrics_path = folder / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        return cls(backbone, head, config["class_names"], strategy=config["strategy"],
                   strategy_config=config["strategy_config"], backbone_trained=config["backbone_trained"],
                   temperature=config["temperature"], metrics=metrics)
