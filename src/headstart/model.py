"""TransferModel: a backbone plus a classification head, saved as safetensors + JSON, reloaded exactly."""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from headstart import __version__
from headstart.backbones import Backbone
from headstart.backbones.checkpoint import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    read_model_files,
    saved_backbone,
)
from headstart.backbones.references import is_bundled
from headstart.data.inputs import as_examples
from headstart.display import facts_table, percent
from headstart.errors import HeadstartWarning, ModelFileError, listing
from headstart.io import write_json

METRICS_FILE = "metrics.json"


class TransferModel:
    """A trained classifier: ``softmax(head(backbone(x)) / temperature)``.

    Args:
        backbone: The feature extractor (frozen or fine-tuned).
        head: Linear layer from ``backbone.feature_dim`` to ``len(class_names)``.
        class_names: Names of the classes, indexed by output position.
        strategy: Name of the strategy that trained it.
        strategy_config: That strategy's hyperparameters, as saved in ``config.json``.
        backbone_trained: Whether the backbone's weights changed in training.
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

    def __repr__(self) -> str:
        measured = self._measured()
        return (f"TransferModel({self.strategy_chosen} on {self.backbone.ref}, {len(self.class_names)} classes: "
                f"{listing(self.class_names, limit=5)}"
                + ("" if measured is None else f"; {measured[0]} {measured[1]['accuracy']:.1%}") + ")")

    def _measured(self) -> tuple[str, dict[str, Any]] | None:
        """``("test accuracy", test metrics)``, or the cross-validated ones when the data was too small to hold
        out a test split; ``None`` when neither was measured."""
        if self.metrics.get("test", {}).get("accuracy") is not None:
            return "test accuracy", self.metrics["test"]
        if self.metrics.get("cross_validation", {}).get("accuracy") is not None:
            return "cross-validated accuracy", self.metrics["cross_validation"]
        return None

    def _repr_html_(self) -> str:
        measured, train = self._measured(), self.metrics.get("train", {})
        facts = [("strategy", self.strategy), ("backbone", f"{self.backbone.ref} ({self.modality})"),
                 ("backbone trained", "yes" if self.backbone_trained else "no (frozen)"),
                 ("classes", f"{len(self.class_names)}: {listing(self.class_names, limit=8)}")]
        if measured is not None:
            name, m = measured
            facts.append((name, f"{percent(m.get('accuracy'))} on {m.get('n_examples')} examples"))
        if train.get("stages_run"):
            reason = train.get("stop_reason", "completed")
            facts.append(("stages run", ", ".join(train["stages_run"])
                          + ("" if reason == "completed" else f" (ended by {reason.replace('_', ' ')})")))
        if self.temperature != 1.0:
            facts.append(("temperature", self.temperature))
        return facts_table(f"A model on {self.backbone.ref}: {self.strategy_chosen}.", facts)

    @property
    def strategy_chosen(self) -> str:
        """The strategy, with what it chose when it chooses among others (``"auto (chose linear)"``)."""
        winner = self.strategy_config.get("winner")
        return f"{self.strategy} (chose {winner})" if winner else self.strategy

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
        """
        return self.proba_from_logits(self.logits(items, batch_size=batch_size, progress=progress))

    def predict(self, items: Any, *, batch_size: int = 64, progress: bool = False) -> list[str]:
        """Predicted class names, one per example (inputs as for :meth:`predict_proba`)."""
        proba = self.predict_proba(items, batch_size=batch_size, progress=progress)
        return [self.class_names[i] for i in proba.argmax(axis=1)]

    @property
    def stores_backbone(self) -> bool:
        """Whether the saved folder holds the backbone's weights: when training changed them, and whenever they
        come from anywhere but headstart's bundled packages (a local file or folder, another model folder, the
        hub), so that the folder works on its own wherever it is copied."""
        return self.backbone_trained or not is_bundled(self.backbone.ref)

    def config(self) -> dict[str, Any]:
        """What ``config.json`` holds."""
        backbone = self.backbone.config()
        if not self.stores_backbone:  # checked on load: other bundled weights would silently change predictions
            backbone["fingerprint"] = self.backbone.fingerprint()
        # The head was fitted on this engine's features (int8 ones differ): the loaded model extracts with it.
        backbone["engine"] = self.backbone.engine
        if self.backbone.engine == "int8":  # an image backbone's graph is the one calibrated on the training images
            calibration = self.backbone.extraction_engine.calibrated(self.backbone.fingerprint())
            if calibration is not None:
                backbone["int8_calibration"] = calibration
        return {
            "format_version": FORMAT_VERSION,
            "headstart_version": __version__,
            "backbone": backbone,
            "backbone_trained": self.backbone_trained,
            "backbone_stored": self.stores_backbone,
            "class_names": self.class_names,
            "feature_dim": self.head.in_features,
            "strategy": self.strategy,
            "strategy_config": self.strategy_config,
            "temperature": self.temperature,
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors saved to ``model.safetensors``: the head, and the backbone unless its weights are bundled
        and untrained (see :attr:`stores_backbone`)."""
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        if self.stores_backbone:
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
        write_json(folder / METRICS_FILE, self.metrics)
        return folder

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                   metrics: dict[str, Any] | None = None) -> TransferModel:
        """Rebuild a model from its :meth:`config`, :meth:`state_dict` and metrics (what :meth:`save` writes),
        through the same checks as :meth:`load`; no pickled object is ever read."""
        with tempfile.TemporaryDirectory(prefix="headstart-model-") as folder:
            save_file(tensors, str(Path(folder) / WEIGHTS_FILE), metadata={"format": "pt"})
            write_json(Path(folder) / CONFIG_FILE, config)
            write_json(Path(folder) / METRICS_FILE, metrics or {})
            return cls.load(folder)

    @classmethod
    def load(cls, folder: str | Path, *, allow_download: bool = False) -> TransferModel:
        """Rebuild a model saved with :meth:`save`; predictions are identical to the saved model's.

        Args:
            folder: The model folder.
            allow_download: Let a backbone the folder does not hold (folders written by older versions, whose
                config names a hub backbone) be downloaded; by default only what the folder holds is used.

        Raises:
            ModelFileError: A file is missing, damaged or inconsistent (named in the message). A damaged
                ``metrics.json`` only gives a warning: the model predicts without it.
        """
        folder = Path(folder)
        config, tensors = read_model_files(folder)
        class_names, temperature = config["class_names"], float(config["temperature"])
        weight, bias = tensors.get("head.weight"), tensors.get("head.bias")
        expected = (len(class_names), config["feature_dim"])
        if weight is None or bias is None or tuple(weight.shape) != expected or tuple(bias.shape) != expected[:1]:
            found = "no head" if weight is None or bias is None else f"a {tuple(weight.shape)} head"
            raise ModelFileError(f"{folder / WEIGHTS_FILE} holds {found}, but {CONFIG_FILE} needs {expected[0]} "
                                 f"classes x {expected[1]} features; the files do not belong together")
        backbone = saved_backbone(folder, config, tensors, allow_download=allow_download)
        if backbone.feature_dim != config["feature_dim"]:
            raise ModelFileError(f"{folder / CONFIG_FILE} has a head for {config['feature_dim']} features, but "
                                 f"backbone {backbone.ref} gives {backbone.feature_dim}")
        head = nn.Linear(config["feature_dim"], len(class_names))
        head.load_state_dict({"weight": weight, "bias": bias})
        return cls(backbone, head, class_names, strategy=config["strategy"],
                   strategy_config=config["strategy_config"], backbone_trained=config["backbone_trained"],
                   temperature=temperature, metrics=_read_metrics(folder / METRICS_FILE))


def _read_metrics(path: Path) -> dict[str, Any]:
    # The metrics describe how the model was trained; predictions do not need them.
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        warnings.warn(f"{path} is damaged ({err}); loading the model without its training metrics",
                      HeadstartWarning, stacklevel=3)
        return {}
    if not isinstance(metrics, dict):
        warnings.warn(f"{path} does not hold a JSON object; loading the model without its training metrics",
                      HeadstartWarning, stacklevel=3)
        return {}
    return metrics
