"""Backbone ranking: order, outputs, modality checks, ``fit --backbone auto``; calibration and class weights."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import headstart
from conftest import write_image_folder
from headstart.backbones.base import Backbone, ImagePreprocess
from headstart.cli import app
from headstart.data import load_dataset
from headstart.errors import ConfigError
from headstart.strategies.linear import fit_linear_head
from headstart.transferability.ranking import rank_backbones
from training_support import TinyTextBackbone


class _PixelStatsBackbone(Backbone):
    """Mean colour of the image plus noise dimensions; ``informative=False`` gives noise only."""

    modality = "image"
    feature_dim = 8

    def __init__(self, informative: bool) -> None:
        self.ref = "test-colour" if informative else "test-noise"
        self.informative = informative
        self.module = nn.Identity()
        self.preprocess = ImagePreprocess(input_size=24)

    def collate(self, items: Sequence[Any], *, augment: str = "off") -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
                                          for p in items]))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        seed = int(batch.sum().item()) % 2**31
        noise = torch.from_numpy(np.random.default_rng(seed).normal(size=(len(batch), 8)).astype(np.float32))
        if self.informative:
            noise[:, :3] = batch.mean(dim=(1, 2)) / 255.0
        return noise

    def layer_groups(self) -> list[nn.Module]:
        return [self.module]


def test_informative_backbone_ranks_first_by_every_feature_score(image_folder: Path) -> None:
    train = load_dataset(image_folder).train
    result = rank_backbones(train, [_PixelStatsBackbone(False), _PixelStatsBackbone(True)])
    assert result.best == "test-colour"
    assert [row.backbone for row in result.rows] == ["test-colour", "test-noise"]
    good, bad = result.rows
    for name in ("logme", "hscore", "knn", "linear_probe"):
        assert good.scores[name] > bad.scores[name], name
    assert "leep" not in good.scores  # no pre-training classifier
    assert set(good.score_seconds) == set(good.scores)
    data = result.to_dict()
    assert data["best"] == "test-colour" and "highest logme" in data["explanation"]


def test_rank_sorts_by_the_chosen_score_and_computes_only_requested(image_folder: Path) -> None:
    train = load_dataset(image_folder).train
    result = rank_backbones(train, [_PixelStatsBackbone(False), _PixelStatsBackbone(True)], scores=["knn"],
                            sort_by="hscore")
    assert result.sort_by == "hscore" and result.score_names == ["hscore", "knn"]
    assert result.best == "test-colour"


def test_source_head_gives_leep_and_nce(image_folder: Path, tiny_backbone: Backbone) -> None:
    train = load_dataset(image_folder).train
    result = rank_backbones(train, [tiny_backbone])
    assert {"leep", "nce", "logme"} <= set(result.rows[0].scores)
    assert result.rows[0].scores["leep"] <= 0


def test_modality_mismatch_fails_before_any_features(text_csv: Path, tiny_backbone: Backbone,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def no_features(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("features were computed before the modality check")

    monkeypatch.setattr("headstart.transferability.ranking.extract_features", no_features)
    with pytest.raises(ConfigError, match="text data but these backbones are not text"):
        headstart.rank(text_csv, backbones=[tiny_backbone])


def test_unknown_score_is_a_config_error(image_folder: Path) -> None:
    with pytest.raises(ConfigError, match="unknown score"):
        headstart.rank(image_folder, backbones=[_PixelStatsBackbone(True)], sort_by="accuracy")


def test_rank_cli_prints_table_and_writes_json_and_report(image_folder: Path, tiny_timm_ref: str,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "rank"
    result = CliRunner().invoke(app, ["rank", str(image_folder), "--backbones", tiny_timm_ref, "--scores",
                                      "logme,knn", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "logme" in result.output and "best:" in result.output
    data = json.loads((out / "rank.json").read_text())
    assert data["sort_by"] == "logme" and len(data["backbones"]) == 1
    assert set(data["backbones"][0]["scores"]) == {"logme", "knn"}
    page = (out / "report.html").read_text()
    assert "Ranking" in page and "data:image/png;base64," in page


def test_fit_auto_ranks_the_bundled_backbones_of_the_modality(text_csv: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ranked = []

    def tiny_bundled(modality: str) -> list[str]:
        ranked.append(modality)
        return [TinyTextBackbone.ref]

    monkeypatch.setattr("headstart.api.models.bundled_backbones", tiny_bundled)
    model = headstart.fit(text_csv, backbone="auto", out=tmp_path / "m", progress=False)
    assert ranked == ["text"] and model.backbone.ref == TinyTextBackbone.ref
    assert model.metrics["backbone_ranking"]["best"] == TinyTextBackbone.ref
    assert "Backbone choice" in (tmp_path / "m" / "report.html").read_text()


@pytest.mark.e2e
def test_fit_auto_ranks_bundled_backbones_and_keeps_the_ranking(text_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["fit", str(text_csv), "--backbone", "auto", "--out", str(tmp_path / "m"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "backbone auto: chose" in result.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    ranking = metrics["backbone_ranking"]
    assert {row["backbone"] for row in ranking["backbones"]} == {"minilm", "glove"}
    assert metrics["backbone"] == ranking["best"]
    assert "Backbone choice" in (tmp_path / "m" / "report.html").read_text()


def test_calibration_round_trip(image_folder: Path, tiny_backbone: Backbone, tmp_path: Path) -> None:
    model = headstart.fit(image_folder, backbone=tiny_backbone, calibrate=True, out=tmp_path / "m",
                          progress=False, strategy="linear", settings={"c": 100.0}, val_fraction=0.25,
                          test_fraction=0.25)
    calibration = model.metrics["calibration"]
    assert model.temperature == pytest.approx(calibration["temperature"]) and model.temperature != 1.0
    assert set(calibration["ece_before"]) == {"val", "test"} == set(calibration["ece_after"])
    assert calibration["ece_after"]["val"] <= calibration["ece_before"]["val"] + 1e-9
    loaded = headstart.load(tmp_path / "m")
    assert loaded.temperature == model.temperature
    items = load_dataset(image_folder).train.items[:5]
    proba = loaded.predict_proba(items)
    np.testing.assert_allclose(proba, model.predict_proba(items), atol=1e-6)
    logits = loaded.logits(items)
    shifted = logits / model.temperature
    expected = np.exp(shifted - shifted.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    assert "Calibration" in (tmp_path / "m" / "report.html").read_text()


def test_class_weight_balanced_helps_the_rare_class() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 200 + [1] * 10)
    features = rng.normal(size=(210, 2)) + labels[:, None] * 1.2
    plain, _ = fit_linear_head(features, labels, 2, c=1.0)
    balanced, _ = fit_linear_head(features, labels, 2, c=1.0, class_weight="balanced")
    with torch.no_grad():
        x = torch.from_numpy(features).float()
        recall_plain = (plain(x).argmax(1).numpy()[labels == 1] == 1).mean()
        recall_balanced = (balanced(x).argmax(1).numpy()[labels == 1] == 1).mean()
    assert recall_balanced > recall_plain


def test_imbalance_warning_and_class_weight_through_the_cli(tmp_path: Path, tiny_timm_ref: str) -> None:
    folder = write_image_folder(tmp_path / "imb", per_class=30, classes=("red", "green"))
    for path in sorted((folder / "green").iterdir())[2:]:
        path.unlink()
    result = CliRunner().invoke(app, ["fit", str(folder), "--backbone", tiny_timm_ref, "--strategy", "linear",
                                      "--class-weight", "balanced", "--test-fraction", "0.3",
                                      "--out", str(tmp_path / "m"), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert any("imbalanced" in w for w in metrics["warnings"])
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["strategy_config"]["class_weight"] == "balanced"
    assert "imbalanced" in (tmp_path / "m" / "report.html").read_text()
