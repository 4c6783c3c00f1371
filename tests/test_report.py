"""Reports are single self-contained HTML files with every section a user needs."""

from __future__ import annotations

import base64
import re
import warnings
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

import headstart
from headstart.backbones.base import Backbone
from headstart.errors import HeadstartWarning
from headstart.reports.fit import fit_report
from headstart.reports.plots import MAX_MATRIX_CLASSES, most_confused
from headstart.reports.ranking import rank_report
from headstart.reports.study import compare_report
from headstart.reports.svg import confusion_matrix_plot, reliability_plot
from headstart.studies.runner import CompareResult, SkippedRun, conclude
from headstart.studies.statistics import RunRecord
from headstart.transferability.ranking import BackboneScores, RankResult


def assert_self_contained(page: str) -> None:
    """Every image is an embedded PNG or SVG; nothing is fetched from elsewhere."""
    assert page.startswith("<!doctype html>")
    sources = re.findall(r"src='([^']*)'", page)
    assert sources and all(s.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,")) for s in sources)
    assert "<script" not in page and "<link" not in page
    assert "http://" not in page and "https://" not in page


def test_fit_report_has_results_reliability_per_class_calibration_and_warnings(image_folder: Path,
                                                                                tiny_backbone: Backbone) -> None:
    model = headstart.fit(image_folder, backbone=tiny_backbone, calibrate=True, progress=False, val_fraction=0.25,
                          test_fraction=0.25)
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
    conclude(result)
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


MATH_LIKE = ["$\\frac{a}{$", "price $5", "a_b^c", "$x$", "<b>bold</b> & co"]


def svg_of(uri: str) -> ElementTree.Element:
    assert uri.startswith("data:image/svg+xml;base64,")
    return ElementTree.fromstring(base64.b64decode(uri.split(",", 1)[1]))


def test_class_names_that_look_like_math_or_markup_are_drawn_literally() -> None:
    matrix = [[3, 1, 0, 0, 0], [0, 4, 0, 0, 0], [1, 0, 2, 1, 0], [0, 0, 0, 4, 0], [0, 0, 0, 0, 1]]
    texts = [t.text for t in svg_of(confusion_matrix_plot(matrix, MATH_LIKE)).iter("{http://www.w3.org/2000/svg}text")]
    assert all(texts.count(name) == 2 for name in MATH_LIKE)  # a row and a column label each, as written


def test_confusion_matrix_of_many_classes_stays_small() -> None:
    n = 1200
    counts = np.diag(np.full(n, 5))
    counts[7, 9] = counts[9, 7] = counts[500, 3] = 4  # the confused classes must be among those shown
    svg = svg_of(confusion_matrix_plot(counts.tolist(), [f"class {i}" for i in range(n)]))
    assert float(svg.get("width")) <= 1000 and float(svg.get("height")) <= 1000
    labels = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert {"class 3", "class 7", "class 9", "class 500"} <= labels
    assert len([label for label in labels if label.startswith("class ")]) == MAX_MATRIX_CLASSES
    assert set(most_confused(counts.astype(float), 4)) == {3, 7, 9, 500}


def test_reliability_diagram_marks_only_bins_that_hold_examples() -> None:
    bins = {"confidence": [0.15, 0.55, 0.95], "accuracy": [0.1, 0.5, 0.9], "count": [3, 0, 7]}
    svg = svg_of(reliability_plot(bins, 0.04))
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}circle"))) == 2
    assert "Reliability (ECE 0.040)" in {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}


def test_a_failing_plot_leaves_a_published_model_and_a_report_that_names_it(tmp_path: Path, image_folder: Path,
                                                                           tiny_backbone: Backbone,
                                                                           monkeypatch) -> None:
    import headstart.reports.html as report_html

    def broken(*args):
        raise MemoryError("figure too large")

    monkeypatch.setattr(report_html, "reliability_plot", broken)
    with pytest.warns(HeadstartWarning, match="reliability diagram"):
        headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "run", progress=False, test_fraction=0.3)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "The reliability diagram could not be made (MemoryError: figure too large)" in page
    assert "alt='confusion matrix'" in page
    assert headstart.load(tmp_path / "run").predict([str(next(image_folder.rglob("*.png")))])


def test_fit_on_classes_named_like_math_text_publishes_model_and_full_report(tmp_path: Path,
                                                                             tiny_backbone: Backbone) -> None:
    from conftest import write_image_folder

    data = write_image_folder(tmp_path / "data", per_class=6, classes=("$\\frac{a}{$", "price $5", "plain"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeadstartWarning)  # no part of the report may fail
        headstart.fit(data, backbone=tiny_backbone, out=tmp_path / "run", progress=False, test_fraction=0.3)
    page = (tmp_path / "run" / "report.html").read_text()
    assert_self_contained(page)
    assert "could not be made" not in page and "<td>price $5</td>" in page
