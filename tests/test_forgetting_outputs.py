"""What users see of forgetting: one line per fit of a trained strategy, the stored section, and bad input
(a reference of another modality, a folder from an older version) as one clear message."""

from __future__ import annotations

import json

import pytest

from headstart.strategies import STRATEGIES, TrainedStrategy
from test_cli import run_main

TRAINED = sorted(name for name in STRATEGIES if issubclass(STRATEGIES.get(name), TrainedStrategy))


@pytest.mark.parametrize("strategy", TRAINED)
def test_every_fit_of_a_trained_strategy_prints_one_forgetting_line_and_stores_the_section(
        strategy, tmp_path, image_folder, tiny_timm_ref, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    target = ["--target", image_folder] if STRATEGIES.get(strategy).needs_target else []  # dann: its labels unused
    code, stdout, stderr = run_main(monkeypatch, capsys, "fit", image_folder, "--out", out, "--backbone",
                                    tiny_timm_ref, "--image-size", 32, "--strategy", strategy, "--set", "epochs=1",
                                    "--set", "min_steps=0", "--set", "batch_size=8", "--test-fraction", 0.25,
                                    "--quiet", *target)
    assert code == 0, stderr
    lines = [line for line in stdout.splitlines() if line.startswith("forgetting:")]
    assert len(lines) == 1 and "feature CKA" in lines[0]
    section = json.loads((out / "metrics.json").read_text())["forgetting"]
    assert {"reference", "target", "notes", "seconds"} <= section.keys()
    assert 0.0 <= section["reference"]["feature_cka"] <= 1.0 + 1e-9


def test_linear_fit_prints_no_forgetting_line(tmp_path, image_folder, tiny_timm_ref, monkeypatch, capsys) -> None:
    code, stdout, _ = run_main(monkeypatch, capsys, "fit", image_folder, "--out", tmp_path / "run", "--backbone",
                               tiny_timm_ref, "--image-size", 32, "--quiet")
    assert code == 0 and "forgetting:" not in stdout


def test_evaluate_reference_of_another_modality_and_a_folder_without_the_section(
        tmp_path, image_folder, text_csv, tiny_timm_ref, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    assert run_main(monkeypatch, capsys, "fit", image_folder, "--out", out, "--backbone", tiny_timm_ref,
                    "--image-size", 32, "--quiet")[0] == 0
    code, _, stderr = run_main(monkeypatch, capsys, "evaluate", out, image_folder, "--reference", text_csv)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "image" in stderr
    metrics_file = out / "metrics.json"  # as an older headstart wrote it: no forgetting (nor data) section
    metrics = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({k: v for k, v in metrics.items() if k not in ("forgetting", "data")}))
    code, stdout, stderr = run_main(monkeypatch, capsys, "evaluate", out, image_folder, "--forgetting",
                                    "--reference", image_folder / "red")
    assert code == 0, stderr
    assert "forgetting: feature CKA 1.000 on 12 reference inputs" in stdout and "(backbone frozen)" in stdout
