"""The time budget of a study (:func:`headstart.studies.runner.run_study`): which runs still fit, and how much
of it a run may train for."""

from __future__ import annotations

import time

from headstart.studies.records import SIZE_LABEL, SkippedRun


class StudyBudget:
    """The study's time budget: a run is skipped when its estimate, the same strategy's previous run scaled by
    size, would end past ``max_time`` (``None``: no budget). A run that has started always finishes.

    A run that trains the backbone is measured after its training stops (the test split through the trained
    backbone, and what it forgot), outside the training budget it is given; so its training gets what is left
    less that evaluation's cost: the latest trained run's, or a quarter of what is left before one has run.
    """

    #: Share of the remaining budget kept for a trained run's evaluation before any trained run has been timed.
    FIRST_EVALUATION_SHARE = 0.25

    def __init__(self, max_time: float | None) -> None:
        self.max_time, self.started = max_time, time.perf_counter()
        self.last: dict[str, tuple[float, float]] = {}  # strategy -> (size, seconds) of its latest run
        self.evaluation: float | None = None  # seconds the latest trained run spent after its training

    def for_training(self, trained: bool) -> float | None:
        """The training budget of the next run (``None`` without a budget)."""
        left = self.left()
        if left is None or not trained:
            return left
        reserve = self.evaluation if self.evaluation is not None else self.FIRST_EVALUATION_SHARE * left
        return max(left - reserve, 0.0)

    def left(self) -> float | None:
        """Seconds of the budget not yet spent (``None`` without a budget)."""
        return None if self.max_time is None else max(self.max_time - (time.perf_counter() - self.started), 0.0)

    def skipped(self, name: str, size: float, seed: int) -> SkippedRun | None:
        """The run, skipped, if it would not fit; ``None`` if it fits."""
        left = self.left()
        if left is None:
            return None
        spent = f"{self.max_time - left:.0f} s of the {self.max_time:g} s budget spent"
        if left <= 0:
            return SkippedRun(name, size, seed, f"time budget: {spent} before this run could start")
        if name not in self.last:
            return None
        last_size, last_seconds = self.last[name]
        estimate = last_seconds * size / last_size
        if estimate <= left:
            return None
        return SkippedRun(name, size, seed, f"time budget: {spent}; this run would take ~{_seconds(estimate)} s "
                                            f"(its run at {last_size:g} {SIZE_LABEL} took {_seconds(last_seconds)} "
                                            f"s) but {_seconds(left)} s are left")

    def spent(self, name: str, size: float, seconds: float, *, evaluation: float | None = None) -> None:
        """Record what a run of ``name`` at ``size`` cost, and of that, what its evaluation after training took."""
        self.last[name] = (size, seconds)
        if evaluation is not None:
            self.evaluation = evaluation


def _seconds(value: float) -> str:
    # Whole seconds hide a 0.3 s run as "0 s"; two significant digits keep short runs readable.
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
