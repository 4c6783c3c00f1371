"""Learning-curve studies: did transfer help, by how much, and how many labels did it save?

A study trains several strategies (e.g. ``linear``, ``finetune``, ``scratch``) at several training-set
sizes with several seeds; each run is one :class:`RunRecord`. The functions here turn those records into
the numbers ``headstart compare`` reports: mean ± std and 95% confidence intervals per strategy and size
(:func:`summarise`), the gain over a baseline (:func:`gains`), the labeled data transfer saves
(:func:`data_savings`) and a plain-language positive / negative / inconclusive verdict
(:func:`transfer_verdict`). Everything is plain data in and out; nothing here trains.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable
from itertools import pairwise

import numpy as np

from headstart.errors import ConfigError, DataError
from headstart.studies.records import Gain, RunRecord, Savings, SizeVerdict, Status, SummaryRow, Verdict

# Verdict thresholds, in accuracy units (0.01 = 1 point); overridable per call.
ALPHA = 0.05
MIN_GAP = 0.01
SINGLE_SEED_GAP = 0.10


def _value(record: RunRecord, metric: str) -> float:
    if metric == "accuracy":
        return record.accuracy
    if metric not in record.metrics:
        raise ConfigError(f"run {record.strategy!r} at size {record.size:g} seed {record.seed} has no metric "
                          f"{metric!r}; it has: accuracy, {', '.join(record.metrics) or '(no others)'}")
    return record.metrics[metric]


def _grouped(records: Iterable[RunRecord], metric: str) -> dict[tuple[str, float], np.ndarray]:
    """``(strategy, size)`` -> values of ``metric`` over seeds."""
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    for record in records:
        groups[(record.strategy, float(record.size))].append(_value(record, metric))
    if not groups:
        raise DataError("no run records to summarise; run the study first")
    return {key: np.asarray(values, dtype=np.float64) for key, values in sorted(groups.items())}


def _require(groups: dict[tuple[str, float], np.ndarray], baseline: str, strategy: str | None) -> None:
    """Check that the baseline and the compared strategy (if given) were run, and differ."""
    if strategy == baseline:
        raise ConfigError(f"strategy and baseline are both {baseline!r}; compare two different strategies")
    present = sorted({name for name, _ in groups})
    for name in (baseline, strategy):
        if name is not None and name not in present:
            raise ConfigError(f"no runs of strategy {name!r} in the records; present: {', '.join(present)}")


def summarise(records: Iterable[RunRecord], metric: str = "accuracy",
              confidence: float = 0.95) -> list[SummaryRow]:
    """Mean ± std and confidence interval of ``metric`` per strategy and size, over seeds.

    The interval is ``mean ± t_{(1+confidence)/2, n-1} * std / sqrt(n)`` (Student's t), clipped to [0, 1],
    the range of every metric a run records (with two seeds the t interval is wide enough to leave it).

    Args:
        records: The runs of a study.
        metric: ``"accuracy"`` or a key of :attr:`RunRecord.metrics`.
        confidence: Level of the interval.

    Returns:
        One row per (strategy, size), sorted by strategy then size.
    """
    from scipy import stats

    rows = []
    for (strategy, size), values in _grouped(records, metric).items():
        n, mean = len(values), float(values.mean())
        if n < 2:
            rows.append(SummaryRow(strategy, size, n, mean, None, None, None))
            continue
        std = float(values.std(ddof=1))
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / np.sqrt(n)
        rows.append(SummaryRow(strategy, size, n, mean, std, max(mean - half, 0.0), min(mean + half, 1.0)))
    return rows


def _compare(strategy: str, baseline: str, size: float, values: np.ndarray, base: np.ndarray,
             confidence: float) -> Gain:
    from scipy import stats

    difference = float(values.mean() - base.mean())
    if len(values) < 2 or len(base) < 2:
        return Gain(strategy, baseline, size, difference, None, None, None, None, len(values), len(base))
    std_error = float(np.sqrt(values.var(ddof=1) / len(values) + base.var(ddof=1) / len(base)))
    if std_error == 0.0:
        # Identical results across seeds on both sides: any difference is exact, the t statistic infinite.
        p_value = 0.0 if difference != 0.0 else 1.0
        return Gain(strategy, baseline, size, difference, 0.0, difference, difference, p_value,
                    len(values), len(base))
    with warnings.catch_warnings():
        # scipy warns when one side's accuracies are identical across seeds (common for deterministic
        # strategies such as a linear probe); Welch's test is exact there, as the other side has variance.
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        test = stats.ttest_ind(values, base, equal_var=False)
    interval = test.confidence_interval(confidence)
    # A difference of two [0, 1] metrics lies in [-1, 1].
    return Gain(strategy, baseline, size, difference, std_error, max(float(interval.low), -1.0),
                min(float(interval.high), 1.0),
                float(test.pvalue), len(values), len(base))


def gains(records: Iterable[RunRecord], baseline: str = "scratch", strategy: str | None = None,
          metric: str = "accuracy", confidence: float = 0.95) -> list[Gain]:
    """Per size, the difference of means between each strategy and ``baseline``, with its uncertainty.

    Uncertainty comes from Welch's unequal-variance t-test over seeds: the standard error
    ``sqrt(s1^2/n1 + s2^2/n2)``, a confidence interval with Welch-Satterthwaite degrees of freedom and a
    two-sided p-value.

    Args:
        records: The runs of a study.
        baseline: The strategy compared against (usually training from scratch).
        strategy: Only this strategy; default every strategy other than ``baseline``.
        metric: ``"accuracy"`` or a key of :attr:`RunRecord.metrics`.
        confidence: Level of the interval.

    Returns:
        One :class:`Gain` per (strategy, size) that the baseline was also run at, sorted.
    """
    groups = _grouped(records, metric)
    _require(groups, baseline, strategy)
    return [_compare(name, baseline, size, values, groups[(baseline, size)], confidence)
            for (name, size), values in groups.items()
            if name != baseline and (strategy is None or name == strategy) and (baseline, size) in groups]


def _size_verdict(gain: Gain, alpha: float, min_gap: float, single_seed_gap: float,
                  size_label: str) -> SizeVerdict:
    points = abs(gain.difference) * 100
    where = f"at {gain.size:g} {size_label}"
    direction = "better than" if gain.difference > 0 else "worse than"
    decided_status: Status = "positive" if gain.difference > 0 else "negative"
    decided = (f"{decided_status} transfer: {gain.strategy} is {direction} {gain.baseline} "
               f"by {points:.1f} points {where}")
    if gain.p_value is None:
        if abs(gain.difference) >= single_seed_gap:
            return SizeVerdict(gain.size, decided_status, gain,
                               f"{decided} (single seed; the gap exceeds {single_seed_gap * 100:g} points, "
                               f"confirm with more seeds)")
        return SizeVerdict(gain.size, "inconclusive", gain,
                           f"inconclusive {where}: {gain.strategy} and {gain.baseline} differ by "
                           f"{gain.difference * 100:+.1f} points from a single seed; run at least 2 seeds "
                           f"of each (3 or more recommended) to decide")
    if gain.p_value < alpha and abs(gain.difference) >= min_gap:
        return SizeVerdict(gain.size, decided_status, gain, f"{decided} (p={gain.p_value:.2g})")
    reason = (f"not significant at alpha={alpha:g}" if gain.p_value >= alpha
              else f"below the {min_gap * 100:g}-point minimum gap")
    return SizeVerdict(gain.size, "inconclusive", gain,
                       f"inconclusive {where}: {gain.strategy} and {gain.baseline} differ by "
                       f"{gain.difference * 100:+.1f} points (p={gain.p_value:.2g}), {reason}")


def transfer_verdict(records: Iterable[RunRecord], strategy: str, baseline: str = "scratch", *,
                     alpha: float = ALPHA, min_gap: float = MIN_GAP, single_seed_gap: float = SINGLE_SEED_GAP,
                     size_label: str = "examples/class") -> Verdict:
    """Did ``strategy`` transfer positively, negatively, or can we not tell? Per size and overall.

    Rule per size (accuracy, gaps in accuracy units):

    - both sides have >= 2 seeds: Welch's t-test; *positive* / *negative* when ``p < alpha`` and
      ``|gap| >= min_gap``, else *inconclusive*;
    - either side has a single seed: no test is possible, so only a gap of at least ``single_seed_gap``
      (default 10 points, several times the seed-to-seed spread typical of small data) decides, and the
      message asks for more seeds; smaller gaps are *inconclusive*.

    Overall: *negative* if any size is negative (negative transfer anywhere is what the user must know),
    else *positive* if any size is positive, else *inconclusive*. The message quotes the size with the
    largest gap of that status and lists the others.

    Args:
        records: The runs of a study.
        strategy: The transfer strategy judged.
        baseline: The strategy compared against.
        alpha: Significance level of the t-test.
        min_gap: Smallest gap that counts, even when significant.
        single_seed_gap: Gap that decides without a test when a side has a single seed.
        size_label: Unit of :attr:`RunRecord.size` for messages (``"examples/class"``, ``"of the data"``).

    Returns:
        A :class:`Verdict`; e.g. message ``"negative transfer: finetune is worse than scratch by 4.1 points
        at 50 examples/class (p=0.01)"``.
    """
    per_size = [_size_verdict(gain, alpha, min_gap, single_seed_gap, size_label)
                for gain in gains(records, baseline=baseline, strategy=strategy)]
    if not per_size:
        raise DataError(f"{strategy!r} and {baseline!r} were never run at the same size; "
                        f"run both at the same sizes to compare them")
    for status in ("negative", "positive"):
        matching = [v for v in per_size if v.status == status]
        if matching:
            worst = max(matching, key=lambda v: abs(v.gain.difference))
            others = [f"{v.size:g}" for v in matching if v is not worst]
            message = worst.message + (f"; also {status} at {', '.join(others)} {size_label}" if others else "")
            return Verdict(strategy, baseline, status, message, per_size)
    return Verdict(strategy, baseline, "inconclusive",
                   "inconclusive: no size shows a clear difference; " + "; ".join(v.message for v in per_size),
                   per_size)


def _first_crossing(curve: list[tuple[float, float]], target: float) -> float | None:
    """The smallest size where a (size, accuracy) curve, linear in log size, reaches ``target``."""
    if curve[0][1] >= target:
        return curve[0][0]
    for (s0, a0), (s1, a1) in pairwise(curve):
        if a1 >= target:  # every earlier point is below the target, so a0 < target here
            return float(np.exp(np.log(s0) + (target - a0) / (a1 - a0) * (np.log(s1) - np.log(s0))))
    return None


def data_savings(records: Iterable[RunRecord], strategy: str, baseline: str = "scratch",
                 size_label: str = "examples/class") -> Savings:
    """The smallest size at which ``strategy`` matches ``baseline`` trained on its largest size.

    The target is the baseline's mean accuracy at its largest size. The strategy's mean accuracies per
    size form a curve, linear between measured sizes on a log-size axis; the answer is where that curve
    first reaches the target (the smallest measured size if it already does there; no extrapolation
    below it). The savings factor is ``baseline size / size needed``.

    Args:
        records: The runs of a study.
        strategy: The transfer strategy.
        baseline: The strategy whose largest-size accuracy is the target.
        size_label: Unit of :attr:`RunRecord.size` for the message.

    Returns:
        A :class:`Savings`; ``size_needed`` and ``factor`` are ``None`` if the target is never reached.
    """
    groups = _grouped(records, "accuracy")
    _require(groups, baseline, strategy)
    baseline_size = max(size for name, size in groups if name == baseline)
    target = float(groups[(baseline, baseline_size)].mean())
    curve = [(size, float(values.mean())) for (name, size), values in groups.items() if name == strategy]
    size_needed = _first_crossing(curve, target)
    reach = f"{strategy} matches {baseline}'s {target * 100:.1f}% at {baseline_size:g} {size_label}"
    if size_needed is None:
        return Savings(strategy, baseline, baseline_size, target, None, None,
                       f"{strategy} never reaches {baseline}'s {target * 100:.1f}% (at {baseline_size:g} "
                       f"{size_label}) within the sizes measured")
    factor = baseline_size / size_needed
    if size_needed == min(size for size, _ in curve):
        # Already there at the smallest size measured: the true need may be lower still.
        return Savings(strategy, baseline, baseline_size, target, size_needed, factor,
                       f"{reach} already with {size_needed:.3g} {size_label}, the smallest size measured: at "
                       f"least {factor:.1f}x fewer labels")
    return Savings(strategy, baseline, baseline_size, target, size_needed, factor,
                   f"{reach} with {size_needed:.3g} {size_label}: {factor:.1f}x fewer labels")
