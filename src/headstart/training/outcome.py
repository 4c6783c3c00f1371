"""How a training run ended: its record (:class:`TrainResult`) and, in words, for the fit summary line and the
report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        history: One record per epoch: stage, losses, accuracies, learning rate, seconds.
        best_epoch: The epoch whose weights were kept (best on validation), or ``None`` without validation.
        best: That epoch's validation metrics.
        stop_reason: ``"completed"``, ``"early_stopping"`` or ``"max_time"``.
        stages_run: Names of the stages that trained at least one step, in order.
        stopped_in_stage: The stage the time budget stopped the run in, or ``None``.
        resumed_from_epoch: Epochs already done in the checkpoint this run resumed from, or ``None``.
        seconds: Wall-clock seconds of this call.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best: dict[str, float] | None = None
    stop_reason: str = "completed"
    stages_run: list[str] = field(default_factory=list)
    stopped_in_stage: str | None = None
    resumed_from_epoch: int | None = None
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary for ``TransferModel.metrics["train"]``."""
        return asdict(self)


def stop_message(train: dict[str, Any], *, backbone_trained: bool, budget: str = "max_time") -> str | None:
    """Why a run ended short, in one sentence, or ``None`` when it ran every stage it planned.

    Args:
        train: ``model.metrics["train"]`` (``stop_reason``, ``stopped_in_stage``, ``stages_run``, ``stages``).
        backbone_trained: Whether any stage that ran trained backbone weights.
        budget: How the time budget is called where the message is shown (``"--max-time"`` on the CLI).

    Example:
        >>> stop_message({"stop_reason": "max_time", "stopped_in_stage": "head"}, backbone_trained=False,
        ...              budget="--max-time")
        'stopped by --max-time during the head stage: the backbone was not trained'
    """
    if train.get("stop_reason") != "max_time":
        return None
    message = f"stopped by {budget} during the {train.get('stopped_in_stage')} stage"
    skipped = [s for s in train.get("stages", []) if s not in train.get("stages_run", [])]
    if not backbone_trained:
        return f"{message}: the backbone was not trained"
    return f"{message}; stages not run: {', '.join(skipped)}" if skipped else message
