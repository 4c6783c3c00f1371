"""The refit choice of a tuning study: the best trial only when its lead over the defaults exceeds the noise."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.tuning.selection import choose_refit, correct_mask, paired_gain

DEFAULTS = {"number": 0, "params": {}, "value": 0.80}


def _mask(hits: int, total: int = 100) -> str:
    return "1" * hits + "0" * (total - hits)


def _changed(mask: str, gained: int, lost: int) -> str:
    """``mask`` with ``gained`` wrong examples made right and ``lost`` right ones made wrong."""
    hits = [i for i, c in enumerate(mask) if c == "1"]
    misses = [i for i, c in enumerate(mask) if c == "0"]
    flipped = set(misses[:gained]) | set(hits[:lost])
    return "".join(("0" if c == "1" else "1") if i in flipped else c for i, c in enumerate(mask))


def test_correct_mask_marks_each_validation_example():
    assert correct_mask(np.array([1, 2, 0]), np.array([1, 0, 0])) == "101"


def test_paired_gain_counts_only_the_examples_on_which_the_trials_differ():
    gain, error = paired_gain("1100", "1000")
    assert gain == pytest.approx(0.25)
    assert error == pytest.approx(np.std([0, 1, 0, 0], ddof=1) / 2)


def test_a_lead_within_one_standard_error_keeps_the_defaults():
    best = {"number": 7, "params": {"lr": 1e-4}, "value": 0.82}
    masks = {0: _mask(80), 7: _changed(_mask(80), gained=6, lost=4)}  # +2 examples net, 10 that differ
    chosen, record = choose_refit(best, DEFAULTS, masks, margin=1.0)
    assert chosen is DEFAULTS and record["kept_defaults"]
    assert record["gain"] == pytest.approx(0.02) and record["n_val"] == 100
    assert record["standard_error"] > record["gain"]
    assert "kept the defaults" in record["why"]


def test_a_lead_of_one_example_is_never_more_than_one_standard_error():
    best = {"number": 11, "params": {"lr": 7e-5}, "value": 133 / 150}
    masks = {0: _mask(132, 150), 11: _changed(_mask(132, 150), gained=1, lost=0)}
    gain, error = paired_gain(masks[11], masks[0])
    assert gain == pytest.approx(error)  # 1/150 both
    assert choose_refit(best, DEFAULTS, masks, margin=1.0)[0] is DEFAULTS


def test_a_clear_lead_refits_the_best_trial():
    best = {"number": 7, "params": {"lr": 1e-4}, "value": 0.95}
    chosen, record = choose_refit(best, DEFAULTS, {0: _mask(80), 7: _mask(95)}, margin=1.0)
    assert chosen is best and not record["kept_defaults"]
    assert record["gain"] > record["standard_error"]


def test_margin_zero_or_missing_masks_refit_the_best_trial():
    best = {"number": 3, "params": {"lr": 1e-4}, "value": 0.81}
    masks = {0: _mask(80), 3: _mask(81)}
    assert choose_refit(best, DEFAULTS, masks, margin=0)[0] is best
    assert choose_refit(best, DEFAULTS, {0: masks[0]}, margin=1.0)[0] is best  # a study from before the rule
    chosen, record = choose_refit(DEFAULTS, DEFAULTS, masks, margin=1.0)
    assert chosen is DEFAULTS and record["kept_defaults"]
