"""A study with a target domain: every run sees the unlabeled target data (which ``adabn``, ``coral`` and ``dann``
adapt to) and is measured on the labeled target test set too, next to the source test set; the shift between
the source training data and the target is measured once per backbone, before that backbone's first run (each
backbone's own features tell the domains apart more or less easily).

So ``compare --strategies linear,adabn,coral --target ... --target-test ...`` shows source-only (``linear``)
against each adaptation on the target test set in one table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headstart.backbones import Backbone, FeatureCache
from headstart.data import Dataset
from headstart.data.unlabeled import TargetData
from headstart.progress import note
from headstart.shift import measure_shift
from headstart.strategies import Strategy
from headstart.strategies.base import missing_target
from headstart.studies.records import RunRecord, SummaryRow
from headstart.studies.statistics import summarise

#: The key of a run's target test accuracy in :attr:`~headstart.studies.records.RunRecord.metrics`.
TARGET_ACCURACY = "target_accuracy"


def check_target(strategies: Iterable[Strategy], target: TargetData | None) -> None:
    """Refuse, before any run, a strategy that adapts to a target domain when no unlabeled target is given.

    Raises:
        ConfigError: Names the strategy and the option that gives the target.
    """
    for strategy in strategies:
        if strategy.needs_target and (target is None or target.unlabeled is None):
            raise missing_target(strategy)


def target_parts(target: TargetData | None) -> list[Dataset]:
    """The target's data sets (unlabeled examples, labeled test set), for the study's one embedding pass."""
    return [] if target is None else [part for part in (target.unlabeled, target.test) if part is not None]


def describe_target(backbone: Backbone, train: Dataset, target: TargetData, cache: FeatureCache | None, *,
                    progress: bool, seed: int = 0) -> dict[str, Any]:
    """What the study's ``target`` entry says: the target's sources and sizes, the shift from ``train`` as
    ``backbone`` sees it (measured on the unlabeled target, else on the test set's examples without their
    labels, as ``fit`` does) and what loading the target ignored (``notes``); the shift and the notes are
    printed now, before the first run.

    The shift is under ``shifts`` (a list of one, naming ``backbone``, which a several-backbone study extends
    with each backbone's) and, as before, under ``shift``."""
    for line in target.notes:
        note(f"note: {line}", enabled=progress)
    seen = target.unlabeled if target.unlabeled is not None else target.test
    shift = measure_shift(backbone, train, seen, cache=cache, progress=progress, seed=seed)
    note(shift["summary"], enabled=progress)
    described: dict[str, Any] = {"n_unlabeled": 0 if target.unlabeled is None else len(target.unlabeled),
                                 "shift": shift, "shifts": [{"backbone": backbone.ref, **shift}],
                                 "notes": list(target.notes)}
    if target.unlabeled is not None:
        described["source"] = target.unlabeled.source
    if target.test is not None:
        described |= {"test_source": target.test.source, "n_test": len(target.test)}
    return described


def target_shifts(target: dict[str, Any]) -> list[dict[str, Any]]:
    """The shift per backbone of a study's ``target`` entry; an entry written before shifts were measured per
    backbone has one ``shift``, as the study's first backbone saw it (its ``backbone`` key is then absent)."""
    return target.get("shifts") or [target["shift"]]


def target_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``{TARGET_ACCURACY: ...}`` from a fitted model's metrics when it was measured on a target test set."""
    test = metrics.get("target", {}).get("test")
    return {} if test is None else {TARGET_ACCURACY: test["accuracy"]}


def target_summary(records: list[RunRecord]) -> list[SummaryRow]:
    """Mean ± std of the target test accuracy per strategy and size (empty without a target test set)."""
    measured = [record for record in records if TARGET_ACCURACY in record.metrics]
    return summarise(measured, metric=TARGET_ACCURACY) if measured else []
