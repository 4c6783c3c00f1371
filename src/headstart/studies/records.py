"""What a study records and concludes: one record per run, and the summaries, gains, verdicts and savings
computed from them (:mod:`headstart.studies.statistics`). Plain data, JSON-ready through ``asdict``."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from headstart.display import html_table, mean_std
from headstart.errors import DataError

Status = Literal["positive", "negative", "inconclusive"]
#: The unit of a study's training-set sizes.
SIZE_LABEL = "examples/class"


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one training run in a study.

    Attributes:
        strategy: Strategy name (``"finetune"``, ``"linear"``, ``"scratch"``, ...).
        size: Position on the learning curve: labeled examples per class, or a fraction of the training
            set; all records of one study use the same unit.
        seed: Seed of the run (data subsample and training).
        n_train: Number of training examples actually used.
        accuracy: Test accuracy in ``[0, 1]``.
        metrics: Other test metrics (e.g. ``{"macro_f1": 0.8}``).
        seconds: Training time, if measured.
    """

    strategy: str
    size: float
    seed: int
    n_train: int
    accuracy: float
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.size > 0:
            raise DataError(f"run {self.strategy!r} seed {self.seed}: size must be positive, got {self.size}")
        if not 0.0 <= self.accuracy <= 1.0:
            raise DataError(f"run {self.strategy!r} seed {self.seed}: accuracy must be in [0, 1], "
                            f"got {self.accuracy}")


@dataclass(frozen=True)
class SummaryRow:
    """Mean, standard deviation (``ddof=1``) and t-based confidence interval of one strategy at one size.

    ``std``, ``ci_low`` and ``ci_high`` are ``None`` with a single seed.
    """

    strategy: str
    size: float
    n_seeds: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Gain:
    """Mean of ``strategy`` minus mean of ``baseline`` at one size, with Welch's t-test.

    ``std_error``, ``ci_low``, ``ci_high`` and ``p_value`` are ``None`` unless both sides have at least
    2 seeds.
    """

    strategy: str
    baseline: str
    size: float
    difference: float
    std_error: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_seeds: int
    n_baseline_seeds: int


@dataclass(frozen=True)
class SizeVerdict:
    """Whether transfer helped at one size, and why."""

    size: float
    status: Status
    gain: Gain
    message: str


@dataclass(frozen=True)
class Verdict:
    """Whether transfer helped overall, with the per-size verdicts it is based on."""

    strategy: str
    baseline: str
    status: Status
    message: str
    per_size: list[SizeVerdict]


@dataclass(frozen=True)
class Savings:
    """How few labels ``strategy`` needs to match ``baseline`` trained on its largest size.

    ``size_needed`` and ``factor`` are ``None`` when the strategy never reaches the target.
    """

    strategy: str
    baseline: str
    baseline_size: float
    target_accuracy: float
    size_needed: float | None
    factor: float | None
    message: str


@dataclass(frozen=True)
class TradeoffPoint:
    """One strategy's mean target accuracy and retention at the largest size it ran, over seeds.

    Attributes:
        accuracy_label: What ``accuracy`` measures, in words (``"accuracy"``: the test accuracy;
            ``"target accuracy"``: on the target domain's test set).
        dominated_by: Strategies that are at least as good on both axes and better on one (empty on the
            frontier).
    """

    strategy: str
    size: float
    accuracy: float
    retention: float
    n_seeds: int
    accuracy_label: str = "accuracy"
    dominated_by: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SkippedRun:
    """A planned run that did not happen, and why."""

    strategy: str
    size: float
    seed: int
    reason: str


@dataclass
class CompareResult:
    """Everything a study measured and concluded.

    Attributes:
        source: Where the data came from.
        backbone: The backbone every strategy started from.
        strategies: The strategies compared, in the order given.
        sizes: Training-set sizes in examples per class, ascending.
        n_test: Size of the fixed test set every run is measured on.
        test_source: ``"test split"`` or how the hold-out was made.
        records: One :class:`RunRecord` per completed run (``size`` in examples/class).
        skipped: Runs left out because of the time budget.
        summary: Mean ± std per strategy and size.
        gains: Each transfer strategy minus ``scratch``, per size.
        verdicts: Negative-transfer verdict of each transfer strategy against ``scratch``.
        savings: How few labels each transfer strategy needs to match ``scratch`` on all the data.
        tradeoff: Each strategy's accuracy against how much of the source backbone it kept (largest size).
        target: With a target domain: its sources and sizes and the shift from the training data as each
            backbone sees it, under ``shifts`` (:func:`~headstart.studies.target_domain.describe_target`; ``shift``
            is the first backbone's); else ``None``.
        target_summary: Mean ± std target test accuracy per strategy and size (with a labeled target test set).
        notes: What could not be concluded, and why.
        seconds: Wall-clock time of the whole study.
        tracking: The MLflow run the study was logged to (``uri``, ``experiment``, ``run_id``), if tracked.
    """

    source: str
    backbone: str
    strategies: list[str]
    sizes: list[float]
    n_test: int
    test_source: str
    records: list[RunRecord] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)
    summary: list[SummaryRow] = field(default_factory=list)
    gains: list[Gain] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    savings: list[Savings] = field(default_factory=list)
    tradeoff: list[TradeoffPoint] = field(default_factory=list)
    target: dict[str, Any] | None = None
    target_summary: list[SummaryRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tracking: dict[str, str] | None = None

    def __repr__(self) -> str:
        verdicts = "".join(f"; {v.strategy} vs {v.baseline}: {v.status}" for v in self.verdicts)
        return (f"CompareResult({', '.join(self.strategies)} on {self.backbone}, {len(self.sizes)} sizes: "
                f"{len(self.records)} runs, {len(self.skipped)} skipped, {self.seconds:.0f} s{verdicts})")

    def _repr_html_(self) -> str:
        cells = {(row.strategy, row.size): mean_std(row.mean, row.std) for row in self.summary}
        rows = [[f"{size:g}", *(cells.get((name, size), "skipped") for name in self.strategies)]
                for size in self.sizes]
        caption = (f"Test accuracy on {self.n_test} examples with {self.backbone}, mean ± std over seeds "
                   f"({len(self.records)} runs, {len(self.skipped)} skipped, {self.seconds:.0f} s).")
        verdicts = "".join(f"<p>{html.escape(v.strategy)}: <b>{v.status}</b> — {html.escape(v.message)}</p>"
                           for v in self.verdicts)
        return html_table([SIZE_LABEL, *self.strategies], rows, caption=caption) + verdicts

    def to_frame(self) -> Any:
        """The runs as a pandas DataFrame: one row per finished run (strategy, size, seed, n_train, accuracy,
        seconds and the other test metrics), ready for ``groupby``.

        Example:
            >>> result.to_frame().groupby(["strategy", "size"]).accuracy.mean().unstack("strategy")
        """
        import pandas as pd

        columns = ["strategy", "size", "seed", "n_train", "accuracy", "seconds"]
        return pd.DataFrame([{name: getattr(run, name) for name in columns} | run.metrics for run in self.records],
                            columns=columns + sorted({key for run in self.records for key in run.metrics}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``compare.json`` holds)."""
        return {key: ([asdict(v) for v in value] if isinstance(value, list) and value
                      and hasattr(value[0], "__dataclass_fields__") else value)
                for key, value in self.__dict__.items()} | {"size_label": SIZE_LABEL}

