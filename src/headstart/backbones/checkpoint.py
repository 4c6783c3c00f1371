"""Saved model folders as backbones: reading a folder's files, rebuilding its backbone, and
``ckpt:<folder saved by headstart>``.

``ckpt:`` is the "develop a source model first, then transfer it" path: train on related data, then use that
model's (possibly fine-tuned) backbone for the target task. Its classifier becomes the source head (for
LEEP transferability scores).

A model folder holds its backbone's weights whenever they come from anywhere but headstart's bundled
packages (a local file or folder, another model folder, the hub) or were changed by training, so it keeps
working when what it was trained from is moved, deleted or replaced. Bundled weights are not copied; their
fingerprint is recorded and checked on load.
"""

from __future__ import annotations

import json
import math
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from headstart.backbones.base import Backbone, SourceHead, preprocess_from_dict
from headstart.backbones.references import create_backbone, register_backbone
from headstart.errors import BackboneError, ConfigError, ModelFileError

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# The type of every value of config.json that loading uses (bool is no int here, as JSON has both).
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "backbone": (dict,), "backbone_trained": (bool,), "class_names": (list,), "feature_dim": (int,),
    "strategy": (str,), "strategy_config": (dict,), "temperature": (int, float),
}

# The ckpt: folders being rebuilt in this call chain, to stop a folder whose backbone leads back to itself.
_loading: ContextVar[tuple[Path, ...]] = ContextVar("headstart_ckpt_loading", default=())


def read_model_files(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json`` and the tensors of ``model.safetensors`` of a saved model folder.

    Raises:
        ModelFileError: A file is missing, truncated or not what headstart writes; the message names it.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelFileError(f"{path} is missing: {folder} is not a saved headstart model folder; pass the "
                                 "folder that `headstart fit` wrote")
    config = _read_config(config_path)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"{weights_path} is not a readable safetensors file ({err}); it is truncated or "
                             "damaged: copy the model folder again or retrain") from None
    return config, tensors


def _read_config(path: Path) -> dict[str, Any]:
    """``config.json``, checked to hold what :meth:`headstart.model.TransferModel.config` writes.

    Raises:
        ModelFileError: Invalid JSON, another format version, or a value missing or of the wrong type.
    """
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not valid JSON ({err}); copy the model folder again or retrain") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path} does not hold a JSON object; it was not written by headstart")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has format_version {config.get('format_version')!r}; "
                             f"this headstart reads version {FORMAT_VERSION}")
    wrong = [key for key, types in _CONFIG_TYPES.items()
             if not isinstance(config.get(key), types) or (bool not in types and isinstance(config[key], bool))]
    backbone = config.get("backbone")
    if isinstance(backbone, dict):
        wrong += [f"backbone.{key}" for key, types in (("ref", (str,)), ("preprocess", (dict, type(None))),
                                                       ("feature_dim", (int,)))
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


def saved_backbone(folder: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor], *,
                   preprocess: dict[str, Any] | None = None, allow_download: bool = False,
                   as_source: bool = False) -> Backbone:
    """Rebuild the backbone of a saved model folder from what :func:`read_model_files` read.

    Stored weights (``backbone.*`` tensors) go into the network its ``architecture`` builds, without reading
    what the model was trained from; otherwise (bundled weights) the reference is rebuilt and its fingerprint
    checked against the recorded one.

    Args:
        folder: The model folder (for messages).
        config: Its ``config.json``.
        tensors: Its ``model.safetensors``.
        preprocess: Preprocessing to use instead of the saved one.
        allow_download: Whether a backbone that is not in the folder may come from the network.
        as_source: The weights become the backbone's own pre-trained weights even if training produced them
            (a ``ckpt:`` source); otherwise trained weights stay marked as changed, as they were when saved.

    Raises:
        ModelFileError: Invalid preprocessing, weights that do not fit, or weights changed since training.
    """
    folder = Path(folder)
    saved = config["backbone"]
    if (preprocess or saved["preprocess"]) is not None:
        try:
            preprocess_from_dict(preprocess or saved["preprocess"])
        except (BackboneError, ConfigError) as err:
            raise ModelFileError(f"{folder / CONFIG_FILE}: {err}") from None
    stored = config.get("backbone_stored", config["backbone_trained"])
    architecture = saved.get("architecture") or saved["ref"]
    if stored:
        try:
            backbone = create_backbone(architecture, preprocess=preprocess or saved["preprocess"], pretrained=False,
                                       allow_download=allow_download)
        except BackboneError as err:  # e.g. the hf: folder whose tokenizer and config the network needs
            raise ModelFileError(f"the model in {folder} holds its backbone's weights, but building the network "
                                 f"needs {architecture}: {err}") from None
        state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
        try:
            if as_source or not config["backbone_trained"]:
                backbone.load_weights(state)
            else:
                backbone.module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFileError(f"the backbone weights in {folder / WEIGHTS_FILE} do not fit {architecture} "
                                 f"({str(err)[:300]}); the folder was edited or damaged") from None
    else:
        backbone = create_backbone(saved["ref"], preprocess=preprocess or saved["preprocess"],
                                   allow_download=allow_download)
    backbone.ref = saved["ref"]
    backbone.architecture = architecture if architecture != saved["ref"] else None
    if not stored and preprocess is None and saved.get("fingerprint") not in (None, backbone.fingerprint()):
        raise ModelFileError(f"the weights of backbone {saved['ref']} differ from those the model in {folder} was "
                             "trained with, so its predictions would silently change; install the version it was "
                             "trained with, or train again")
    _restore_engine(backbone, saved.get("engine"), saved.get("int8_calibration"), folder)
    if backbone.feature_dim != saved["feature_dim"]:
        raise ModelFileError(f"{folder / CONFIG_FILE} says backbone {saved['ref']} gives {saved['feature_dim']} "
                             f"features, but it gives {backbone.feature_dim}; the file was edited or damaged")
    return backbone


def _restore_engine(backbone: Backbone, engine: str | None, calibration: str | None, folder: Path) -> None:
    # The head was fitted on that engine's features (an image backbone's int8 ones: on the graph calibrated
    # on the training images); folders written before the engine was recorded ran "auto".
    if engine not in (None, backbone.engine):
        try:
            backbone.engine = engine
        except ConfigError as err:
            raise ModelFileError(f"{folder / CONFIG_FILE}: {err}; the file was edited or damaged") from None
    if calibration is not None and backbone.engine == "int8":
        backbone.extraction_engine.calibration = calibration


@register_backbone("ckpt:", modality="any", offline=True,
                   description="the backbone of a model saved by headstart: ckpt:<model folder>")
def checkpoint_backbone(argument: str | None, preprocess: dict[str, Any] | None, *, pretrained: bool = True,
                        allow_download: bool = True) -> Backbone:
    """Rebuild the backbone of the model saved in folder ``argument``, with its trained weights if it was
    fine-tuned; ``preprocess`` overrides the saved preprocessing."""
    folder = Path(argument or "").expanduser().resolve()
    if not ((folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()):
        raise BackboneError(f"{folder} is not a saved headstart model folder ({CONFIG_FILE} and {WEIGHTS_FILE} "
                            f"are needed); pass the folder that `headstart fit` wrote")
    chain = _loading.get()
    if folder in chain:
        loop = " -> ".join(f"ckpt:{f}" for f in (*chain[chain.index(folder):], folder))
        raise BackboneError(f"ckpt:{folder} leads back to itself ({loop}): its {CONFIG_FILE} names itself as "
                            "its backbone; train the source model from a bundled, timm: or hf: backbone")
    token = _loading.set((*chain, folder))
    try:
        config, tensors = read_model_files(folder)
        backbone = saved_backbone(folder, config, tensors, preprocess=preprocess, allow_download=allow_download,
                                  as_source=True)
    finally:
        _loading.reset(token)
    backbone.architecture = backbone.architecture or backbone.ref
    backbone.ref = f"ckpt:{folder}"
    if hasattr(backbone, "source") and {"head.weight", "head.bias"} <= tensors.keys():
        backbone.source = SourceHead(weight=tensors["head.weight"].numpy(), bias=tensors["head.bias"].numpy(),
                                     class_names=list(config.get("class_names", [])))
    return backbone
