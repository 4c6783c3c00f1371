"""The model card every fit writes, and the confidence intervals it reports."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from sklearn.metrics import balanced_accuracy_score, f1_score

import headstart
from headstart.errors import DataError
from headstart.evaluation import metric_intervals, wilson_interval
from headstart.reports.card import backbone_facts


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_fit_writes_a_card_and_loading_does_not_need_it(tmp_path, image_folder, tiny_backbone, tiny_timm_ref):
    out = tmp_path / "run"
    model = headstart.fit(image_folder, backbone=tiny_backbone, out=out, progress=False, calibrate=True,
                          test_fraction=0.2)
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "headstart"
    assert meta["pipeline_tag"] == "image-classification"
    assert "license" not in meta  # a local timm file: licence unknown, not guessed
    reported = meta["model-index"][0]["results"][0]["metrics"][0]
    assert reported == {"type": "accuracy", "value": round(model.metrics["test"]["accuracy"], 4)}
    for section in ("## Intended use", "## Data", "## Strategy and settings", "## Test metrics", "## Calibration",
                    "## Known limits"):
        assert section in card
    assert f"T = {model.temperature:.3f}" in card
    assert tiny_timm_ref in card
    (out / "README.md").unlink()
    items = [str(p) for p in sorted(image_folder.rglob("*.png"))[:4]]
    assert np.array_equal(headstart.load(out).predict_proba(items), model.predict_proba(items))


@pytest.mark.parametrize(("ref", "license", "base_model"), [
    ("efficientnet_lite0", "apache-2.0", None),
    ("efficientnet_lite2", "apache-2.0", None),
    ("minilm", "apache-2.0", "sentence-transformers/all-MiniLM-L6-v2"),
    ("glove", "pddl", None),
    ("hf:org/encoder", None, "org/encoder"),
    ("hf:/local/folder", None, None),
])
def test_backbone_licences_are_stated_only_where_known(ref, license, base_model):
    facts = backbone_facts(ref)
    assert (facts.license, facts.base_model) == (license, base_model)


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson_interval(45, 50)
    assert low == pytest.approx(0.7864, abs=1e-4) and high == pytest.approx(0.9565, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_bootstrap_intervals_surround_the_metrics_they_resample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    confusion = np.zeros((4, 4), np.int64)
    np.add.at(confusion, (y, pred), 1)
    intervals = metric_intervals(confusion)
    for name, value in (("balanced_accuracy", balanced_accuracy_score(y, pred)),
                        ("macro_f1", f1_score(y, pred, average="macro"))):
        low, high = intervals[name]
        assert low < value < high and high - low < 0.15
    assert intervals == metric_intervals(confusion)  # seeded: a card is reproducible


def test_intervals_refuse_an_empty_or_ragged_matrix():
    with pytest.raises(DataError, match="at least one example"):
        metric_intervals(np.zeros((3, 3)))
    with pytest.raises(DataError, match="square"):
        metric_intervals(np.zeros((2, 3)))
