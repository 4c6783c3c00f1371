"""Learning curves of several backbones in one study: e.g. ImageNet transfer, transfer from your own source model
(``ckpt:runs/source``) and training from scratch, on the same sizes, seeds and test set.

Each backbone runs the strategies of :func:`~headstart.studies.runner.compare_strategies`; its runs are
labelled ``"<strategy> (<backbone>)"`` so the statistics (gains over scratch, verdicts, savings) treat each
pair as one contender. ``scratch`` trains the first backbone's architecture from random weights whatever the
weights, so it runs once, under its own name, as the common baseline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from headstart.backbones import Backbone, create_backbone
from headstart.data import DataSplits
from headstart.errors import ConfigError
from headstart.studies.records import CompareResult, RunRecord, SkippedRun
from headstart.studies.runner import BASELINE, compare_strategies, conclude, strategy_settings


def contender(strategy: str, backbone: str) -> str:
    """The label of ``strategy`` on ``backbone`` in a several-backbone study (``scratch`` keeps its name)."""
    return strategy if strategy == BASELINE else f"{strategy} ({backbone})"


def compare_backbones(splits: DataSplits, *, strategies: Sequence[str], backbones: Sequence[str | Backbone],
                      max_time: float | None = None,
                      on_run: Callable[[RunRecord | SkippedRun], None] | None = None, **options: Any
                      ) -> CompareResult:
    """Every strategy on every backbone (``scratch`` once, on the first) at every size and seed, as one study.

    Args:
        splits, strategies: As for :func:`~headstart.studies.runner.compare_strategies`.
        backbones: References or built backbones, at least one; one backbone is a plain strategy study.
        max_time: Budget of the whole study in seconds, shared by the backbones in order.
        on_run: Called with each record or skipped run (already labelled) as it happens.
        **options: ``fractions``, ``shots``, ``seeds``, ``cache``, ``settings``, ``test_fraction``,
            ``val_fraction``, ``target`` as for :func:`~headstart.studies.runner.compare_strategies`.

    Returns:
        One :class:`~headstart.studies.records.CompareResult` whose strategies are the labelled contenders.

    Raises:
        ConfigError: No backbone, or the same backbone twice.
    """
    nets = [create_backbone(b) if isinstance(b, str) else b for b in backbones]
    if not nets:
        raise ConfigError("compare needs a backbone: give --backbones NAME[,NAME...]")
    refs = [net.ref for net in nets]
    if len(set(refs)) != len(refs):
        raise ConfigError(f"--backbones names a backbone twice: {', '.join(refs)}")
    if len(nets) == 1:
        return compare_strategies(splits, strategies=strategies, backbone=nets[0], max_time=max_time, on_run=on_run,
                                  **options)
    settings = options.pop("settings", None) or {}
    strategy_settings(strategies, settings)  # every setting checked against every strategy, before any work
    started = time.perf_counter()
    parts: list[CompareResult] = []
    for index, net in enumerate(nets):
        names = [s for s in strategies if index == 0 or s != BASELINE]
        if not names:
            continue
        left = None if max_time is None else max(max_time - (time.perf_counter() - started), 0.0)
        parts.append(compare_strategies(splits, strategies=names, backbone=net, max_time=left,
                                        settings=_settings_for(names, settings), on_run=_labelled(on_run, net.ref),
                                        **options))
    return _merged(parts, refs, time.perf_counter() - started)


def _settings_for(names: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    """The ``settings`` that concern one of ``names`` (scoped to it, or a setting one of them has)."""
    routed = strategy_settings(names + [BASELINE], settings) if BASELINE not in names else None
    if routed is None:
        return settings
    return {key: value for key, value in settings.items()
            if key.rpartition(".")[0] in names or (not key.rpartition(".")[1]
                                                   and any(key in routed[name] for name in names))}


def _labelled(on_run: Callable[[RunRecord | SkippedRun], None] | None, ref: str
              ) -> Callable[[RunRecord | SkippedRun], None] | None:
    """A callback passing on each outcome labelled with ``ref``."""
    if on_run is None:
        return None
    return lambda outcome: on_run(_relabel(outcome, ref))


def _relabel(outcome: Any, ref: str) -> Any:
    return dataclasses.replace(outcome, strategy=contender(outcome.strategy, ref))


def _merged(parts: list[CompareResult], refs: list[str], seconds: float) -> CompareResult:
    """The backbones' studies as one, concluded anew over all contenders (labelled as :func:`contender` says)."""
    first = parts[0]
    merged = CompareResult(first.source, ", ".join(refs), [], first.sizes, first.n_test, first.test_source,
                           target=_merged_target(parts))
    for part, ref in zip(parts, refs, strict=False):
        merged.strategies += [contender(s, ref) for s in part.strategies]
        merged.records += [_relabel(record, ref) for record in part.records]
        merged.skipped += [_relabel(skipped, ref) for skipped in part.skipped]
    # The baseline last, after every backbone's contenders, as a single-backbone study lists it when given last.
    merged.strategies.sort(key=lambda name: name == BASELINE)
    conclude(merged)
    merged.seconds = round(seconds, 2)
    return merged


def _merged_target(parts: list[CompareResult]) -> dict[str, Any] | None:
    """The first backbone's ``target`` entry with every backbone's shift under ``shifts``, in backbone order
    (``shift`` stays the first backbone's, as a one-backbone study has it)."""
    first = parts[0].target
    if first is None:
        return None
    return first | {"shifts": [shift for part in parts if part.target is not None for shift in part.target["shifts"]]}
