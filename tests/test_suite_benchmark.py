"""The task suite's ECE sampling floor: what a perfectly calibrated model would still score on a finite test set."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from headstart.evaluation.calibration import expected_calibration_error

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # suite imports its sibling records.py
    try:
        spec = importlib.util.spec_from_file_location("suite", ROOT / "benchmarks" / "suite.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["suite"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_the_floor_shrinks_with_the_test_set_and_sits_below_a_miscalibrated_models_ece(suite) -> None:
    rng = np.random.default_rng(0)
    small, large = (rng.dirichlet(np.full(10, 0.3), size=n) for n in (300, 3000))
    assert suite.ece_floor(large) < suite.ece_floor(small) / 2  # roughly 1/sqrt(n): measured 0.019 and 0.067
    # Labels drawn from the probabilities themselves are calibrated by construction; sharpening the same
    # probabilities (over-confidence) scores far above the floor on those labels.
    labels = (rng.random((3000, 1)) < np.cumsum(large, axis=1)).argmax(axis=1)
    sharp = large ** 3 / np.sum(large ** 3, axis=1, keepdims=True)
    assert expected_calibration_error(sharp, labels) > 3 * suite.ece_floor(large)
    # One confidence bin: the floor is E|accuracy - 1/4| over 500 draws, sqrt(2/pi) * sqrt(0.25 * 0.75 / 500).
    assert suite.ece_floor(np.full((500, 4), 0.25)) == pytest.approx(np.sqrt(2 / np.pi * 0.1875 / 500), abs=0.004)
