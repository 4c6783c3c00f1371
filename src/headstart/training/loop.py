"""The one training loop every fine-tuning strategy runs.

A run is a list of :class:`Stage` s (head only, then more and more of the backbone). The loop is built on
``accelerate``: the same code trains on a CPU, one GPU, or several processes started by ``torchrun``
(data-parallel, each process on its own shard of every epoch). It steps, validates and checkpoints; the rest
(schedule, early stopping, time budget, progress, BatchNorm statistics across processes) are callbacks.
At the end of each stage, and after an epoch when ``checkpoint_seconds`` have passed since the last one, it
writes a checkpoint, the callbacks' state included, to ``<work_dir>/checkpoint``; calling it again with the same
working folder resumes from there (replaying the epochs after it) and ends with the same weights as an
uninterrupted run, because every source of randomness is re-seeded from ``(seed, epoch, process)`` at the
start of each epoch and the learning-rate schedule is a function of the step. Head-only stages train on cached
frozen features where they can (:mod:`headstart.training.frozen`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from headstart.backbones.base import Backbone
from headstart.backbones.engine import tune_runtime
from headstart.data.base import Dataset
from headstart.progress import note
from headstart.training.batches import grouping_lengths, train_loader
from headstart.training.callbacks import default_callbacks
from headstart.training.checkpoint import (
    CHECKPOINT_DIR,
    discard_damaged_checkpoint,
    load_checkpoint,
    optimizer_tensors,
    restore_optimizer,
    run_fingerprint,
    save_checkpoint,
)
from headstart.training.config import TrainingConfig
from headstart.training.context import FitContext
from headstart.training.frozen import FrozenFeatures, uses_frozen_features
from headstart.training.network import Classifier, Criterion, Regularizer
from headstart.training.outcome import TrainResult
from headstart.training.processes import all_sum
from headstart.training.seeding import preserved_global_rng, seed_epoch
from headstart.training.stages import LayerGroups, Stage, set_train_mode
from headstart.training.validation import validate


def train(backbone: Backbone, head: nn.Module, train_data: Dataset, val_data: Dataset | None,
          stages: list[Stage], config: TrainingConfig, context: FitContext, *, run_key: dict[str, Any],
          trainable: Callable[[str], bool] | None = None, regularizer: Regularizer | None = None,
          criterion: Criterion | None = None) -> TrainResult:
    """Train ``backbone.module`` and ``head`` in place through ``stages``; the best epoch's weights are kept.

    Args:
        backbone: The backbone; its module's weights are updated in place.
        head: The classification head; updated in place.
        train_data: Training examples.
        val_data: Validation examples for early stopping and choosing the best epoch, or ``None`` (then
            the last epoch's weights are kept).
        stages: The phases of training, in order.
        config: Loop settings, already resolved for the modality (:meth:`TrainingConfig.resolve`).
        context: Working folder (checkpoints), progress display and wall-clock budget.
        run_key: What identifies the run besides data and weights (strategy name and settings); a checkpoint
            written under another key is refused.
        trainable: Restricts which backbone parameters (by name in ``backbone.module``) may train, e.g. only
            LoRA adapters; ``None`` lets every parameter of a trained group train.
        regularizer: Extra loss term computed from the network each step (L2-SP).
        criterion: The loss of a batch's outputs and labels, instead of cross-entropy on the head's logits
            (e.g. a contrastive loss on embeddings, with an identity head); train accuracy is then not recorded.

    Returns:
        The history and the outcome. Raises :class:`~headstart.training.checkpoint.CheckpointMismatchError`
        if the working folder holds a checkpoint of a different run.
    """
    loop = TrainingLoop(Classifier(backbone, head), train_data, val_data, stages, config, context, run_key,
                        trainable, regularizer, criterion)
    return loop.fit()


def _mixed_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    if not torch.cuda.is_available():
        return "no"  # bf16 autocast measured slower than fp32 for training on CPU (see benchmarks/training.py)
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class TrainingLoop:
    """One call of :func:`train`: the network, where the run stands, and the callbacks acting at its hooks.

    Callbacks read ``net``, ``accelerator``, ``optimizer``, ``val_data``, ``result``, ``started`` (monotonic
    start time), the position (``stage_epoch``, ``stage_step``, ``steps_per_epoch``) and ``running_loss``,
    and steer the run with :meth:`stop_stage` and :meth:`stop_run`; the checkpoint holds their state.
    """

    def __init__(self, net: Classifier, train_data: Dataset, val_data: Dataset | None, stages: list[Stage],
                 config: TrainingConfig, context: FitContext, run_key: dict[str, Any],
                 trainable: Callable[[str], bool] | None, regularizer: Regularizer | None,
                 criterion: Criterion | None = None) -> None:
        from accelerate import Accelerator

        tune_runtime()
        self.started = time.monotonic()
        self.train_data, self.val_data, self.config, self.context = train_data, val_data, config, context
        # Stages without epochs change nothing; dropping them keeps stage indices in checkpoints meaningful.
        self.stages = [stage for stage in stages if stage.epochs > 0]
        self.trainable, self.regularizer = trainable, regularizer
        self.criterion = criterion or nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.counts_correct = criterion is None
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                                       mixed_precision=_mixed_precision(config.precision))
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        # The backbone keeps its module in the memory format it runs fastest in (channels-last for CNNs) and
        # lays out each batch to match in its forward; the loop leaves both alone.
        self.net = net.to(self.accelerator.device)
        self.groups = LayerGroups(self.net)
        self.fingerprint = run_fingerprint(run_key, seed=context.seed, stages=self.stages, net=self.net,
                                           train_data=train_data, val_data=val_data, processes=self.world)
        self.callbacks = default_callbacks(config, context, main_process=self.accelerator.is_main_process)
        self.result = TrainResult()
        self.stage, self.stage_epoch, self.stage_step, self.epoch, self.serial = 0, 0, 0, 0, 0
        self.done, self.stage_stopped, self.stop_reason = False, False, None
        self.optimizer: torch.optim.Optimizer  # the current stage's, built when it starts
        self.optimizer_saved: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None
        self.steps_per_epoch, self.running_loss = 0, float("nan")
        self.frozen: FrozenFeatures | None = None
        self.saved_at = time.monotonic()

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def stop_stage(self) -> None:
        """End the current stage after this epoch (early stopping); the run goes on with the next stage."""
        self.stage_stopped = True

    def stop_run(self, reason: str) -> None:
        """End the run after this step; the epoch is recorded as partial and not checkpointed."""
        self.stop_reason = reason

    def fit(self) -> TrainResult:
        """Run (or resume) every stage, then keep the best weights; returns what happened."""
        with preserved_global_rng():
            try:
                self._restore()
                reason = None
                while not self.done and self.stage < len(self.stages):
                    reason = self._run_stage(self.stages[self.stage])
                    if reason == "max_time":
                        break
                if not self.done and reason is None:
                    self.done = True  # e.g. every stage had zero epochs
                self._finish(reason)
            except BaseException:
                self._call("on_exception")
                raise
        return self.result

    def _run_stage(self, stage: Stage) -> str | None:
        """Train one stage from where the run stands; returns why it ended early, if it did."""
        optimizer = self.groups.optimizer(self.net, stage, self.trainable, self.config.weight_decay)
        self.optimizer = self.accelerator.prepare_optimizer(optimizer)
        if self.optimizer_saved is not None:
            restore_optimizer(self.optimizer, *self.optimizer_saved)
            self.optimizer_saved = None
        frozen = self._frozen_features(stage)
        if frozen is not None:  # the head alone, on features computed once
            model: nn.Module = self.net.head
            loader, sampler = frozen.loader(self.config.batch_size, seed=self.context.seed,
                                            lengths=grouping_lengths(self.train_data, self.net.backbone, self.config))
        else:
            # DDP only synchronises parameters that required grad when it was built, so each stage wraps anew;
            # accelerate's autocast patch of the previous wrapping is undone first so it does not nest.
            self.net.__dict__.pop("forward", None)
            model = self.accelerator.prepare_model(self.net)
            loader, sampler = train_loader(self.train_data, self.net.backbone, self.config, seed=self.context.seed,
                                           rank=self.rank, world=self.world)
        self.steps_per_epoch = len(loader)
        self._call("on_stage_start", stage)
        while self.stage_epoch < stage.epochs:
            seed_epoch(self.context.seed, self.epoch, self.rank)
            sampler.set_epoch(self.epoch)
            self._run_epoch(stage, model, loader, frozen)
            if self.stop_reason is not None:
                return self.stop_reason
            self.epoch, self.stage_epoch = self.epoch + 1, self.stage_epoch + 1
            stage_over = self.stage_epoch >= stage.epochs or self.stage_stopped
            if stage_over:
                self.stage, self.stage_epoch, self.stage_step = self.stage + 1, 0, 0
                self.done = self.stage >= len(self.stages)
            # A checkpoint holds the model, the best weights and the optimizer state (hundreds of MB for a
            # transformer): written at each stage's end and otherwise at most every `checkpoint_seconds`.
            if stage_over or time.monotonic() - self.saved_at >= self.config.checkpoint_seconds:
                self._save(None if stage_over else self.optimizer)
            if stage_over:
                return "early_stopping" if self.stage_stopped else None
        return None

    def _frozen_features(self, stage: Stage) -> FrozenFeatures | None:
        """The cached features a head-only stage trains on (:mod:`headstart.training.frozen`), or ``None``."""
        if not uses_frozen_features(stage, self.config.augment, self.world, self.counts_correct):
            return None
        backbone = self.net.backbone
        if self.frozen is None or self.frozen.fingerprint != backbone.fingerprint():
            self.frozen = FrozenFeatures(backbone, self.train_data, self.val_data, batch_size=self.config.batch_size,
                                         cache=self.context.cache,
                                         progress=self.context.progress and self.accelerator.is_main_process)
        return self.frozen

    def _run_epoch(self, stage: Stage, model: nn.Module, loader: DataLoader, frozen: FrozenFeatures | None
                   ) -> None:
        tic = time.monotonic()
        self.stage_stopped = False
        self._call("on_epoch_start", stage)
        record: dict[str, Any] = {"epoch": self.epoch, "stage": stage.name, **self._train_epoch(model, loader)}
        if self.val_data is not None:
            record.update(frozen.validate(self.net.head) if frozen is not None
                          else validate(self.net, self.val_data, self.config.batch_size, self.accelerator))
        record.update(lr=stage.lr, seconds=time.monotonic() - tic)
        if self.stop_reason is not None:
            record["partial"] = True  # still competes for best
        self.result.history.append(record)
        self._call("on_epoch_end", record)

    def _train_epoch(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        from accelerate.utils import send_to_device

        set_train_mode(self.net)
        loss_sum = correct = count = 0.0
        for batch, labels in loader:
            self._call("on_step_start")
            batch, labels = send_to_device(batch, self.accelerator.device), labels.to(self.accelerator.device)
            logits = model(batch)
            loss = self.criterion(logits.float(), labels)
            objective = loss if self.regularizer is None else loss + self.regularizer(self.net)
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(objective)
            if self.config.grad_clip is not None:
                self.accelerator.clip_grad_norm_([p for p in self.net.parameters() if p.requires_grad],
                                                 self.config.grad_clip)
            self.optimizer.step()
            self.stage_step += 1
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item() if self.counts_correct else float("nan")
            count += len(labels)
            self.running_loss = loss_sum / count
            self._call("on_step_end")
            if self.stop_reason is not None:
                break
        self._call("on_train_epoch_end")
        loss_sum, correct, count = all_sum(self.accelerator, [loss_sum, correct, count])
        return {"train_loss": loss_sum / max(count, 1), "train_accuracy": correct / max(count, 1)}

    def _restore(self) -> None:
        if self.context.restart_damaged:
            discard_damaged_checkpoint(self.context.work_dir / CHECKPOINT_DIR)
        saved = load_checkpoint(self.context.work_dir / CHECKPOINT_DIR, self.fingerprint)
        if saved is None:
            return
        state, tensors = saved
        self.net.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        for callback in self.callbacks:
            if callback.state_key is not None:
                callback.load_state_dict(state[callback.state_key], tensors)
        self.stage, self.stage_epoch, self.stage_step = state["stage"], state["stage_epoch"], state["stage_step"]
        self.epoch, self.serial, self.done = state["epoch"], state["serial"], state["done"]
        self.result.history = state["history"]
        self.result.resumed_from_epoch = self.epoch
        if not self.done:
            stage = self.stages[self.stage]
            note(f"resuming from epoch {self.epoch + 1} (stage {stage.name}, epoch {self.stage_epoch + 1}/"
                 f"{stage.epochs}) from the checkpoint in {self.context.work_dir / CHECKPOINT_DIR}",
                 enabled=self.context.progress and self.accelerator.is_main_process)
        if state["optimizer"] is not None:
            self.optimizer_saved = (state["optimizer"], tensors)

    def _save(self, optimizer: torch.optim.Optimizer | None) -> None:
        self.serial += 1
        if self.accelerator.is_main_process:
            tensors = {f"model.{k}": v for k, v in self.net.state_dict().items()}
            current = self.stages[self.stage] if self.stage < len(self.stages) else None
            state = {
                "fingerprint": self.fingerprint, "serial": self.serial, "done": self.done,
                "stage": self.stage, "stage_name": (current or self.stages[-1]).name,
                "stage_epoch": self.stage_epoch, "stage_step": self.stage_step, "epoch": self.epoch,
                "trainable_groups": self.groups.trained(current), "history": self.result.history,
                "optimizer": None,
            }
            for callback in self.callbacks:
                if callback.state_key is not None:
                    state[callback.state_key] = callback.state_dict()
                    tensors.update(callback.tensors())
            if optimizer is not None:
                state["optimizer"], optim_tensors = optimizer_tensors(optimizer)
                tensors.update(optim_tensors)
            save_checkpoint(self.context.work_dir / CHECKPOINT_DIR, state, tensors)
        self.accelerator.wait_for_everyone()
        self.saved_at = time.monotonic()

    def _finish(self, reason: str | None) -> None:
        self._call("on_fit_end")
        self.net.__dict__.pop("forward", None)
        self.net.eval().to("cpu")
        for param in self.net.parameters():
            param.requires_grad_(True)
        self.net.backbone.weights_changed()  # trained weights get a fingerprint of their own
        self.result.stop_reason = reason or "completed"
        ran = {record["stage"] for record in self.result.history}
        self.result.stages_run = [stage.name for stage in self.stages if stage.name in ran]
        if reason == "max_time":
            self.result.stopped_in_stage = self.stages[self.stage].name
        self.result.seconds = time.monotonic() - self.started
        self.accelerator.free_memory()
