"""Conversions of API arguments that several of the API's functions share."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.data import Dataset, DataSplits, as_splits
from headstart.data.unlabeled import TargetData, load_target
from headstart.errors import HeadstartWarning
from headstart.fitting import complete_splits
from headstart.held_out import HoldOutPlan, plan_held_out
from headstart.io import WorkFolder
from headstart.strategies import Strategy, check_settings, get_strategy
from headstart.strategies.base import missing_target

if TYPE_CHECKING:
    from headstart.tracking.tracker import Tracker


def skip_bad(skip_bad_files: bool, skip_bad_images: bool | None) -> bool:
    if skip_bad_images is not None:
        warnings.warn("skip_bad_images is deprecated; use skip_bad_files", DeprecationWarning, stacklevel=3)
    return skip_bad_files or bool(skip_bad_images)


def checked_splits(work: WorkFolder | None, data: Any, *, tracker: Tracker | None = None, **options: Any
                   ) -> DataSplits:
    """``data`` as splits; ``work``'s output is checked to keep clear of the files they list (a CSV's images).
    Then ``tracker``'s store is confirmed (see :func:`confirm_tracking`)."""
    splits = as_splits(data, **options)
    if work is not None:
        work.check(splits.file_folders())
    confirm_tracking(tracker)
    return splits


def confirm_tracking(tracker: Tracker | None) -> None:
    """Wait for a tracking URI the user gave to answer (:meth:`Tracker.before_work`): the last input check,
    made once the data is checked, so MLflow starts up while the data loads."""
    if tracker is not None:
        tracker.before_work()


def as_list(value: str | Path | Sequence[Any]) -> list[Any]:
    return [value] if isinstance(value, (str, Path)) else list(value)


def checked_strategy(name: str, settings: dict[str, Any] | None, arguments: Iterable[str], target: Any) -> Strategy:
    """The strategy ``name`` with ``settings`` (checked apart from ``fit``'s ``arguments``), refused before any
    work when it adapts to a target domain and no ``target`` is given.

    Raises:
        ConfigError: A setting named like an argument, an invalid setting, or a missing target.
    """
    strategy = get_strategy(name, **check_settings(settings, arguments, "fit"))
    if strategy.needs_target and target is None:
        raise missing_target(strategy)
    return strategy


def checked_data(work: WorkFolder | None, data: Any, target: Any, target_test: Any, strategy: Strategy, *,
                 seed: int, val_fraction: float | None, test_fraction: float | None, calibrate: bool,
                 tracker: Tracker | None = None, **options: Any) -> tuple[DataSplits, TargetData | None, HoldOutPlan]:
    """``data`` as splits (see :func:`checked_splits`), completed with the test and validation splits
    ``strategy`` needs and that are worth holding out (:func:`~headstart.held_out.plan_held_out`, whose notes
    are said now, before training), the target domain (see :func:`target_data`), and the hold-out plan, all
    checked before any long work, as ``tracker``'s store is (see :func:`confirm_tracking`)."""
    splits = checked_splits(work, data, **options)
    domain = target_data(target, target_test, splits, **options)
    plan = plan_held_out(splits, strategy, val_fraction=val_fraction, test_fraction=test_fraction,
                         calibrate=calibrate)
    for line in plan.notes:
        warnings.warn(line, HeadstartWarning, stacklevel=3)
    confirm_tracking(tracker)
    return complete_splits(splits, strategy, seed=seed, val_fraction=plan.val_fraction,
                           test_fraction=plan.test_fraction, calibrate=calibrate), domain, plan


def checked_study_data(work: WorkFolder | None, data: Any, target: Any, target_test: Any, *,
                       tracker: Tracker | None = None, **options: Any) -> tuple[DataSplits, TargetData | None]:
    """``data`` as splits (see :func:`checked_splits`) and the target domain (see :func:`target_data`), both
    checked before any run of a study, as ``tracker``'s store is (see :func:`confirm_tracking`)."""
    splits = checked_splits(work, data, **options)
    domain = target_data(target, target_test, splits, **options)
    confirm_tracking(tracker)
    return splits, domain


def target_data(target: str | Path | Dataset | None, target_test: str | Path | Dataset | None,
                splits: DataSplits, **options: Any) -> TargetData | None:
    """The run's target domain, loaded and checked against the source ``splits`` (modality, classes), or
    ``None`` when neither is given.

    Raises:
        DataError: See :func:`~headstart.data.unlabeled.load_target`.
    """
    if target is None and target_test is None:
        return None
    return load_target(target, target_test, splits.train.modality, splits.train.class_names, **options)
