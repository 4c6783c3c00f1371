"""Hyperparameters shared by every strategy that runs the training loop."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from headstart.data.modality import modality_spec
from headstart.training.schedules import ScheduleName
from headstart.training.search_space import Choice, Dimension, FloatRange, IntRange


class StrategyConfig(BaseModel):
    """Settings every strategy has. Subclasses add theirs, each with a default and help text
    (``Field(description=...)``): the CLI's ``--set key=value``, ``headstart strategies``, the saved config and
    the report all read this one definition. Run arguments (seed, budget, output folder) are not settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: What ``headstart tune`` varies, setting -> dimension (:mod:`headstart.training.search_space`).
    search_space: ClassVar[dict[str, Dimension]] = {}

    batch_size: int = Field(64, ge=1, description="Examples per batch (feature extraction and training).")


class TrainingConfig(StrategyConfig):
    """Knobs of the shared training loop. A field left at ``None`` takes its default for the data's modality
    (see :meth:`resolve`); every one can be set explicitly."""

    #: This strategy's defaults on every modality, over the modality table's training defaults; the table's
    #: per-strategy entries win over both.
    strategy_defaults: ClassVar[dict[str, Any]] = {}
    #: Epoch fields that ``min_steps`` raises when they are left at their default.
    epoch_fields: ClassVar[tuple[str, ...]] = ("epochs",)
    # Learning rates and epochs around the modality's defaults (which differ 20x in lr between images and
    # texts); augmentation presets only where the backbone's collate applies them.
    search_space: ClassVar[dict[str, Dimension]] = {
        "lr": FloatRange(0.1, 10.0, log=True, relative=True),
        "epochs": IntRange(0.5, 2.0, relative=True),
        "layer_decay": FloatRange(0.5, 1.0),
        "weight_decay": FloatRange(1e-4, 0.3, log=True),
        "label_smoothing": FloatRange(0.0, 0.2),
        "augment": Choice(("off", "light", "strong"), modalities=("image",)),
    }

    batch_size: int = Field(32, ge=1, description="Examples per training step (per process).")
    epochs: int | None = Field(None, ge=0, description="Epochs of the main (whole-network) stage. "
                                                      "Default: per modality, raised to reach `min_steps`.")
    lr: float | None = Field(None, gt=0, description="Peak learning rate of the head and the top layer group. "
                                                     "Default: per modality.")
    layer_decay: float | None = Field(None, gt=0, le=1, description="Layer-wise learning-rate decay: each "
                                      "lower layer group gets the rate of the group above times this. "
                                      "Default: per modality.")
    min_steps: int = Field(100, ge=0, description="Epoch counts left at their default are raised so each "
                           "stage runs at least this many optimisation steps (on one process), and early stopping "
                           "waits for them: on small data a few epochs are only a handful of steps. 0 disables; "
                           "explicit epochs are kept.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay (not applied to biases "
                                                        "and normalization weights).")
    schedule: ScheduleName = Field("cosine", description="Learning-rate schedule per stage: 'cosine' (warmup "
                                   "then cosine decay), 'onecycle' or 'constant' (after warmup).")
    warmup: float = Field(0.1, ge=0, lt=1, description="Fraction of each stage's steps spent warming up.")
    group_by_length: bool = Field(True, description="Batch training texts of similar token counts together "
                                  "(each batch is padded to its longest text, so this saves the padding's "
                                  "compute); images have one size and ignore it.")
    loader_workers: int = Field(0, ge=0, description="Processes that decode and augment the next batches while "
                                "the current one trains (PyTorch DataLoader workers); 0 does it in between steps. "
                                "Worth it where the CPU is idle while a GPU trains; on a CPU-only machine they "
                                "compete with training (1 worker: 16 instead of 21-23 images/s on 2 cores).")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this; None "
                                                           "disables clipping.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    augment: Literal["off", "light", "strong"] | None = Field(
        None, description="Training augmentation preset of the backbone's collate. Default: per "
                          "modality ('light' for images, 'off' for text).")
    patience: int | None = Field(3, ge=1, description="Stop a stage after this many epochs without improvement "
                                                     "of `monitor` on the validation set, once it has run "
                                                     "`min_steps` steps; None disables.")
    monitor: Literal["val_accuracy", "val_loss"] = Field("val_accuracy", description="Validation metric for "
                                                         "early stopping and choosing the best epoch.")
    checkpoint_seconds: float = Field(60.0, ge=0, description="Write a resumable checkpoint at most this often "
                                      "(seconds; always at the end of each stage); a resumed run replays the "
                                      "epochs after the last one. 0 checkpoints after every epoch. Not part of "
                                      "what identifies a run: a resumed run may use another value.")
    refit: Literal["auto", "always", "never"] = Field("auto", description="After choosing the epochs on "
                                                      "validation data, train again on train + validation for "
                                                      "that many epochs: 'auto' when there are fewer than 100 "
                                                      "examples per class (where the held-out share matters).")
    precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision: 'auto' is bf16 (fp16 where bf16 is unsupported) on GPU and "
                            "full precision on CPU, where bf16 autocast measured slower.")

    def resolve(self, modality: str, n_examples: int | None = None, strategy: str | None = None
                ) -> TrainingConfig:
        """A copy with every ``None`` field filled in with its default for ``modality`` and ``strategy``.

        Defaults come from the modality table (:mod:`headstart.data.modality`): its training defaults, then
        this class's :attr:`strategy_defaults`, then the table's entries for ``strategy`` on that modality.

        Args:
            modality: A registered modality.
            n_examples: Training examples; with it, defaulted epoch fields are raised to reach ``min_steps``.
            strategy: The registered name of the strategy (for its per-modality entries).

        Example:
            >>> HeadFirstConfig().resolve("text", n_examples=255).head_epochs  # 8 steps/epoch -> 13 epochs
            13
        """
        spec = modality_spec(modality)
        defaults = {**spec.training, **self.strategy_defaults, **spec.strategies.get(strategy or "", {})}
        update = {k: v for k, v in defaults.items() if k in type(self).model_fields and getattr(self, k) is None}
        if n_examples and self.min_steps:
            floor = math.ceil(self.min_steps / math.ceil(n_examples / self.batch_size))
            update.update({k: max(update[k], floor) for k in self.epoch_fields if update.get(k, 0) > 0})
        return self.model_copy(update=update)


class HeadFirstConfig(TrainingConfig):
    """A training config whose run starts with a head-only stage on the frozen backbone (its defaults, like the
    head's learning rate, come per modality from the modality table)."""

    epoch_fields: ClassVar[tuple[str, ...]] = ("epochs", "head_epochs")
    search_space: ClassVar[dict[str, Dimension]] = {
        **TrainingConfig.search_space, "head_lr": FloatRange(0.1, 10.0, log=True, relative=True)}

    head_epochs: int | None = Field(None, ge=0, description="Epochs training only the new head, backbone "
                                    "frozen (its BatchNorm statistics fixed). Default: 1, raised to reach "
                                    "`min_steps`.")
    head_init: Literal["random", "prototypes"] = Field(
        "random", description="The new head's starting point: 'random', or 'prototypes' (the class means of "
                              "the frozen features by cosine, as the prototypes strategy; a few-shot head that "
                              "is already good before any step).")
    head_lr: float | None = Field(None, gt=0, description="Peak learning rate of the head-only stage. "
                                  "Default: per modality (larger for normalised text embeddings).")

