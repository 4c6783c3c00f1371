"""How a training run ended, in words: for the fit summary line and the report."""

from __future__ import annotations

from typing import Any


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
