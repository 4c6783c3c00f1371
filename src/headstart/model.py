"""TransferModel: a backbone plus a classification head, saved as safetensors + JSON, reloaded exactly."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from headstart import __version__
from headstart.backbones import Backbone, create_backbone
from headstart.data.inputs import as_examples
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

    def logits(self, items: Any, *, batch_size: int = 64, progress: bool = False, label: str = "") -> np.ndarray:
        """Head logits (before temperature) for raw examples (inputs as for :meth:`predict_proba`; ``label``
        names them in the progress display)."""
        examples = as_examples(items, self.modality)
        return self.logits_from_features(self.backbone.embed(examples, batch_size=batch_size, progress=progress,
                                                             label=label))

    def proba_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities from logits, with this model's temperature."""
        scaled = np.asarray(logits, dtype=np.float64) / self.temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict_proba(self, items: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Class probabilities ``[n_examples, n_classes]``.

        Args:
            items: Image file paths, PIL images or ``uint8`` arrays (a numpy array is a batch along its first
                axis), texts, or what the backbone of another modality takes; a single path, image or text is
                one example.
            batch_size: Examples per forward pass.
            progress: Show a progress bar.

        Example:
            >>> model.predict_proba([Image.open("shoe.png"), "bag.png"]).shape
            (2, 10)
        """
        return self.proba_from_logits(self.logits(items, batch_size=batch_size, progress=progress))

    def predict(self, items: Any, *, batch_size: int = 64, progress: bool = False) -> list[str]:
        """Predicted class names, one per example (inputs as for :meth:`predict_proba`)."""
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
        """Rebuild a model saved with :meth:`save`; predictions are identical to the saved model's.

        Raises:
            ModelFileError: A file is missing, damaged, or holds values headstart never writes (named in the
                message).
            BackboneError: The saved backbone reference or preprocessing cannot be rebuilt.
        """
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ModelFileError(f"{path} is missing: {folder} is not a saved headstart model folder")
        config = _read_json(config_path)
        try:
            tensors = load_file(str(weights_path))
        except (SafetensorError, OSError) as err:
            raise ModelFileError(f"{weights_path} is not a readable safetensors file ({err}); copy the model "
                                 "folder again or retrain") from None
        return cls.from_state(config, tensors, _read_json(folder / "metrics.json", {}), source=str(folder))

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                   metrics: dict[str, Any] | None = None, *, source: str = "the model") -> TransferModel:
        """Rebuild a model from its :meth:`config` and :meth:`state_dict` (what :meth:`save` writes).

        The backbone is rebuilt from its reference (bundled or local weights), then overwritten with the saved
        backbone tensors when it was trained; no pickled object is ever read.

        Raises:
            ModelFileError: The config holds values headstart never writes, or the tensors do not fit it
                (``source`` names where they came from).
            BackboneError: The saved backbone reference or preprocessing cannot be rebuilt.
        """
        config = _check_config(config, f"{source}: {CONFIG_FILE}")
        backbone = create_backbone(config["backbone"]["ref"], preprocess=config["backbone"]["preprocess"])
        head_state = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
        shape = (len(config["class_names"]), config["feature_dim"])
        if backbone.feature_dim != shape[1] or tuple(getattr(head_state.get("weight"), "shape", ())) != shape:
            raise ModelFileError(f"{source}: {CONFIG_FILE} describes a head of {shape[0]} classes x {shape[1]} "
                                 f"features, but the backbone gives {backbone.feature_dim} features and "
                                 f"{WEIGHTS_FILE} holds {_shape(head_state.get('weight'))}; the files do not "
                                 "belong together")
        head = nn.Linear(shape[1], shape[0])
        try:
            head.load_state_dict(head_state)
            if config["backbone_trained"]:
                state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
                backbone.module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFileError(f"{source}: {WEIGHTS_FILE} does not fit {CONFIG_FILE}: "
                                 f"{str(err).splitlines()[0]}") from None
        return cls(backbone, head, config["class_names"], strategy=config["strategy"],
                   strategy_config=config["strategy_config"], backbone_trained=config["backbone_trained"],
                   temperature=config["temperature"], metrics=metrics)


# The type of every value of config.json that loading uses (bool is no int here, as JSON has both).
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "backbone": (dict,), "backbone_trained": (bool,), "class_names": (list,), "feature_dim": (int,),
    "strategy": (str,), "strategy_config": (dict,), "temperature": (int, float),
}


def _read_json(path: Path, default: Any = None) -> Any:
    if default is not None and not path.is_file():
        return default
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not valid JSON ({err}); copy the model folder again or retrain") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{path} does not hold a JSON object; it was not written by headstart")
    return value


def _check_config(config: dict[str, Any], path: str) -> dict[str, Any]:
    """``config`` (read from ``path``), checked to hold what :meth:`TransferModel.config` writes.

    Raises:
        ModelFileError: Another format version, or a value missing or of the wrong type.
    """
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has format_version {config.get('format_version')!r}; "
                             f"this headstart reads version {FORMAT_VERSION}")
    wrong = [key for key, types in _CONFIG_TYPES.items()
             if not isinstance(config.get(key), types) or (bool not in types and isinstance(config[key], bool))]
    backbone = config.get("backbone")
    if isinstance(backbone, dict):
        wrong += [f"backbone.{key}" for key, types in (("ref", (str,)), ("preprocess", (dict, type(None))))
                  if key not in backbone or not isinstance(backbone[key], types)]
    names = config.get("class_names")
    if isinstance(names, list) and (len(names) < 2 or len(set(map(str, names))) < len(names)
                                    or not all(isinstance(name, str) for name in names)):
        wrong.append("class_names (two or more distinct names)")
    if "feature_dim" not in wrong and config["feature_dim"] < 1:
        wrong.append("feature_dim (a positive integer)")
    if "temperature" not in wrong and not 0 < config["temperature"] < math.inf:
        wrong.append("temperature (a positive number)")
    if wrong:
        raise ModelFileError(f"{path} lacks or has invalid {', '.join(wrong)}; it was edited or damaged: copy the "
                             "model folder again or retrain")
    return config


def _shape(tensor: Any) -> str:
    return "no head" if tensor is None else f"a {tuple(tensor.shape)} head"
