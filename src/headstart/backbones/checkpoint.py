"""A user's own source model as a backbone: ``ckpt:<folder saved by headstart>``.

This is the "develop a source model first, then transfer it" path: train on related data, then use that
model's (possibly fine-tuned) backbone for the target task. Its classifier becomes the source head (for
LEEP transferability scores).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from headstart.backbones.base import Backbone, SourceHead
from headstart.backbones.references import create_backbone, register_backbone
from headstart.errors import BackboneError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@register_backbone("ckpt:", modality="any", offline=True,
                   description="the backbone of a model saved by headstart: ckpt:<model folder>")
def checkpoint_backbone(argument: str | None, preprocess: dict[str, Any] | None) -> Backbone:
    """Rebuild the backbone of the model saved in folder ``argument``, with its trained weights if it was
    fine-tuned; ``preprocess`` overrides the saved preprocessing."""
    folder = Path(argument or "").expanduser().resolve()
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not (config_path.is_file() and weights_path.is_file()):
        raise BackboneError(f"{folder} is not a saved headstart model folder ({CONFIG_FILE} and {WEIGHTS_FILE} "
                            f"are needed); pass the folder that `headstart fit` wrote")
    config = json.loads(config_path.read_text())
    saved = config["backbone"]
    backbone = create_backbone(saved["ref"], preprocess=preprocess or saved["preprocess"])
    tensors = load_file(str(weights_path))
    if config.get("backbone_trained"):
        state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
        try:
            backbone.module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise BackboneError(f"the backbone weights in {weights_path} do not fit {saved['ref']} "
                                f"({str(err)[:300]})") from None
    backbone.ref = f"ckpt:{folder}"
    if hasattr(backbone, "source") and {"head.weight", "head.bias"} <= tensors.keys():
        backbone.source = SourceHead(weight=tensors["head.weight"].numpy(), bias=tensors["head.bias"].numpy(),
                                     class_names=list(config.get("class_names", [])))
    return backbone
