"""Learning-rate schedules as pure functions of the step, so a resumed run needs only the step count."""

from __future__ import annotations

import math
from typing import Literal

ScheduleName = Literal["cosine", "onecycle", "constant"]


def lr_factor(schedule: ScheduleName, step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of a parameter group's peak learning rate at optimizer step ``step`` (0-based).

    Args:
        schedule: ``"cosine"``: linear warmup to the peak, then cosine decay to zero. ``"onecycle"``: the
            one-cycle policy (Smith 2018, as in fastai): warmup from peak/25 over ``warmup_steps`` (at least
            a quarter of the run), then cosine annealing to peak/1e5. ``"constant"``: warmup, then the peak.
        step: Steps already taken in this stage.
        total_steps: Steps in the stage.
        warmup_steps: Steps of warmup.

    Example:
        >>> lr_factor("cosine", 0, 100, 10)
        0.09090909090909091
    """
    total_steps = max(total_steps, 1)
    if schedule == "onecycle":
        up = max(warmup_steps, total_steps // 4, 1)
        if step < up:
            start = 1 / 25
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / up))
        progress = min((step - up) / max(total_steps - up, 1), 1.0)
        end = 1e-5
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; choose cosine, onecycle or constant")
