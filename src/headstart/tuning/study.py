"""Hyperparameter search over a strategy's settings with Optuna: a seeded TPE sampler, median pruning on the
per-epoch validation score, a resumable storage, and one refit of the best settings measured on the test split.

Trials are scored on validation data only (each trial's :func:`~headstart.fitting.fit_splits` sees no test
split); the test split is used once, by the refit of the best trial. The first trial of a new study runs the
strategy's defaults, so the best trial is never worse than the defaults on validation data.

Example:
    >>> result = tune_strategy(splits, strategy="finetune", backbone="minilm", trials=20,
    ...                        storage="sqlite:///runs/tune.partial/study.db", work_dir=Path("runs/tune.partial"))
    >>> result.best["params"], result.model.metrics["test"]["accuracy"]
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headstart.backbones import Backbone, FeatureCache, create_backbone
from headstart.data import DataSplits
from headstart.errors import ConfigError, option
from headstart.evaluation import aligned_labels, dataset_logits
from headstart.fitting import check_modality, complete_splits, data_fingerprint, fit_splits
from headstart.model import TransferModel
from headstart.progress import ProgressTask
from headstart.strategies import get_strategy
from headstart.training import FitContext
from headstart.tuning.selection import CORRECT_ATTR, choose_refit, correct_mask
from headstart.tuning.space import concrete_space, declared_space, default_point, suggest
from headstart.tuning.storage import fail_interrupted, finished_trials, hide_password, open_storage, open_study

OBJECTIVE = "val_accuracy"
STUDY_FILE = "study.db"
TRIALS_DIR = "trials"


@dataclass
class TuneResult:
    """What a tuning study found.

    Attributes:
        study: The study's name in its storage.
        storage: The storage URL (password hidden).
        strategy, backbone, seed: What was tuned, from what, with which seed (every trial uses it).
        data_fingerprint: The data as split (:func:`headstart.fitting.data_fingerprint`).
        space: Each searched setting with its absolute bounds or choices.
        fixed: Settings held fixed (``--set``).
        trials: Every trial in the storage: ``number``, ``state``, ``params``, ``value`` (validation accuracy),
            ``intermediate`` (per-epoch validation accuracy), ``seconds``, ``worker``.
        best: The best complete trial (``number``, ``params``, ``value``), or ``None``.
        chosen: The trial refit: ``best``, or ``defaults`` when the best one's lead is within noise.
        selection: Why ``chosen`` was chosen (:func:`~headstart.tuning.selection.choose_refit`).
        defaults: The trial that ran the defaults (``number``, ``value``), when it finished.
        importances: Share of the score's variance each setting explains (fANOVA), when it could be computed.
        seconds: Wall-clock time of this call.
        model: The chosen settings refit on the training split and measured on the test split (not in JSON).
    """

    study: str
    storage: str
    strategy: str
    backbone: str
    seed: int
    data_fingerprint: str
    space: dict[str, dict[str, Any]]
    fixed: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    defaults: dict[str, Any] | None = None
    chosen: dict[str, Any] | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)
    objective: str = OBJECTIVE
    seconds: float = 0.0
    model: TransferModel | None = None
    tracking: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``study.json`` holds), with the refit model's test metrics."""
        data = {k: v for k, v in self.__dict__.items() if k != "model"}
        if self.model is not None:
            data["test"] = {k: v for k, v in self.model.metrics.get("test", {}).items()
                            if k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "n_examples")}
        return data


def tune_strategy(splits: DataSplits, *, strategy: str, backbone: str | Backbone, trials: int,
                  work_dir: Path, storage: str | None = None, study: str | None = None, seed: int = 0,
                  settings: dict[str, Any] | None = None, space: dict[str, Any] | None = None,
                  max_time: float | None = None, cache: FeatureCache | None = None, val_fraction: float = 0.15,
                  test_fraction: float = 0.2, progress: bool = True, refit: bool = True,
                  on_trial: Callable[[dict[str, Any]], None] | None = None,
                  keep_defaults_within: float = 1.0) -> TuneResult:
    """Search ``strategy``'s settings for the best validation accuracy, then refit the best and test it.

    Args:
        splits: The data; a validation split is carved from train when it has none (``val_fraction``), and
            a test split when it has none (``test_fraction``).
        strategy: The strategy whose settings are searched.
        backbone: The backbone every trial starts from.
        trials: Trials to finish (complete or pruned) in the study, counting those already in the storage:
            the same call after an interruption runs only the rest.
        work_dir: Folder for trial checkpoints, the refit and, without ``storage``, the study (``study.db``).
        storage: An Optuna RDB URL shared by several workers; default: SQLite in ``work_dir``.
        study: The study's name; default ``headstart-<strategy>-<data fingerprint>``.
        seed: Seed of every trial's training and of the sampler.
        settings: Settings held fixed in every trial.
        space: Setting -> dimension or its text form (``"log:1e-5:1e-3"``, ``"2:8"``, ``"off,light"``);
            default the strategy's declared search space.
        max_time: Stop starting trials after this many seconds (a trial that started finishes).
        cache: Feature cache (frozen features are computed once for all trials).
        val_fraction, test_fraction: Shares carved when the data has no validation or test split.
        progress: Show a bar over trials with the best score so far.
        refit: Refit the best settings and measure them on the test split (a worker may leave that to another).
        on_trial: Called with each finished trial's record (as in :attr:`TuneResult.trials`).
        keep_defaults_within: Refit the defaults instead of the best trial when the best one's paired gain on
            the validation examples is within this many standard errors (0: always the best).

    Returns:
        A :class:`TuneResult`.

    Raises:
        ConfigError: Bad settings or search space, or a study of the same name made for other data or
            settings. StorageError: The storage cannot be opened. Both before any trial runs.
    """
    if trials < 1:
        raise ConfigError(f"{option('trials')} must be at least 1, got {trials}")
    search = _Search.prepare(splits, strategy=strategy, backbone=backbone, seed=seed, settings=settings or {},
                             space=space, val_fraction=val_fraction, test_fraction=test_fraction, cache=cache)
    url = storage or f"sqlite:///{Path(work_dir).resolve() / STUDY_FILE}"
    store = open_storage(url, shared=storage is not None)
    name = study or f"headstart-{strategy}-{search.fingerprint[:12]}"
    optuna_study = open_study(store, name, search.identity(), seed, search.first, shared=storage is not None)
    if storage is None:
        fail_interrupted(store, name)
    shown = hide_password(url) if storage is not None else f"{STUDY_FILE} in the output folder"
    result = TuneResult(name, shown, strategy, search.net.ref, seed, search.fingerprint, search.space, search.fixed)
    started = time.perf_counter()
    if finished_trials(optuna_study) < trials:
        _run_trials(optuna_study, search, trials, Path(work_dir) / TRIALS_DIR, max_time=max_time,
                    progress=progress, on_trial=on_trial)
    _conclude(result, optuna_study, seed=seed, margin=keep_defaults_within)
    if refit and result.chosen is not None:
        result.model = search.refit(result.chosen, Path(work_dir) / "refit", name=name, progress=progress)
    result.seconds = round(time.perf_counter() - started, 2)
    return result


@dataclass
class _Search:
    """What every trial shares: the data as split, the backbone, the strategy, its fixed settings and space."""

    splits: DataSplits
    net: Backbone
    strategy: str
    seed: int
    fixed: dict[str, Any]
    space: dict[str, dict[str, Any]]
    first: dict[str, Any]
    fingerprint: str
    cache: FeatureCache | None

    @classmethod
    def prepare(cls, splits: DataSplits, *, strategy: str, backbone: str | Backbone, seed: int,
                settings: dict[str, Any], space: dict[str, Any] | None, val_fraction: float, test_fraction: float,
                cache: FeatureCache | None) -> _Search:
        """Check the settings and the space, split the data and resolve the space for it (before any trial)."""
        base = get_strategy(strategy, **settings)
        dimensions = declared_space(strategy, space, settings)
        # Every trial is scored on validation data, so a validation split is carved as calibration would.
        splits = complete_splits(splits, base, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                                 calibrate=True)
        net = create_backbone(backbone) if isinstance(backbone, str) else backbone
        check_modality(net, splits)
        defaults = base.resolve(splits.train.modality, len(splits.train))
        concrete = concrete_space(dimensions, defaults, splits.train.modality, strategy)
        return cls(splits, net, strategy, seed, dict(settings), concrete, default_point(concrete, defaults),
                   data_fingerprint(splits), cache)

    def identity(self) -> dict[str, Any]:
        """What a stored study must match to be resumed by this search."""
        return {"strategy": self.strategy, "backbone": self.net.ref, "seed": self.seed,
                "data_fingerprint": self.fingerprint, "fixed": self.fixed, "space": self.space}

    def objective(self, trial: Any, folder: Path) -> float:
        """Train one trial's settings on train, score them on val (reporting each epoch for pruning)."""
        import optuna

        # The defaults' trial leaves a setting whose default lies outside the space (linear's C chosen by
        # cross-validation) to the strategy instead of drawing it.
        drawn = {k: v for k, v in self.space.items() if k in self.first or not trial.user_attrs.get("defaults")}
        chosen = get_strategy(self.strategy, **self.fixed, **suggest(trial, drawn))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")

        def report(record: dict[str, Any]) -> None:
            if OBJECTIVE in record and not record.get("partial"):
                trial.report(record[OBJECTIVE], step=int(record["epoch"]))
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {record['epoch']}: {record[OBJECTIVE]:.4f} below the median")

        search = DataSplits(self.splits.train, self.splits.val, None, self.splits.source)  # no test split
        try:
            context = FitContext(folder, seed=self.seed, cache=self.cache, progress=False, on_epoch_end=report)
            model = fit_splits(search, self.net, chosen, context)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        trial.set_user_attr("val_macro_f1", model.metrics["val"]["macro_f1"])
        logits = dataset_logits(model, self.splits.val, batch_size=chosen.config.batch_size, cache=self.cache)
        trial.set_user_attr(CORRECT_ATTR, correct_mask(logits.argmax(1), aligned_labels(model, self.splits.val)))
        return float(model.metrics["val"]["accuracy"])

    def refit(self, chosen: dict[str, Any], folder: Path, *, name: str, progress: bool) -> TransferModel:
        """The chosen trial's settings trained again and measured on the test split: its one use."""
        strategy = get_strategy(self.strategy, **self.fixed, **chosen["params"])
        model = fit_splits(self.splits, self.net, strategy,
                           FitContext(folder, seed=self.seed, cache=self.cache, progress=progress))
        shutil.rmtree(folder, ignore_errors=True)
        model.metrics["tuning"] = {"study": name, "trial": chosen["number"], OBJECTIVE: chosen["value"],
                                   "params": chosen["params"]}
        return model


def _run_trials(study: Any, search: _Search, trials: int, root: Path, *, max_time: float | None, progress: bool,
                on_trial: Callable[[dict[str, Any]], None] | None) -> None:
    """Run trials until the study has ``trials`` finished ones (or ``max_time`` is spent)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    callbacks: list[Callable[[Any, Any], None]] = [optuna.study.MaxTrialsCallback(trials, states=done)]
    if on_trial is not None:
        callbacks.append(lambda _, frozen: on_trial(trial_record(frozen)))
    with _TrialBar(progress, trials, finished_trials(study), study) as bar:
        callbacks.append(bar.update)
        study.optimize(lambda trial: search.objective(trial, root / str(trial.number)), n_trials=None,
                       timeout=max_time, callbacks=callbacks, gc_after_trial=True)
    shutil.rmtree(root, ignore_errors=True)


def trial_record(trial: Any) -> dict[str, Any]:
    """One trial as plain data (a row of ``study.json``)."""
    return {"number": trial.number, "state": trial.state.name, "params": dict(trial.params), "value": trial.value,
            "intermediate": {int(k): v for k, v in sorted(trial.intermediate_values.items())},
            "seconds": trial.duration.total_seconds() if trial.duration else None,
            "worker": trial.user_attrs.get("worker"), "defaults": bool(trial.user_attrs.get("defaults"))}


def _conclude(result: TuneResult, study: Any, *, seed: int, margin: float) -> None:
    import optuna
    from optuna.trial import TrialState

    result.trials = [trial_record(t) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in result.trials if t["state"] == TrialState.COMPLETE.name]
    if complete:
        best = max(complete, key=lambda t: (t["value"], -t["number"]))  # ties: the earliest
        result.best = {k: best[k] for k in ("number", "params", "value")}
    first = next((t for t in complete if t["defaults"]), None)
    if first is not None:
        result.defaults = {"number": first["number"], "params": first["params"], "value": first["value"]}
    masks = {t.number: t.user_attrs[CORRECT_ATTR] for t in study.get_trials(deepcopy=False)
             if t.state == TrialState.COMPLETE and CORRECT_ATTR in t.user_attrs}
    result.chosen, result.selection = choose_refit(result.best, result.defaults, masks, margin=margin)
    distinct = {json.dumps(t["params"], sort_keys=True) for t in complete}
    if len(distinct) >= 2:
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
            result.importances = {k: float(v) for k, v in importances.items()}
        except (RuntimeError, ValueError):  # e.g. every trial drew the same value of every setting
            result.importances = {}


class _TrialBar:
    """A progress display over trials with the best validation score so far; inert when disabled."""

    def __init__(self, enabled: bool, total: int, done: int, study: Any) -> None:
        self.enabled, self.total, self.done, self.study = enabled, total, done, study
        self.task: ProgressTask | None = None

    def __enter__(self) -> _TrialBar:
        if self.enabled:
            self.task = ProgressTask("tune", self.total, unit="trials")
            if self.done:
                self.task.advance(self.done, **self._best())
        return self

    def _best(self) -> dict[str, float]:
        try:
            return {"best": self.study.best_value}
        except ValueError:  # no complete trial yet
            return {}

    def update(self, study: Any, trial: Any) -> None:
        """Optuna callback: one more trial finished."""
        if self.task is not None and trial.state.name in ("COMPLETE", "PRUNED"):
            self.task.advance(1, **self._best())

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.close()
