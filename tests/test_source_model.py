"""The "develop a source model" workflow: train a backbone on a large related labeled set, then transfer it
(``--backbone ckpt:DIR``), and compare it with the hub backbone and scratch on one learning curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import headstart
from conftest import write_image_folder
from headstart.cli import app
from headstart.errors import ConfigError
from headstart.studies import contender

FAST = ["--set", "scratch.epochs=1", "--set", "scratch.batch_size=16", "--set", "scratch.augment=off"]


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def source_model(tiny_timm_ref: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fit SOURCE --strategy scratch``: the tiny timm architecture trained from random weights on a source set."""
    root = tmp_path_factory.mktemp("source")
    data = write_image_folder(root / "data", per_class=10, classes=("red", "green", "blue", "cyan"), seed=3)
    run("fit", str(data), "--out", str(root / "model"), "--backbone", tiny_timm_ref, "--strategy", "scratch",
        "--image-size", "32", "--set", "epochs=1", "--set", "batch_size=16", "--set", "augment=off",
        "--test-fraction", "0.2", "--quiet")
    return root / "model"


def test_a_source_model_transfers_with_ckpt(source_model: Path, tmp_path: Path) -> None:
    target = write_image_folder(tmp_path / "target", per_class=6)
    model = headstart.fit(target, backbone=f"ckpt:{source_model}", progress=False, test_fraction=0.3)
    assert model.backbone.ref == f"ckpt:{source_model}" and "test" in model.metrics


def test_compare_puts_hub_transfer_own_source_transfer_and_scratch_on_one_curve(
        source_model: Path, tiny_timm_ref: str, tmp_path: Path) -> None:
    target = write_image_folder(tmp_path / "target", per_class=8)
    own = f"ckpt:{source_model}"
    run("compare", str(target), "--strategies", "linear,scratch", "--backbones", f"{tiny_timm_ref},{own}",
        "--shots", "2,4", "--seeds", "1", "--image-size", "32", "--out", str(tmp_path / "study"), "--quiet", *FAST)
    study = json.loads((tmp_path / "study" / "compare.json").read_text())
    contenders = [contender("linear", tiny_timm_ref), contender("linear", own), "scratch"]
    assert study["strategies"] == contenders
    assert {(r["strategy"], r["size"]) for r in study["records"]} == {(c, s) for c in contenders for s in (2.0, 4.0)}
    assert sorted(v["strategy"] for v in study["verdicts"]) == sorted(contenders[:2])
    assert own in study["backbone"] and tiny_timm_ref in study["backbone"]


def test_compare_with_a_target_shows_the_shift_for_each_backbone(source_model: Path, tiny_timm_ref: str,
                                                                  tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", per_class=6)
    target = write_image_folder(tmp_path / "target", per_class=4, seed=7)
    own = f"ckpt:{source_model}"
    printed = run("compare", str(data), "--strategies", "linear", "--backbones", f"{tiny_timm_ref},{own}",
                  "--shots", "2", "--seeds", "1", "--image-size", "32", "--target", str(target), "--target-test",
                  str(target), "--out", str(tmp_path / "study"), "--quiet")
    study = json.loads((tmp_path / "study" / "compare.json").read_text())
    shifts = study["target"]["shifts"]
    assert [shift["backbone"] for shift in shifts] == [tiny_timm_ref, own]
    assert all(shift["summary"] in printed for shift in shifts), printed
    assert all(shift["reading"] in ("little", "moderate", "large") for shift in shifts)
    report = (tmp_path / "study" / "report.html").read_text()
    assert own in report.split("<h2>Target domain</h2>")[1].split("<h2>")[0]


def test_the_same_backbone_twice_is_refused(tiny_timm_ref: str, image_folder: Path) -> None:
    with pytest.raises(ConfigError, match="twice"):
        headstart.compare(image_folder, strategies=["linear"], shots=[2], seeds=1,
                          backbone=[tiny_timm_ref, tiny_timm_ref], image_size=32)
