"""Learning-curve studies: several strategies trained on growing subsets of the training data, several seeds.

Every run goes through :func:`headstart.fitting.fit_splits` (no model folder is written) and is measured on one fixed
held-out test set, so sizes, seeds and strategies are comparable. Frozen-feature strategies (``linear``)
slice the features of the whole training split, computed once, so their runs are nearly free. The records
(:mod:`headstart.studies.records`) feed :mod:`headstart.studies.statistics`: mean ± spread per size, gains
over ``scratch``, data savings and the negative-transfer verdict.

Example:
    >>> result = compare_strategies(splits, strategies=["linear", "finetune", "scratch"],
    ...                             backbone="efficientnet_lite0", fractions=[0.1, 0.5, 1.0], seeds=3)
    >>> [v.message for v in result.verdicts]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.backbones import Backbone, FeatureCache, create_backbone, extract_features
from headstart.data import Dataset, DataSplits, fraction_subset, sample_per_class, stratified_split
from headstart.data.unlabeled import TargetData
from headstart.errors import ConfigError, DataError, option
from headstart.fitting import check_modality, complete_splits, fit_splits
from headstart.strategies import Strategy, TrainedStrategy, get_strategy
from headstart.studies.budget import StudyBudget
from headstart.studies.records import SIZE_LABEL, CompareResult, RunRecord, SkippedRun
from headstart.studies.statistics import data_savings, gains, summarise, transfer_verdict
from headstart.studies.target_domain import (
    TARGET_ACCURACY,
    check_target,
    describe_target,
    target_metrics,
    target_parts,
    target_summary,
)
from headstart.studies.tradeoff import RETENTION, retention_of, tradeoff
from headstart.training import FitContext

BASELINE = "scratch"


class SlicedFeatureCache(FeatureCache):
    """A feature cache that answers for subsets of some data sets by slicing their features.

    Subsets of the training split have their own content hash, so a plain cache would embed every subset
    again; here each whole data set is embedded once (through ``base``, so earlier runs' features are
    reused) and subsets are rows of that. A backbone with the same weights and preprocessing (same
    fingerprint, e.g. a copy) gets the same rows.

    Args:
        base: The cache behind it (or ``None``), used for the whole data sets and for any other data.
        backbone: The backbone that embeds the data sets.
        datasets: The data sets (e.g. train and test splits) whose subsets are sliced.
        progress: Show the embedding of the whole data sets.
    """

    def __init__(self, base: FeatureCache | None, backbone: Backbone, datasets: Sequence[Dataset], *,
                 progress: bool = False) -> None:
        super().__init__(base.root if base is not None else None)
        self.progress = progress
        self.base = base
        self.backbone = backbone
        self.fingerprint = backbone.fingerprint()
        self.datasets = list(datasets)
        items = [item for dataset in self.datasets for item in dataset.items]
        self.rows = {_item_key(item): row for row, item in enumerate(items)}
        self.features_: np.ndarray | None = None
        self.seconds_ = 0.0  # spent embedding the whole data sets (once per study)

    def load(self, backbone: Backbone, dataset: Dataset) -> np.ndarray | None:
        """Rows of the whole data set's features when ``dataset`` is part of it, else the base cache's."""
        rows = [self.rows.get(_item_key(item)) for item in dataset.items]
        if None not in rows and (backbone is self.backbone or backbone.fingerprint() == self.fingerprint):
            if self.features_ is None:
                started = time.perf_counter()
                self.features_ = np.concatenate([
                    extract_features(self.backbone, part, cache=self.base, progress=self.progress,
                                     label=f"{len(part)} examples, once per study") for part in self.datasets])
                self.seconds_ = time.perf_counter() - started
            return self.features_[np.asarray(rows, dtype=np.int64)]
        return self.base.load(backbone, dataset) if self.base is not None else None

    def store(self, backbone: Backbone, dataset: Dataset, features: np.ndarray) -> None:
        """Store through the base cache (if any)."""
        if self.base is not None:
            self.base.store(backbone, dataset, features)


def _item_key(item: Any) -> Any:
    # Subsets hold the very same item objects; paths and texts also match by value.
    return item if isinstance(item, str) else id(item)


def strategy_settings(strategies: Sequence[str], settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route ``--set`` values to strategies: ``finetune.epochs=2`` to one, ``epochs=2`` to every strategy
    that has the setting.

    Raises:
        ConfigError: A key no listed strategy has, or a scoped key for a strategy not listed.
    """
    fields = {name: get_strategy(name).config_class.model_fields for name in strategies}
    routed: dict[str, dict[str, Any]] = {name: {} for name in strategies}
    for key, value in settings.items():
        scope, dot, name = key.rpartition(".")
        if dot:
            if scope not in routed:
                raise ConfigError(f"setting {key!r}: {scope!r} is not among the strategies compared "
                                  f"({', '.join(strategies)})")
            routed[scope][name] = value
            continue
        takers = [s for s in strategies if key in fields[s]]
        if not takers:
            raise ConfigError(f"setting {key!r}: none of {', '.join(strategies)} has it "
                              "(see `headstart strategies`)")
        for taker in takers:
            routed[taker][key] = value
    return routed


def _plan_sizes(train: Dataset, fractions: Sequence[float] | None, shots: Sequence[int] | None
                ) -> list[tuple[float, Callable[[int], Dataset]]]:
    """``(examples per class, subset(seed))`` for each requested size, ascending."""
    if (fractions is None) == (shots is None):
        raise ConfigError("give either fractions (e.g. 0.1,0.5,1) or shots (examples per class, e.g. 1,5,10)")
    n_classes = len(train.class_names)
    plan: list[tuple[float, Callable[[int], Dataset]]] = []
    if shots is not None:
        for k in sorted(set(shots)):
            sample_per_class(train, k, seed=0)  # fails now, naming the short classes, rather than mid-study
            plan.append((float(k), lambda seed, k=k: sample_per_class(train, k, seed=seed)))
    else:
        for f in sorted(set(fractions or [])):
            per_class = round(len(fraction_subset(train, f, seed=0)) / n_classes, 2)
            plan.append((per_class, lambda seed, f=f: train if f == 1 else fraction_subset(train, f, seed=seed)))
    return plan


def compare_strategies(splits: DataSplits, *, strategies: Sequence[str], backbone: str | Backbone,
                       fractions: Sequence[float] | None = None, shots: Sequence[int] | None = None,
                       seeds: int = 3, max_time: float | None = None, cache: FeatureCache | None = None,
                       settings: dict[str, Any] | None = None, test_fraction: float = 0.2,
                       val_fraction: float = 0.15, on_run: Callable[[RunRecord | SkippedRun], None] | None = None,
                       target: TargetData | None = None, progress: bool = False) -> CompareResult:
    """Train every strategy at every size and seed and measure each on one fixed test set.

    Every run of the frozen-feature strategies (seconds each) comes first, then the loop-trained ones; within
    each group runs go by size (smallest first), then seed, so a time budget cuts the costliest runs and the
    largest sizes. Before each run its time is estimated from the same strategy's previous run (scaled by size);
    a run that would end past ``max_time`` is skipped and listed, and a run that starts gets what is left of the
    budget as its own ``max_time``, so one long run cannot overrun the study.

    Args:
        splits: The data. Its test split is the test set; without one a stratified ``test_fraction`` of the
            training data is held out once (seed 0) and never trained on.
        strategies: Strategy names; include ``scratch`` for transfer verdicts and data savings.
        backbone: The backbone every strategy starts from.
        fractions: Training-set sizes as fractions of the training split (stratified, seeded subsets).
        shots: Training-set sizes as examples per class (instead of ``fractions``).
        seeds: Seeds per size and strategy (each draws its own subset and initialisation).
        max_time: Budget for the whole study in seconds.
        cache: Feature cache for frozen features, or ``None``.
        settings: Strategy settings; ``"finetune.epochs"`` for one strategy, ``"epochs"`` for all that have it.
        test_fraction: Hold-out share when the data has no test split.
        val_fraction: Validation share carved from each subset for strategies that use validation.
        on_run, progress: Called with each record or skipped run as it happens; show embedding and training.
        target: A target domain, whose data every run gets (see :mod:`headstart.studies.target_domain`).

    Returns:
        A :class:`CompareResult`.
    """
    strategies = list(dict.fromkeys(strategies))
    chosen = _chosen_strategies(strategies, seeds, settings or {}, target)  # validated before any work
    train, test, test_source = _test_set(splits, test_fraction)
    plan = _plan_sizes(train, fractions, shots)
    net = create_backbone(backbone) if isinstance(backbone, str) else backbone
    check_modality(net, splits, list(chosen.values()))
    sliced = SlicedFeatureCache(cache, net, [p for p in (train, splits.val, test, *target_parts(target))
                                             if p is not None], progress=progress)
    result = CompareResult(splits.source, net.ref, strategies, [size for size, _ in plan], len(test), test_source,
                           target=describe_target(net, train, target, sliced, progress=progress) if target else None)
    budget = StudyBudget(max_time)
    for names, size, subset, seed in _schedule(chosen, plan, seeds):
        run_splits = DataSplits(subset, splits.val, test, splits.source)
        for name in names:
            outcome = budget.skipped(name, size, seed)
            if outcome is None:
                trained = isinstance(chosen[name], TrainedStrategy)
                outcome, cost, evaluation = _measure(name, chosen[name], run_splits, size, seed, net, sliced,
                                                     val_fraction, max_time=budget.for_training(trained),
                                                     target=target, progress=progress)
                budget.spent(name, size, cost, evaluation=evaluation)
            (result.skipped if isinstance(outcome, SkippedRun) else result.records).append(outcome)
            if on_run:
                on_run(outcome)
    conclude(result)
    result.seconds = round(time.perf_counter() - budget.started, 2)
    return result


def _schedule(chosen: dict[str, Strategy], plan: list[tuple[float, Callable[[int], Dataset]]], seeds: int
              ) -> Iterator[tuple[list[str], float, Dataset, int]]:
    """``(strategies, size, training subset, seed)`` in the order they run: every frozen-feature run (seconds
    each) before any loop-trained one, so a budget that fine-tuning would eat still leaves the cheap
    strategies' whole learning curves; within each, smallest size first."""
    for trained in (False, True):
        names = [name for name, strategy in chosen.items() if isinstance(strategy, TrainedStrategy) == trained]
        if names:
            for size, subset in plan:
                for seed in range(seeds):
                    yield names, size, subset(seed), seed


def _chosen_strategies(strategies: list[str], seeds: int, settings: dict[str, Any], target: TargetData | None
                       ) -> dict[str, Strategy]:
    """Each strategy built with its settings (which checks them); one that adapts to a target domain needs
    ``target``."""
    if not strategies:
        raise ConfigError(f"compare needs at least one strategy, e.g. "
                          f"{option('strategies', ['linear', 'finetune', 'scratch'], cli='--strategies')}")
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    routed = strategy_settings(strategies, settings)
    chosen = {name: get_strategy(name, **routed[name]) for name in strategies}
    check_target(chosen.values(), target)
    return chosen


def _test_set(splits: DataSplits, test_fraction: float) -> tuple[Dataset, Dataset, str]:
    """``(train, test, where the test set comes from)``: the test split, or a fixed hold-out of train."""
    if splits.test is not None:
        return splits.train, splits.test, "the data's test split"
    held = stratified_split(splits.train, val_fraction=0.0, test_fraction=test_fraction, seed=0)
    assert held.test is not None
    return held.train, held.test, f"a fixed stratified {test_fraction:.0%} hold-out of the training data (seed 0)"


def _measure(name: str, strategy: Strategy, splits: DataSplits, size: float, seed: int, net: Backbone,
             cache: SlicedFeatureCache, val_fraction: float, *, max_time: float | None,
             target: TargetData | None = None, progress: bool = False) -> tuple[RunRecord, float, float | None]:
    """Train one run within ``max_time`` seconds of training and measure it on the test split (and the
    ``target``'s, with the target's unlabeled examples in its context); returns its
    record, its cost in seconds, which leaves out the one-off embedding of the whole data (not a cost of
    the next runs), and for a trained run the seconds spent after training (evaluation, forgetting)."""
    run_started, embedding = time.perf_counter(), cache.seconds_
    run = complete_splits(splits, strategy, seed=seed, val_fraction=val_fraction,
                          test_fraction=0.0)
    with tempfile.TemporaryDirectory(prefix="headstart-") as workdir:
        context = FitContext(Path(workdir), seed=seed, cache=cache, progress=progress, max_time=max_time,
                             target=target.unlabeled if target is not None else None)
        model = fit_splits(run, net, strategy, context, target_test=target.test if target is not None else None)
    seconds = time.perf_counter() - run_started
    m = model.metrics["test"]
    extra = {"balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"], "ece": m["ece"],
             **target_metrics(model.metrics)}
    retention = retention_of(model.metrics["forgetting"])
    if retention is not None:
        extra[RETENTION] = retention
    record = RunRecord(name, size, seed, len(splits.train), m["accuracy"], extra, round(seconds, 3))
    evaluation = None
    if isinstance(strategy, TrainedStrategy):
        evaluation = max(seconds - model.metrics["train"].get("seconds", seconds), 0.0)
    return record, seconds - (cache.seconds_ - embedding), evaluation


def conclude(result: CompareResult) -> None:
    """Fill in the summary, gains, verdicts and savings (and notes on what could not be concluded)."""
    if not result.records:
        result.notes.append(f"no run finished within the time budget; raise {option('max_time')} or use smaller sizes")
        return
    result.summary = summarise(result.records)
    result.target_summary = target_summary(result.records)
    result.tradeoff = tradeoff(result.records, TARGET_ACCURACY if result.target_summary else None)
    ran = {r.strategy for r in result.records}
    transfer = [s for s in result.strategies if s != BASELINE and s in ran]
    if BASELINE not in result.strategies:
        result.notes.append(f"transfer verdicts, gains and data savings compare against training from scratch: "
                            f"add `{BASELINE}` to {option('strategies')} to get them")
        return
    if BASELINE not in ran:
        result.notes.append(f"no `{BASELINE}` run finished, so there is nothing to compare transfer against")
        return
    try:
        result.gains = gains(result.records, baseline=BASELINE)
    except (ConfigError, DataError) as error:
        result.notes.append(f"gains: {error}")
    for name in transfer:
        try:
            result.verdicts.append(transfer_verdict(result.records, name, BASELINE, size_label=SIZE_LABEL))
            saving = data_savings(result.records, name, BASELINE, size_label=SIZE_LABEL)
            smallest = min(r.size for r in result.records if r.strategy == name)
            if saving.baseline_size > smallest:
                result.savings.append(saving)
            else:  # the target is scratch at the smallest size: no fewer labels can be measured
                result.notes.append(f"data savings of {name}: {BASELINE} ran only at {saving.baseline_size:g} "
                                    f"{SIZE_LABEL}, no more than {name}'s smallest size; run larger sizes")
        except (ConfigError, DataError) as error:
            result.notes.append(f"{name} vs {BASELINE}: {error}")
