"""The source task's accuracy before and after transfer: found by itself for a ``ckpt:`` source model, fitted as
a probe for ``source=`` data, and every bad source refused with one message naming the option."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import headstart
from conftest import write_image_folder
from headstart.data import load_dataset
from headstart.errors import ConfigError
from headstart.evaluation.forgetting import forgetting_summary, measure_forgetting
from headstart.model import TransferModel
from test_cli import run_main

TRAINED = {"min_steps": 0, "head_epochs": 1, "epochs": 2, "batch_size": 8, "augment": "off"}


@pytest.fixture
def source_model(tmp_path, image_folder, tiny_backbone) -> Path:
    """A linear model on red/green/blue images whose test split ``fit`` carved (20%, seed 0)."""
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "source", progress=False, test_fraction=0.2)
    return tmp_path / "source"


@pytest.fixture
def target_folder(tmp_path) -> Path:
    """Two other classes (red-ish and green-ish images with other names), with a test split of their own."""
    root = tmp_path / "target"
    write_image_folder(root / "train", per_class=8, classes=("warm", "leafy"), seed=1)
    write_image_folder(root / "test", per_class=4, classes=("warm", "leafy"), seed=2)
    return root


def test_a_ckpt_source_model_reports_its_own_test_accuracy_before_and_after(source_model, target_folder) -> None:
    source_metrics = json.loads((source_model / "metrics.json").read_text())
    assert source_metrics["data"]["carved"] == {"test": 0.2, "seed": 0}
    frozen = headstart.fit(target_folder, backbone=f"ckpt:{source_model}", progress=False)
    task = frozen.metrics["forgetting"]["source_task"]
    # The same head, features and re-carved test split as the source model's own test: the same accuracy.
    assert task["n"] == source_metrics["test"]["n_examples"]
    assert task["accuracy_before"] == pytest.approx(source_metrics["test"]["accuracy"])
    assert task["accuracy_after"] == task["accuracy_before"] and "classifier of the source model" in task["head"]
    tuned = headstart.fit(target_folder, backbone=f"ckpt:{source_model}", strategy="finetune", progress=False,
                          settings=TRAINED, out=source_model.parent / "tuned")
    moved = tuned.metrics["forgetting"]["source_task"]
    assert moved["accuracy_before"] == task["accuracy_before"] and 0.0 <= moved["accuracy_after"] <= 1.0
    assert "source-task accuracy" in forgetting_summary(tuned.metrics["forgetting"])
    assert "Source task: accuracy" in (source_model.parent / "tuned" / "report.html").read_text()


def test_source_data_fits_a_probe_that_a_scrambled_backbone_no_longer_serves(image_folder, tiny_backbone) -> None:
    data = load_dataset(image_folder)
    model = TransferModel(copy.deepcopy(tiny_backbone), torch.nn.Linear(tiny_backbone.feature_dim, 2), ["a", "b"],
                          strategy="test", backbone_trained=True)
    kept = measure_forgetting(model, source=tiny_backbone, source_data=data)["source_task"]
    assert kept["accuracy_before"] >= 0.85 and kept["accuracy_after"] == kept["accuracy_before"]
    assert "linear probe" in kept["head"] and kept["n"] == 6  # 2 of each class's 12 images held out (20%, rounded)
    with torch.no_grad():
        for p in model.backbone.module.parameters():
            p.copy_(p[torch.randperm(len(p))] + 0.5 * torch.randn_like(p))
    lost = measure_forgetting(model, source=tiny_backbone, source_data=data)["source_task"]
    assert lost["accuracy_before"] == kept["accuracy_before"] and lost["accuracy_after"] < kept["accuracy_before"]


def test_evaluate_takes_source_data_through_the_api_and_the_cli(tmp_path, source_model, image_folder, monkeypatch,
                                                               capsys) -> None:
    metrics = headstart.evaluate(source_model, image_folder, source=image_folder)
    assert metrics["forgetting"]["source_task"]["accuracy_before"] >= 0.85
    code, out, err = run_main(monkeypatch, capsys, "evaluate", source_model, image_folder, "--source", image_folder)
    assert code == 0, err
    assert "source-task accuracy" in out


def test_bad_sources_exit_2_naming_the_option(tmp_path, source_model, target_folder, text_csv, tiny_timm_ref,
                                              monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, "fit", target_folder, "--out", tmp_path / "a", "--backbone",
                              tiny_timm_ref, "--source", text_csv, "--quiet")
    assert code == 2 and "--source" in err and "text data" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    code, out, err = run_main(monkeypatch, capsys, "fit", target_folder, "--out", tmp_path / "b", "--backbone",
                              f"ckpt:{source_model}", "--source", target_folder, "--quiet")
    assert code == 2 and "--source" in err and "warm" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="source="):
        headstart.forgetting(source_model, source=text_csv)


def test_a_ckpt_from_an_older_version_gives_a_note_instead_of_the_source_task(source_model, target_folder) -> None:
    metrics_file = source_model / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    for key in ("path", "carved"):
        del metrics["data"][key]
    metrics_file.write_text(json.dumps(metrics))
    model = headstart.fit(target_folder, backbone=f"ckpt:{source_model}", progress=False)
    forgetting = model.metrics["forgetting"]
    assert "source_task" not in forgetting
    assert any("does not record where its data is" in note and "--source" in note for note in forgetting["notes"])
    (source_model / "metrics.json").unlink()  # older still: no metrics at all
    notes = headstart.fit(target_folder, backbone=f"ckpt:{source_model}", progress=False).metrics["forgetting"]["notes"]
    assert any("does not record where its data is" in note for note in notes)
