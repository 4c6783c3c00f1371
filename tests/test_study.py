"""Learning-curve summaries, gains, data savings and transfer verdicts on synthetic run records."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from headstart.errors import ConfigError, DataError
from headstart.studies.statistics import RunRecord, data_savings, gains, summarise, transfer_verdict


def _runs(strategy: str, size: float, accuracies: list[float]) -> list[RunRecord]:
    return [RunRecord(strategy, size, seed, int(size) * 3, acc) for seed, acc in enumerate(accuracies)]


def test_summarise_matches_mean_std_and_t_interval():
    accs = [0.70, 0.74, 0.78]
    rows = summarise(_runs("finetune", 10, accs) + _runs("scratch", 10, [0.5]))
    assert [(r.strategy, r.size, r.n_seeds) for r in rows] == [("finetune", 10.0, 3), ("scratch", 10.0, 1)]
    half = stats.t.ppf(0.975, 2) * np.std(accs, ddof=1) / np.sqrt(3)
    assert rows[0].mean == pytest.approx(0.74)
    assert rows[0].std == pytest.approx(0.04)
    assert (rows[0].ci_low, rows[0].ci_high) == (pytest.approx(0.74 - half), pytest.approx(0.74 + half))
    assert rows[1].std is None and rows[1].ci_low is None


def test_intervals_stay_inside_the_range_of_the_metric():
    # Two seeds far apart: the t interval (t = 12.7) would reach far below 0 and above 1.
    records = _runs("finetune", 10, [0.95, 0.55]) + _runs("scratch", 10, [0.10, 0.60])
    (row, _) = summarise(records)
    assert row.ci_high == 1.0 and 0.0 <= row.ci_low < row.mean
    (gain,) = gains(records)
    assert gain.ci_low == -1.0 and gain.ci_high == 1.0


def test_summarise_reads_other_metrics_and_names_a_missing_one():
    records = [RunRecord("linear", 5, 0, 15, 0.6, metrics={"macro_f1": 0.5})]
    assert summarise(records, metric="macro_f1")[0].mean == 0.5
    with pytest.raises(ConfigError, match="no metric 'ece'"):
        summarise(records, metric="ece")


def test_gains_difference_and_welch_interval_match_the_formula():
    a, b = [0.80, 0.84, 0.86, 0.82], [0.70, 0.76, 0.71]
    (gain,) = gains(_runs("finetune", 20, a) + _runs("scratch", 20, b))
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert gain.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert gain.std_error == pytest.approx(np.sqrt(va + vb))
    assert gain.ci_low == pytest.approx(gain.difference - half)
    assert gain.ci_high == pytest.approx(gain.difference + half)
    assert gain.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_gains_skip_sizes_the_baseline_lacks():
    records = _runs("finetune", 10, [0.8, 0.8]) + _runs("finetune", 20, [0.9]) + _runs("scratch", 10, [0.5, 0.6])
    assert [g.size for g in gains(records)] == [10.0]


def test_identical_results_across_seeds_give_an_exact_gain():
    records = _runs("linear", 10, [0.7, 0.7]) + _runs("scratch", 10, [0.6, 0.6])
    (gain,) = gains(records)
    assert (gain.std_error, gain.p_value) == (0.0, 0.0)
    assert gain.ci_low == gain.ci_high == pytest.approx(0.1)
    assert transfer_verdict(records, "linear").status == "positive"


def test_clear_positive_transfer():
    records = (_runs("finetune", 10, [0.80, 0.82, 0.81]) + _runs("scratch", 10, [0.50, 0.53, 0.51])
               + _runs("finetune", 50, [0.90, 0.91, 0.92]) + _runs("scratch", 50, [0.80, 0.82, 0.81]))
    verdict = transfer_verdict(records, "finetune")
    assert verdict.status == "positive"
    assert [v.status for v in verdict.per_size] == ["positive", "positive"]
    assert verdict.message.startswith("positive transfer: finetune is better than scratch by 29.7 points at 10")
    assert "also positive at 50 examples/class" in verdict.message


def test_clear_negative_transfer_message():
    records = _runs("finetune", 50, [0.700, 0.705, 0.695]) + _runs("scratch", 50, [0.740, 0.745, 0.738])
    verdict = transfer_verdict(records, "finetune")
    assert verdict.status == "negative"
    p_value = verdict.per_size[0].gain.p_value
    assert p_value < 0.05
    assert verdict.message == (f"negative transfer: finetune is worse than scratch by 4.1 points at 50 "
                               f"examples/class (p={p_value:.2g})")


def test_negative_at_any_size_makes_the_overall_verdict_negative():
    records = (_runs("finetune", 5, [0.60, 0.61, 0.62]) + _runs("scratch", 5, [0.40, 0.41, 0.42])
               + _runs("finetune", 100, [0.70, 0.71, 0.72]) + _runs("scratch", 100, [0.80, 0.81, 0.82]))
    verdict = transfer_verdict(records, "finetune")
    assert verdict.status == "negative"
    assert [v.status for v in verdict.per_size] == ["positive", "negative"]


def test_noise_is_inconclusive():
    rng = np.random.default_rng(0)
    records = (_runs("finetune", 20, list(rng.normal(0.7, 0.03, 5)))
               + _runs("scratch", 20, list(rng.normal(0.7, 0.03, 5))))
    verdict = transfer_verdict(records, "finetune")
    assert verdict.status == "inconclusive"
    assert "not significant at alpha=0.05" in verdict.message


def test_significant_but_tiny_gap_is_inconclusive():
    records = _runs("linear", 20, [0.7050, 0.7051, 0.7049]) + _runs("scratch", 20, [0.7000, 0.7001, 0.6999])
    verdict = transfer_verdict(records, "linear", min_gap=0.01)
    assert verdict.status == "inconclusive"
    assert "below the 1-point minimum gap" in verdict.message


def test_single_seed_needs_more_seeds_unless_the_gap_is_large():
    small = transfer_verdict(_runs("finetune", 10, [0.75]) + _runs("scratch", 10, [0.70]), "finetune")
    assert small.status == "inconclusive"
    assert "single seed" in small.message and "run at least 2 seeds" in small.message
    large = transfer_verdict(_runs("finetune", 10, [0.55]) + _runs("scratch", 10, [0.70]), "finetune")
    assert large.status == "negative"
    assert "worse than scratch by 15.0 points" in large.message and "confirm with more seeds" in large.message
    assert transfer_verdict(_runs("finetune", 10, [0.55]) + _runs("scratch", 10, [0.70]), "finetune",
                            single_seed_gap=0.2).status == "inconclusive"


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: transfer_verdict(_runs("scratch", 10, [0.5]), "lora"), ConfigError, "no runs of strategy 'lora'"),
    (lambda: transfer_verdict(_runs("scratch", 10, [0.5]) + _runs("lora", 20, [0.5]), "lora"), DataError,
     "never run at the same size"),
    (lambda: data_savings(_runs("scratch", 10, [0.5]), "scratch"), ConfigError, "both 'scratch'"),
    (lambda: summarise([]), DataError, "no run records"),
    (lambda: RunRecord("scratch", 0, 0, 0, 0.5), DataError, "size must be positive"),
    (lambda: RunRecord("scratch", 10, 0, 30, 75.0), DataError, r"accuracy must be in \[0, 1\]"),
], ids=["no-runs", "no-common-size", "savings-against-itself", "no-records", "zero-size", "accuracy-percent"])
def test_errors_name_what_is_missing_or_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_data_savings_interpolates_on_log_size():
    records = (_runs("scratch", 10, [0.5]) + _runs("scratch", 100, [0.8])
               + _runs("finetune", 1, [0.6]) + _runs("finetune", 10, [0.9]) + _runs("finetune", 100, [0.95]))
    savings = data_savings(records, "finetune")
    # Target 0.8 lies 2/3 of the way from 0.6 (at 1) to 0.9 (at 10) -> 10 ** (2/3) examples per class.
    assert savings.target_accuracy == pytest.approx(0.8)
    assert savings.baseline_size == 100.0
    assert savings.size_needed == pytest.approx(10 ** (2 / 3))
    assert savings.factor == pytest.approx(100 / 10 ** (2 / 3))
    assert "21.5x fewer labels" in savings.message


def test_data_savings_at_the_smallest_size_and_never():
    already = _runs("scratch", 100, [0.8]) + _runs("finetune", 5, [0.85]) + _runs("finetune", 50, [0.9])
    savings = data_savings(already, "finetune")
    assert savings.size_needed == 5.0 and savings.factor == 20.0
    assert "smallest size measured: at least 20.0x fewer labels" in savings.message
    never = _runs("scratch", 100, [0.8]) + _runs("finetune", 5, [0.6]) + _runs("finetune", 100, [0.7])
    savings = data_savings(never, "finetune")
    assert savings.size_needed is None and savings.factor is None
    assert "never reaches" in savings.message
