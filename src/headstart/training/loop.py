"""The one training loop every fine-tuning strategy runs.

A run is a list of :class:`Stage` s (head only, then more and more of the backbone). The loop is built on
``accelerate``: the same code trains on a CPU, one GPU, or several processes started by ``torchrun``
(data-parallel, each process on its own shard of every epoch). After every epoch it writes a checkpoint to
``<work_dir>/checkpoint``; calling it again with the same working folder resumes from there and ends with the
same weights as an uninterrupted run, because every source of randomness is re-seeded from
``(seed, epoch, process)`` at the start of each epoch and the learning-rate schedule is a function of the step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, DistributedSampler

from headstart.backbones.base import Backbone
from headstart.backbones.engine import tune_runtime
from headstart.data.base import Dataset
from headstart.training.checkpoint import (
    CHECKPOINT_DIR,
    load_checkpoint,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
    tensor_digest,
)
from headstart.training.config import TrainingConfig
from headstart.training.context import FitContext
from headstart.training.early_stopping import EarlyStopping
from headstart.training.schedules import lr_factor

Regularizer = Callable[["Classifier"], torch.Tensor]


@dataclass(frozen=True)
class Stage:
    """One phase of training with a fixed set of trainable layer groups and its own schedule.

    Attributes:
        name: Shown in progress bars and the history (``"head"``, ``"all"``, ``"top-2"``).
        epochs: Epochs in this stage.
        trained_groups: How many of the backbone's top layer groups train (the head always does);
            ``0`` trains the head only, ``None`` every group.
        lr: Peak learning rate of the head and the top trained group.
        layer_decay: Each lower layer group's rate is the rate of the group above times this.
    """

    name: str
    epochs: int
    trained_groups: int | None
    lr: float
    layer_decay: float = 1.0


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        history: One record per epoch: stage, losses, accuracies, learning rate, seconds.
        best_epoch: The epoch whose weights were kept (best on validation), or ``None`` without validation.
        best: That epoch's validation metrics.
        stop_reason: ``"completed"``, ``"early_stopping"`` or ``"max_time"``.
        resumed_from_epoch: Epochs already done in the checkpoint this run resumed from, or ``None``.
        seconds: Wall-clock seconds of this call.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best: dict[str, float] | None = None
    stop_reason: str = "completed"
    resumed_from_epoch: int | None = None
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary for ``TransferModel.metrics["train"]``."""
        return asdict(self)


class Classifier(nn.Module):
    """The backbone's module and a linear head as one ``nn.Module`` (what DDP wraps and checkpoints hold).

    Args:
        backbone: Its ``module`` becomes the ``body`` submodule; its ``forward`` is called on batches.
        head: Linear layer on the backbone's features.
    """

    def __init__(self, backbone: Backbone, head: nn.Linear) -> None:
        super().__init__()
        self.body = backbone.module
        self.head = head
        self.backbone = backbone  # not an nn.Module: a plain attribute, outside state_dict

    def forward(self, batch: Any) -> torch.Tensor:
        """Logits for a collated batch."""
        return self.head(self.backbone.forward(batch))


def train(backbone: Backbone, head: nn.Linear, train_data: Dataset, val_data: Dataset | None,
          stages: list[Stage], config: TrainingConfig, context: FitContext, *, run_key: dict[str, Any],
          trainable: Callable[[str], bool] | None = None, regularizer: Regularizer | None = None
          ) -> TrainResult:
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

    Returns:
        The history and the outcome. Raises :class:`~headstart.training.checkpoint.CheckpointMismatchError`
        if the working folder holds a checkpoint of a different run.
    """
    run = _Run(backbone, head, train_data, val_data, stages, config, context, run_key, trainable, regularizer)
    return run.execute()


def _mixed_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    if not torch.cuda.is_available():
        return "no"  # bf16 autocast measured slower than fp32 for training on CPU (see benchmarks/training.py)
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@contextlib.contextmanager
def _preserved_global_rng() -> Iterator[None]:
    # The loop re-seeds the global generators every epoch; the caller's random streams are put back after.
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    derived = int.from_bytes(hashlib.sha256(f"{seed}:{epoch}:{rank}".encode()).digest()[:4], "little")
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)


def _labels_digest(data: Dataset | None) -> str | None:
    if data is None:
        return None
    return hashlib.sha256(data.content_hash().encode() + data.labels.tobytes()).hexdigest()


class _Run:
    """One call of :func:`train`: the state that moves between its steps."""

    def __init__(self, backbone: Backbone, head: nn.Linear, train_data: Dataset, val_data: Dataset | None,
                 stages: list[Stage], config: TrainingConfig, context: FitContext, run_key: dict[str, Any],
                 trainable: Callable[[str], bool] | None, regularizer: Regularizer | None) -> None:
        from accelerate import Accelerator

        tune_runtime()
        self.started = time.monotonic()
        self.backbone, self.train_data, self.val_data = backbone, train_data, val_data
        # Stages without epochs change nothing; dropping them keeps stage indices in checkpoints meaningful.
        self.stages = [stage for stage in stages if stage.epochs > 0]
        self.config, self.context = config, context
        self.trainable, self.regularizer = trainable, regularizer
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                                       mixed_precision=_mixed_precision(config.precision))
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        # The backbone keeps its module in the memory format it runs fastest in (channels-last for CNNs) and
        # lays out each batch to match in its forward; the loop leaves both alone.
        self.net = Classifier(backbone, head).to(self.accelerator.device)
        self.group_of = self._group_index()
        self.fingerprint = self._fingerprint(run_key)
        self.checkpoint_dir = context.work_dir / CHECKPOINT_DIR
        self.stopper = EarlyStopping(config.monitor, config.patience)
        self.result = TrainResult()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stage, self.stage_epoch, self.stage_step, self.epoch, self.serial = 0, 0, 0, 0, 0
        self.optimizer_saved: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None
        self.done = False

    # -- setup ---------------------------------------------------------------------------------------

    def _group_index(self) -> dict[str, int]:
        """Parameter name in ``net`` -> layer group index; the head is one past the top group."""
        groups = self.backbone.layer_groups()
        owner = {id(p): i for i, group in enumerate(groups) for p in group.parameters()}
        top = len(groups) - 1
        index = {f"body.{name}": owner.get(id(p), top) for name, p in self.net.body.named_parameters()}
        index.update({f"head.{name}": len(groups) for name, _ in self.net.head.named_parameters()})
        self.n_groups = len(groups)
        return index

    def _fingerprint(self, run_key: dict[str, Any]) -> str:
        key = {
            "run": run_key,
            "seed": self.context.seed,
            "stages": [asdict(s) for s in self.stages],
            "backbone": self.backbone.config(),
            "initial_weights": tensor_digest(self.net.state_dict()),
            "train": _labels_digest(self.train_data),
            "val": _labels_digest(self.val_data),
            "processes": self.world,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def _loader(self) -> DataLoader:
        n = len(self.train_data)
        # Disjoint shards: with several processes the few examples that do not divide evenly are dropped
        # (a different few each epoch) rather than repeated.
        self.sampler = DistributedSampler(range(n), num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=self.context.seed, drop_last=self.world > 1)
        per_rank = len(self.sampler)
        items, labels, augment = self.train_data.items, self.train_data.labels, self.config.augment or "off"

        def collate(indices: list[int]) -> tuple[Any, torch.Tensor]:
            return (self.backbone.collate([items[i] for i in indices], augment=augment),
                    torch.from_numpy(labels[indices]))

        # BatchNorm cannot train on a batch of one example: such a last batch is dropped.
        # Worker processes draw their random streams from the generators re-seeded at each epoch's start, so
        # augmentation stays reproducible (and resumable) with them.
        return DataLoader(range(n), batch_size=self.config.batch_size, sampler=self.sampler, collate_fn=collate,
                          drop_last=per_rank % self.config.batch_size == 1 and per_rank > 1,
                          num_workers=self.config.loader_workers)

    # -- checkpoint -----------------------------------------------------------------------------------

    def _restore(self) -> None:
        saved = load_checkpoint(self.checkpoint_dir, self.fingerprint)
        if saved is None:
            return
        state, tensors = saved
        model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        self.net.load_state_dict(model)
        best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None
        self.stage, self.stage_epoch, self.stage_step = state["stage"], state["stage_epoch"], state["stage_step"]
        self.epoch, self.serial, self.done = state["epoch"], state["serial"], state["done"]
        self.stopper.load_state_dict(state["early_stopping"])
        self.result.history = state["history"]
        self.result.resumed_from_epoch = self.epoch
        if state["optimizer"] is not None:
            self.optimizer_saved = (state["optimizer"], tensors)

    def _save(self, optimizer: torch.optim.Optimizer | None) -> None:
        self.serial += 1
        if self.accelerator.is_main_process:
            tensors = {f"model.{k}": v for k, v in self.net.state_dict().items()}
            if self.best_state is not None:
                tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
            optim_json = None
            if optimizer is not None:
                optim_json, optim_tensors = optimizer_tensors(optimizer)
                tensors.update(optim_tensors)
            state = {
                "fingerprint": self.fingerprint, "serial": self.serial, "done": self.done,
                "stage": self.stage, "stage_name": self.stages[min(self.stage, len(self.stages) - 1)].name,
                "stage_epoch": self.stage_epoch, "stage_step": self.stage_step, "epoch": self.epoch,
                "trainable_groups": self._trained_group_ids(), "early_stopping": self.stopper.state_dict(),
                "history": self.result.history, "optimizer": optim_json,
            }
            save_checkpoint(self.checkpoint_dir, state, tensors)
        self.accelerator.wait_for_everyone()

    # -- training -------------------------------------------------------------------------------------

    def _trained_group_ids(self) -> list[int]:
        if self.stage >= len(self.stages):
            return []
        trained = self.stages[self.stage].trained_groups
        first = 0 if trained is None else max(self.n_groups - trained, 0)
        return list(range(first, self.n_groups))

    def _configure_stage(self, stage: Stage) -> torch.optim.Optimizer:
        """Freeze and unfreeze for ``stage`` and build its AdamW with layer-wise learning rates."""
        trained = set(self._trained_group_ids()) | {self.n_groups}
        groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
        for name, param in self.net.named_parameters():
            group = self.group_of[name]
            allowed = name.startswith("head.") or self.trainable is None or self.trainable(
                name.removeprefix("body."))
            param.requires_grad_(group in trained and allowed)
            if param.requires_grad:
                groups.setdefault((group, param.ndim > 1), []).append(param)
        param_groups = []
        for (group, decays), params in sorted(groups.items()):
            lr = stage.lr * stage.layer_decay ** max(self.n_groups - 1 - group, 0)
            param_groups.append({"params": params, "lr": lr, "base_lr": lr,
                                 "weight_decay": self.config.weight_decay if decays else 0.0,
                                 "name": "head" if group == self.n_groups else f"group{group}"})
        # The fused kernel updates every parameter in one pass (measured a few percent per step on CPU).
        fused = all(p.dtype == torch.float32 for group in param_groups for p in group["params"])
        optimizer = torch.optim.AdamW(param_groups, lr=stage.lr, fused=fused or None)
        return self.accelerator.prepare_optimizer(optimizer)

    def _wrap(self) -> nn.Module:
        # DDP only synchronises parameters that required grad when it was built, so each stage wraps anew;
        # accelerate's autocast patch of the previous wrapping is undone first so it does not nest.
        self.net.__dict__.pop("forward", None)
        return self.accelerator.prepare_model(self.net)

    def _set_train_mode(self) -> None:
        self.net.train()
        for module in self.net.modules():
            # Frozen BatchNorm layers keep their pre-trained running statistics.
            if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters()):
                module.eval()

    def _to_device(self, batch: Any) -> Any:
        from accelerate.utils import send_to_device

        return send_to_device(batch, self.accelerator.device)

    def _time_up(self) -> bool:
        over = self.context.max_time is not None and time.monotonic() - self.started > self.context.max_time
        if self.world == 1:
            return over
        flag = torch.tensor([float(over)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "max").item())

    def _sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(tensor, "sum").tolist()

    def _sync_buffers(self) -> None:
        # DDP copies buffers from process 0 before each forward, but the last step's BatchNorm statistics
        # stay per process; averaging them leaves every process with the same (and better-estimated) state.
        if self.world == 1:
            return
        with torch.no_grad():
            for buffer in self.net.buffers():
                if buffer.is_floating_point():
                    buffer.copy_(self.accelerator.reduce(buffer, "mean"))

    def _train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                     stage: Stage, bar: Any) -> tuple[dict[str, float], bool]:
        """One epoch (or less, if the time budget runs out); returns train metrics and whether time is up."""
        self._set_train_mode()
        loss_fn = nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)
        total_steps = stage.epochs * len(loader)
        warmup = int(self.config.warmup * total_steps)
        loss_sum = correct = count = 0.0
        time_up = False
        for batch, labels in loader:
            factor = lr_factor(self.config.schedule, self.stage_step, total_steps, warmup)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            batch, labels = self._to_device(batch), labels.to(self.accelerator.device)
            logits = model(batch)
            loss = loss_fn(logits.float(), labels)
            objective = loss if self.regularizer is None else loss + self.regularizer(self.net)
            optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(objective)
            if self.config.grad_clip is not None:
                self.accelerator.clip_grad_norm_([p for p in self.net.parameters() if p.requires_grad],
                                                 self.config.grad_clip)
            optimizer.step()
            self.stage_step += 1
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
            if bar is not None:
                bar.update(loss=loss_sum / count)
            if self._time_up():
                time_up = True
                break
        self._sync_buffers()
        loss_sum, correct, count = self._sum([loss_sum, correct, count])
        return {"train_loss": loss_sum / max(count, 1), "train_accuracy": correct / max(count, 1)}, time_up

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        assert self.val_data is not None
        self.net.eval()
        items, labels = self.val_data.items, self.val_data.labels
        shard = list(range(self.rank, len(items), self.world))
        loss_sum = correct = 0.0
        for start in range(0, len(shard), self.config.batch_size):
            idx = shard[start:start + self.config.batch_size]
            batch = self._to_device(self.backbone.collate([items[i] for i in idx], augment="off"))
            target = torch.from_numpy(labels[idx]).to(self.accelerator.device)
            with self.accelerator.autocast():
                logits = self.net(batch).float()
            loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
            correct += (logits.argmax(1) == target).sum().item()
        loss_sum, correct, count = self._sum([loss_sum, correct, float(len(shard))])
        return {"val_loss": loss_sum / max(count, 1), "val_accuracy": correct / max(count, 1)}

    def _end_epoch(self, record: dict[str, Any]) -> None:
        self.result.history.append(record)
        if self.val_data is not None and self.stopper.update(record, record["epoch"]):
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def _run_stage(self, stage: Stage) -> str | None:
        """Train one stage from where the run stands; returns a reason if the whole run must stop."""
        optimizer = self._configure_stage(stage)
        if self.optimizer_saved is not None:
            restore_optimizer(optimizer, *self.optimizer_saved)
            self.optimizer_saved = None
        model = self._wrap()
        loader = self._loader()
        if self.stage_epoch == 0:
            self.stopper.new_stage()
        while self.stage_epoch < stage.epochs:
            _seed_epoch(self.context.seed, self.epoch, self.rank)
            self.sampler.set_epoch(self.epoch)
            tic = time.monotonic()
            with _EpochBar(self.context.progress and self.accelerator.is_main_process,
                           f"{stage.name} epoch {self.stage_epoch + 1}/{stage.epochs}", len(loader)) as bar:
                train_metrics, time_up = self._train_epoch(model, optimizer, loader, stage, bar)
            record: dict[str, Any] = {"epoch": self.epoch, "stage": stage.name, **train_metrics}
            if self.val_data is not None:
                record.update(self._evaluate())
            record.update(lr=stage.lr, seconds=time.monotonic() - tic)
            if time_up:
                # A partial epoch still competes for best, but is not checkpointed: a resumed run restarts
                # this epoch from the last whole-epoch checkpoint.
                record["partial"] = True
                self._end_epoch(record)
                return "max_time"
            self._end_epoch(record)
            self.epoch += 1
            self.stage_epoch += 1
            # On small data an epoch is a handful of steps and the validation set a few examples, so patience
            # alone would end a stage after a dozen noisy steps: it only counts once `min_steps` are done.
            stop_early = self.stopper.should_stop and self.stage_step >= self.config.min_steps
            stage_over = self.stage_epoch >= stage.epochs or stop_early
            if stage_over:
                self.stage, self.stage_epoch, self.stage_step = self.stage + 1, 0, 0
                self.done = self.stage >= len(self.stages)
            self._save(None if stage_over else optimizer)
            if stage_over:
                return "early_stopping" if stop_early else None
        return None

    def execute(self) -> TrainResult:
        with _preserved_global_rng():
            self._restore()
            reason = None
            while not self.done and self.stage < len(self.stages):
                reason = self._run_stage(self.stages[self.stage])
                if reason == "max_time":
                    break
            if not self.done and reason is None:
                self.done = True  # e.g. every stage had zero epochs
            self._finish(reason)
        return self.result

    def _finish(self, reason: str | None) -> None:
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        self.net.__dict__.pop("forward", None)
        self.net.eval().to("cpu")
        for param in self.net.parameters():
            param.requires_grad_(True)
        self.result.stop_reason = reason or "completed"
        self.result.best_epoch = self.stopper.best_epoch
        if self.stopper.best_epoch is not None:
            self.result.best = next((h for h in self.result.history if h["epoch"] == self.stopper.best_epoch
                                     and not h.get("partial")), self.result.history[-1])
        self.result.seconds = time.monotonic() - self.started
        self.accelerator.free_memory()


class _EpochBar:
    """A rich progress bar over one epoch's steps showing the running loss; inert when disabled."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self.enabled, self.description, self.total = enabled, description, total

    def __enter__(self) -> _EpochBar | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=self.total, loss=float("nan"))
        return self

    def update(self, *, loss: float) -> None:
        """Advance one step and show the running loss."""
        self.progress.update(self.task, advance=1, loss=loss)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()
