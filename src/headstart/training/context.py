"""What a strategy's ``fit`` gets from the run around it (as opposed to its own settings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headstart.backbones import FeatureCache
from headstart.data import Dataset


@dataclass
class FitContext:
    """The run around a strategy: where it works, what it may reuse, how it reports, its budget.

    Attributes:
        work_dir: The run's working folder (checkpoints go here; an interrupted run resumes from it).
        seed: Random seed of the run; the same seed and data give the same model.
        cache: The frozen-feature cache, or ``None`` to always recompute.
        progress: Show progress bars.
        max_time: Wall-clock budget for training in seconds, or ``None``.
        restart_damaged: Start over when ``work_dir`` holds a damaged checkpoint (``fit --force``), instead of
            stopping with an error; a readable checkpoint is resumed either way.
        on_epoch_end: Called (on the main process) with each epoch's history record once it is validated,
            e.g. by a tuner that reports ``val_accuracy`` and raises to prune a hopeless trial; an exception
            raised here ends the run (its last checkpoint stays, so the same call could resume it).
        target: Unlabeled examples of the target domain (labels ``-1``), for strategies that adapt to it
            (``adabn``, ``coral``, ``dann``), or ``None``. It lives here rather than beside train and val
            because it is not a split of the labeled data: it has no classes, and takes no part in splitting,
            fingerprints or evaluation; and every strategy's ``fit`` keeps the same signature.
    """

    work_dir: Path
    seed: int = 0
    cache: FeatureCache | None = None
    progress: bool = True
    max_time: float | None = None
    restart_damaged: bool = False
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None
    target: Dataset | None = None
