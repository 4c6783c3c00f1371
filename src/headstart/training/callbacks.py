"""Callbacks: what the training loop does around its steps, each concern in one place.

The loop (:class:`~headstart.training.loop.TrainingLoop`) calls every callback's hooks in order: when a stage
starts, before and after each optimisation step, after an epoch's training steps, when an epoch's record is
complete, when the run ends, and when an exception escapes. A callback with a :attr:`Callback.state_key`
keeps state in the checkpoint (:meth:`Callback.state_dict`, :meth:`Callback.tensors`), so a resumed run
continues exactly where it stood.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from headstart.progress import ProgressTask
from headstart.training.config import TrainingConfig
from headstart.training.context import FitContext
from headstart.training.early_stopping import EarlyStopping
from headstart.training.processes import any_process, average_buffers
from headstart.training.schedules import ScheduleName, lr_factor

if TYPE_CHECKING:
    from headstart.training.loop import TrainingLoop
    from headstart.training.stages import Stage


class Callback:
    """Base class: every hook does nothing; a callback overrides those it needs."""

    #: Key of this callback's state in the checkpoint, or ``None`` when it keeps none.
    state_key: ClassVar[str | None] = None

    def on_stage_start(self, loop: TrainingLoop, stage: Stage) -> None:
        """A stage starts (or resumes: ``loop.stage_epoch`` is then above zero); its optimizer is built."""

    def on_epoch_start(self, loop: TrainingLoop, stage: Stage) -> None:
        """An epoch starts, after the random generators are re-seeded for it."""

    def on_step_start(self, loop: TrainingLoop) -> None:
        """Before an optimisation step."""

    def on_step_end(self, loop: TrainingLoop) -> None:
        """After an optimisation step; ``loop.running_loss`` is the epoch's mean training loss so far."""

    def on_train_epoch_end(self, loop: TrainingLoop) -> None:
        """After an epoch's training steps (all of them, or fewer if the run was stopped), before validation."""

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        """An epoch's record (training and validation metrics) is complete and in the history; the loop then
        counts the epoch, moves to the next stage if this one is over, and checkpoints."""

    def on_fit_end(self, loop: TrainingLoop) -> None:
        """The run is over (completed, stopped, or found finished in the checkpoint)."""

    def on_exception(self, loop: TrainingLoop) -> None:
        """An exception is leaving the loop."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state for the checkpoint."""
        return {}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Named tensors for the checkpoint (names unique across callbacks)."""
        return {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` and :meth:`tensors` returned (``tensors`` holds the whole checkpoint's)."""


class LRSchedule(Callback):
    """Sets every parameter group's learning rate before each step: its peak (``base_lr``) times the schedule's
    factor at the stage's step. The factor is a function of the step, so a resumed run needs only the step count.

    Args:
        schedule: The schedule's name (:func:`~headstart.training.schedules.lr_factor`).
        warmup: Fraction of each stage's steps spent warming up.
    """

    def __init__(self, schedule: ScheduleName, warmup: float) -> None:
        self.schedule, self.warmup = schedule, warmup
        self.total_steps = self.warmup_steps = 0

    def on_stage_start(self, loop: TrainingLoop, stage: Stage) -> None:
        self.total_steps = stage.epochs * loop.steps_per_epoch
        self.warmup_steps = int(self.warmup * self.total_steps)

    def on_step_start(self, loop: TrainingLoop) -> None:
        factor = lr_factor(self.schedule, loop.stage_step, self.total_steps, self.warmup_steps)
        for group in loop.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor


class EarlyStoppingCallback(Callback):
    """Keeps the best epoch's weights (on validation) and ends a stage when its metric stops improving.

    Every stage gets its full patience. On small data an epoch is a handful of steps and the validation set a
    few examples, so patience alone would end a stage after a dozen noisy steps: a stage only stops early once
    it has run ``min_steps`` steps. Without validation data it does nothing (the last weights are kept).

    Args:
        monitor: ``"val_accuracy"`` or ``"val_loss"``.
        patience: Epochs without improvement before a stage stops; ``None`` never stops.
        min_steps: Steps a stage runs before it may stop early.
    """

    state_key = "early_stopping"

    def __init__(self, monitor: str, patience: int | None, min_steps: int) -> None:
        self.stopper = EarlyStopping(monitor, patience)
        self.min_steps = min_steps
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_stage_start(self, loop: TrainingLoop, stage: Stage) -> None:
        if loop.stage_epoch == 0:
            self.stopper.new_stage()

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        if loop.val_data is not None and self.stopper.update(record, record["epoch"]):
            self.best_weights = {k: v.detach().clone() for k, v in loop.net.state_dict().items()}
        if self.stopper.should_stop and loop.stage_step >= self.min_steps:
            loop.stop_stage()

    def on_fit_end(self, loop: TrainingLoop) -> None:
        if self.best_weights is not None:
            loop.net.load_state_dict(self.best_weights)
        best_epoch = loop.result.best_epoch = self.stopper.best_epoch
        if best_epoch is not None:
            history = loop.result.history
            loop.result.best = next((h for h in history if h["epoch"] == best_epoch and not h.get("partial")),
                                    history[-1])

    def state_dict(self) -> dict[str, Any]:
        return self.stopper.state_dict()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"best.{k}": v for k, v in (self.best_weights or {}).items()}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.stopper.load_state_dict(state)
        self.best_weights = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")} or None


class TimeBudget(Callback):
    """Stops the run after the step during which its wall-clock budget ran out (on every process at once),
    and ends a head-only stage that has later stages once it has used ``head_share`` of the budget.

    The epoch it stops in is recorded as partial and not checkpointed: a resumed run restarts that epoch from
    the last whole-epoch checkpoint. The head-only cap exists because ``min_steps`` raises the head stage's
    epochs on small data: without it a short budget could be spent before the backbone trains at all.

    Args:
        seconds: The budget, counted from the start of the :func:`~headstart.training.loop.train` call.
        head_share: Share of the budget after which a head-only stage followed by others ends (at an epoch's end).
    """

    def __init__(self, seconds: float, head_share: float = 0.25) -> None:
        self.seconds, self.head_share = seconds, head_share

    def on_step_end(self, loop: TrainingLoop) -> None:
        if any_process(loop.accelerator, time.monotonic() - loop.started > self.seconds):
            loop.stop_run("max_time")

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        head_only = loop.stages[loop.stage].trained_groups == 0 and loop.stage < len(loop.stages) - 1
        if head_only and any_process(loop.accelerator,
                                     time.monotonic() - loop.started > self.head_share * self.seconds):
            loop.stop_stage()


class EpochProgress(Callback):
    """Shows each epoch's training steps with the running loss (a bar, or plain lines when stderr is not a
    terminal: see :mod:`headstart.progress`)."""

    def __init__(self) -> None:
        self.task: ProgressTask | None = None

    def on_epoch_start(self, loop: TrainingLoop, stage: Stage) -> None:
        self.task = ProgressTask(f"training {stage.name} epoch {loop.stage_epoch + 1}/{stage.epochs}",
                                 loop.steps_per_epoch, unit="steps")

    def on_step_end(self, loop: TrainingLoop) -> None:
        if self.task is not None:
            self.task.advance(loss=loop.running_loss)

    def on_train_epoch_end(self, loop: TrainingLoop) -> None:
        self._close()

    def on_exception(self, loop: TrainingLoop) -> None:
        self._close()

    def _close(self) -> None:
        if self.task is not None:
            self.task.close()
            self.task = None


class BufferSync(Callback):
    """Averages floating-point buffers (BatchNorm statistics) over the processes after each epoch's steps (with
    one process it does nothing).

    DDP copies buffers from process 0 before each forward, but the last step's statistics stay per process;
    averaging them leaves every process with the same (and better-estimated) state.
    """

    def on_train_epoch_end(self, loop: TrainingLoop) -> None:
        average_buffers(loop.accelerator, loop.net)


class EpochReporter(Callback):
    """Hands each complete epoch record to the run's ``on_epoch_end`` function (a tuner reports the validation
    score and raises to prune a hopeless trial; the exception ends the run)."""

    def __init__(self, report: Callable[[dict[str, Any]], None]) -> None:
        self.report = report

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        self.report(dict(record))


def default_callbacks(config: TrainingConfig, context: FitContext, *, main_process: bool) -> list[Callback]:
    """The callbacks of a run, in the order their hooks are called.

    Args:
        config: The loop's settings (schedule, early stopping).
        context: The run's budget and whether it shows progress.
        main_process: Whether this is the process that shows progress.
    """
    callbacks = [LRSchedule(config.schedule, config.warmup),
                 EarlyStoppingCallback(config.monitor, config.patience, config.min_steps), BufferSync()]
    if context.max_time is not None:
        callbacks.append(TimeBudget(context.max_time))
    if context.progress and main_process:
        callbacks.append(EpochProgress())
    if context.on_epoch_end is not None and main_process:
        callbacks.append(EpochReporter(context.on_epoch_end))
    return callbacks
