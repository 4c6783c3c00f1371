"""Accuracy against retention: which strategies buy target accuracy without forgetting the source.

Each run of a study records how much of the source backbone it kept (``retention``: feature CKA on the
reference set, see :mod:`headstart.evaluation.forgetting`). At the largest training size, a strategy is on
the frontier when no other strategy is at least as accurate *and* keeps at least as much, with one of the two
strictly better; otherwise it is dominated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from headstart.studies.records import RunRecord, TradeoffPoint

RETENTION = "retention"


def retention_of(forgetting: dict) -> float | None:
    """The retention a run reports: feature CKA on the reference set, else on the target inputs."""
    part = forgetting.get("reference") or forgetting.get("target")
    return None if part is None else float(part["feature_cka"])


def tradeoff(records: Iterable[RunRecord], accuracy: str | None = None) -> list[TradeoffPoint]:
    """The accuracy/retention point of every strategy that recorded retention, with who dominates whom.

    Args:
        records: The study's runs.
        accuracy: The metric the accuracy axis reads (e.g. the target-domain test accuracy, when a study adapts
            to a target: that is the accuracy the user is after); ``None``: the test accuracy.
    """
    records = [r for r in records if RETENTION in r.metrics and (accuracy is None or accuracy in r.metrics)]
    largest: dict[str, float] = {}
    for record in records:
        largest[record.strategy] = max(largest.get(record.strategy, 0.0), record.size)
    values: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        if record.size == largest[record.strategy]:
            measured = record.accuracy if accuracy is None else record.metrics[accuracy]
            values[record.strategy].append((measured, record.metrics[RETENTION]))
    label = "accuracy" if accuracy is None else f"{accuracy.replace('_', ' ')}"
    points = [TradeoffPoint(name, largest[name], *np.mean(pairs, axis=0).tolist(), len(pairs), label)
              for name, pairs in values.items()]
    for point in points:
        point.dominated_by.extend(
            other.strategy for other in points
            if other is not point and other.accuracy >= point.accuracy and other.retention >= point.retention
            and (other.accuracy > point.accuracy or other.retention > point.retention))
    return points


def tradeoff_message(points: list[TradeoffPoint]) -> str:
    """A plain-words reading of the trade-off, e.g. ``on the frontier: linear (...), finetune (...); ...``."""
    def show(p: TradeoffPoint) -> str:
        return f"{p.strategy} ({p.accuracy:.1%} {p.accuracy_label}, retention {p.retention:.2f})"

    frontier = [show(p) for p in sorted(points, key=lambda p: -p.accuracy) if not p.dominated_by]
    dominated = [f"{p.strategy} (by {', '.join(p.dominated_by)})" for p in points if p.dominated_by]
    message = "on the accuracy/retention frontier: " + ", ".join(frontier)
    return message + (f"; dominated: {', '.join(dominated)}" if dominated else "; none is dominated")
