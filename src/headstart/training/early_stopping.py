"""Early stopping and best-epoch tracking, with state that goes into checkpoints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """Tracks the best value of a validation metric and how long it has not improved.

    Args:
        monitor: ``"val_accuracy"`` (higher is better) or ``"val_loss"`` (lower is better).
        patience: Epochs without improvement before :attr:`should_stop`; ``None`` never stops.

    With ``"val_accuracy"``, an epoch that ties the best accuracy with a lower validation loss becomes the best
    epoch (small validation sets tie often: on 8 clips, 100% is reached long before the network is trained) but
    does not renew the patience, so ties never lengthen training.
    """

    monitor: str
    patience: int | None
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    best_loss: float | None = None

    def update(self, metrics: dict[str, float], epoch: int) -> bool:
        """Record one epoch's metrics; returns whether it is the best so far."""
        value = metrics[self.monitor]
        sign = 1.0 if self.monitor.endswith("accuracy") else -1.0
        improved = math.isfinite(value) and (self.best is None or sign * (value - self.best) > 1e-12)
        loss = metrics.get("val_loss")
        tie_won = (not improved and sign > 0 and self.best is not None and abs(value - self.best) <= 1e-12
                   and loss is not None and self.best_loss is not None and loss < self.best_loss - 1e-12)
        if improved or tie_won:
            self.best, self.best_epoch, self.best_loss = value, epoch, loss
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        return improved or tie_won

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs have passed without improvement."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def new_stage(self) -> None:
        """Give the next stage its full patience (a newly unfrozen stage starts from a plateau)."""
        self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        for key, value in state.items():
            setattr(self, key, value)
