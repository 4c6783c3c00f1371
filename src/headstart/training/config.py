"""Hyperparameters shared by every strategy that runs the training loop."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from headstart.strategies.base import StrategyConfig
from headstart.training.schedules import ScheduleName


def extend_defaults(base: dict[str, dict[str, Any]], *, image: dict[str, Any], text: dict[str, Any]
                    ) -> dict[str, dict[str, Any]]:
    """``base`` per-modality defaults updated with a subclass's own (for ``modality_defaults``)."""
    return {"image": {**base.get("image", {}), **image}, "text": {**base.get("text", {}), **text}}


class TrainingConfig(StrategyConfig):
    """Knobs of the shared training loop. A field left at ``None`` takes its per-modality default from
    ``modality_defaults`` (see :meth:`resolve`); every one can be set explicitly."""

    modality_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "image": {"epochs": 5, "lr": 1e-3, "layer_decay": 0.7, "augment": "light"},
        "text": {"epochs": 3, "lr": 5e-5, "layer_decay": 0.9, "augment": "off"},
    }
    #: Epoch fields that ``min_steps`` raises when they are left at their default.
    epoch_fields: ClassVar[tuple[str, ...]] = ("epochs",)

    batch_size: int = Field(32, ge=1, description="Examples per training step (per process).")
    epochs: int | None = Field(None, ge=0, description="Epochs of the main (whole-network) stage. "
                                                      "Default: 5 for images, 3 for text, raised to reach `min_steps`.")
    lr: float | None = Field(None, gt=0, description="Peak learning rate of the head and the top layer group. "
                                                     "Default: 1e-3 for images, 5e-5 for text.")
    layer_decay: float | None = Field(None, gt=0, le=1, description="Layer-wise learning-rate decay: each "
                                      "lower layer group gets the rate of the group above times this. "
                                      "Default: 0.7 for images, 0.9 for text.")
    min_steps: int = Field(100, ge=0, description="Epoch counts left at their default are raised so each "
                           "stage runs at least this many optimisation steps (on one process), and early stopping "
                           "waits for them: on small data a few epochs are only a handful of steps. 0 disables; "
                           "explicit epochs are kept.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay (not applied to biases "
                                                        "and normalization weights).")
    schedule: ScheduleName = Field("cosine", description="Learning-rate schedule per stage: 'cosine' (warmup "
                                   "then cosine decay), 'onecycle' or 'constant' (after warmup).")
    warmup: float = Field(0.1, ge=0, lt=1, description="Fraction of each stage's steps spent warming up.")
    loader_workers: int = Field(0, ge=0, description="Processes that decode and augment the next batches while "
                                "the current one trains (PyTorch DataLoader workers); 0 does it in between steps. "
                                "Worth it where the CPU is idle while a GPU trains; on a CPU-only machine they "
                                "compete with training (1 worker: 16 instead of 21-23 images/s on 2 cores).")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this; None "
                                                           "disables clipping.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    augment: Literal["off", "light", "strong"] | None = Field(
        None, description="Training augmentation preset of the backbone's collate. Default: 'light' for "
                          "images, 'off' for text.")
    patience: int | None = Field(3, ge=1, description="Stop a stage after this many epochs without improvement "
                                                     "of `monitor` on the validation set, once it has run "
                                                     "`min_steps` steps; None disables.")
    monitor: Literal["val_accuracy", "val_loss"] = Field("val_accuracy", description="Validation metric for "
                                                         "early stopping and choosing the best epoch.")
    precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision: 'auto' is bf16 (fp16 where bf16 is unsupported) on GPU and "
                            "full precision on CPU, where bf16 autocast measured slower.")

    def resolve(self, modality: str, n_examples: int | None = None) -> TrainingConfig:
        """A copy with every ``None`` field that has a per-modality default filled in for ``modality``.

        Args:
            modality: ``"image"`` or ``"text"``.
            n_examples: Training examples; with it, defaulted epoch fields are raised to reach ``min_steps``.

        Example:
            >>> HeadFirstConfig().resolve("text", n_examples=255).head_epochs  # 8 steps/epoch -> 13 epochs
            13
        """
        defaults = self.modality_defaults.get(modality, {})
        update = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if n_examples and self.min_steps:
            floor = math.ceil(self.min_steps / math.ceil(n_examples / self.batch_size))
            update.update({k: max(update[k], floor) for k in self.epoch_fields if update.get(k, 0) > 0})
        return self.model_copy(update=update)


class HeadFirstConfig(TrainingConfig):
    """A training config whose run starts with a head-only stage on the frozen backbone.

    The head's default learning rate differs by modality because Adam moves each weight by about the learning
    rate per step, so the logits move by about ``lr * ||x||_1``: text backbones give L2-normalised embeddings
    (``||x||_1`` about 15 for MiniLM), image backbones unnormalised pooled activations (hundreds).
    """

    modality_defaults: ClassVar[dict[str, dict[str, Any]]] = extend_defaults(
        TrainingConfig.modality_defaults, image={"head_epochs": 1, "head_lr": 2e-3},
        text={"head_epochs": 1, "head_lr": 3e-2})
    epoch_fields: ClassVar[tuple[str, ...]] = ("epochs", "head_epochs")

    head_epochs: int | None = Field(None, ge=0, description="Epochs training only the new head, backbone "
                                    "frozen (its BatchNorm statistics fixed). Default: 1, raised to reach "
                                    "`min_steps`.")
    head_lr: float | None = Field(None, gt=0, description="Peak learning rate of the head-only stage. "
                                  "Default: 2e-3 for images, 3e-2 for text (normalised embeddings).")

