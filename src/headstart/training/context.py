"""What a strategy's ``fit`` gets from the run around it (as opposed to its own settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headstart.backbones import FeatureCache


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
    """

    work_dir: Path
    seed: int = 0
    cache: FeatureCache | None = None
    progress: bool = True
    max_time: float | None = None
    restart_damaged: bool = False
