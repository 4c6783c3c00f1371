"""Reports are single self-contained HTML files with every section a user needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import headstart
from headstart.backbones.base import Backbone
from headstart.reports.fit import fit_report
from headstart.reports.ranking import rank_report
from headstart.reports.study import compare_report
from headstart.studies.runner import CompareResult, SkippedRun, _conclude
from headstart.studies.statistics import RunRecord
from headstart.transferability.ranking import BackboneScores, RankResult


def assert_self_contained(page: str) -> None:
    """Every image is an embedded PNG; nothing is fetched from elsewhere."""
    assert page.startswith("<!doctype html>")
    sources = re.findall(r"src='([^']*)'", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "<link" not in page
    assert "http://" not in page and "https://" not in page


def test_fit_report_has_results_reliability_per_class_calibration_and_warnings(image_folder: Path,
                                                                                tiny_backbone: Backbone) -> None:
    model = headstart.fit(image_folder, backbone=tiny_backbone, calibrate=True, progress=False)
    model.metrics["warnings"] = ["classes are imbalanced: 'red' has 30 examples but 'blue' only 2 (15x)"]
    page = fit_report(model)
    assert_self_contained(page)
    for section in ("Results on the test split", "Results on the val split", "Calibration", "ECE before",
                    "Warning: classes are imbalanced", "precision", "Settings"):
        assert section in page, section
    assert "alt='reliability diagram'" in page and "alt='confusion matrix'" in page
    for name in model.class_names:
        assert f"<td>{name}</td>" in page


def _rank_result() -> RankResult:
    rows = [BackboneScores("minilm", 384, {"logme": 1.2, "knn": 0.8}, {"logme": 0.01, "knn": 0.1}, 2.0),
            BackboneScores("glove", 50, {"logme": 0.4, "knn": 0.5}, {"logme": 0.01, "knn": 0.1}, 1.0)]
    return RankResult("data.csv", "text", 100, 10, "logme", rows)


def test_rank_report() -> None:
    page = rank_report(_rank_result())
    assert_self_contained(page)
    assert "Ranking" in page and "minilm" in page and "alt='transferability scores'" in page
    assert page.index("<td>minilm</td>") < page.index("<td>glove</td>")


@pytest.mark.parametrize("with_scratch", [True, False])
def test_compare_report(with_scratch: bool) -> None:
    strategies = ["linear", "scratch"] if with_scratch else ["linear"]
    result = CompareResult("data", "minilm", strategies, [2.0, 8.0], 50, "the data's test split")
    for seed in range(2):
        for size, base in ((2.0, 0.5), (8.0, 0.7)):
            result.records.append(RunRecord("linear", size, seed, int(size * 10), base + 0.1 + 0.01 * seed))
            if with_scratch:
                result.records.append(RunRecord("scratch", size, seed, int(size * 10), base - 0.2 + 0.01 * seed))
    result.skipped.append(SkippedRun("linear", 16.0, 0, "time budget"))
    _conclude(result)
    page = compare_report(result)
    assert_self_contained(page)
    assert "Learning curves" in page and "Every run" in page and "Skipped runs" in page
    if with_scratch:
        assert "positive transfer" in page and "Gain over scratch" in page and "Data savings" in page
    else:
        assert "add `scratch`" in page


def test_fit_report_shows_small_settings_and_why_training_stopped(image_folder: Path,
                                                                    tiny_backbone: Backbone) -> None:
    model = headstart.fit(image_folder, backbone=tiny_backbone, strategy="finetune", progress=False,
                          settings={"epochs": 1, "head_epochs": 2, "lr": 5e-5, "batch_size": 16}, max_time=0.0)
    page = fit_report(model)
    assert "<td>lr</td><td>5e-05</td>" in page
    assert "Training stopped by max_time during the head stage: the backbone was not trained." in page
    assert "alt='training curves'" in page
