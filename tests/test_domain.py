"""Domain shift: unlabeled target data, the shift check, and the strategies that adapt to a target domain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import headstart
from conftest import write_image_folder
from headstart.cli import main
from headstart.data import Dataset
from headstart.data.unlabeled import load_unlabeled
from headstart.errors import ConfigError, DataError
from headstart.reports.study import compare_report
from headstart.shift import proxy_a_distance, shift_reading
from headstart.strategies.adabn import batch_norms, reestimate_batch_norm
from headstart.strategies.coral import coral_align
from headstart.strategies.dann import reversal_strength, reverse_gradient
from training_support import TinyImageBackbone, TinyTextBackbone, color_images, sentiment_texts


def low_contrast(data: Dataset, scale: float = 0.4, offset: int = 120) -> Dataset:
    """``data`` rendered at lower contrast and higher brightness: a per-channel affine change of every pixel."""
    items = [np.clip(np.asarray(i, float) * scale + offset, 0, 255).astype(np.uint8) for i in data.items]
    return Dataset(items, data.labels, data.class_names, data.modality, "low-contrast")


# --- the shift check -------------------------------------------------------------------------------------

def test_pad_is_near_zero_for_one_distribution_and_near_two_for_separated_ones() -> None:
    rng = np.random.default_rng(0)
    same = proxy_a_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)))[0]
    apart = proxy_a_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 2.0)[0]
    assert same < 0.3 and apart > 1.8, (same, apart)
    assert [shift_reading(p) for p in (same, 1.0, apart)] == ["little", "moderate", "large"]


def test_pad_refuses_a_domain_of_one_example() -> None:
    with pytest.raises(ValueError, match="two examples"):
        proxy_a_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# --- CORAL and DANN building blocks ----------------------------------------------------------------------

def test_coral_gives_source_features_the_targets_mean_and_covariance() -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2000, 3)) @ np.array([[2.0, 0.5, 0], [0, 1, 0], [0, 0, 0.3]])
    target = rng.normal(size=(2000, 3)) * [0.5, 3.0, 1.0] + [1.0, -2.0, 0.0]
    aligned = coral_align(source, target, shrinkage=1e-6)
    np.testing.assert_allclose(aligned.mean(0), target.mean(0), atol=1e-4)
    np.testing.assert_allclose(np.cov(aligned.T), np.cov(target.T), atol=0.05)


def test_coral_with_fewer_examples_than_dimensions_matches_the_dense_formula() -> None:
    # The thin-SVD form must equal whitening and re-colouring with the full D x D regularised covariances.
    rng = np.random.default_rng(1)
    source, target = rng.normal(size=(40, 64)), rng.normal(size=(25, 64)) * 2.0 + 0.5

    def power(x: np.ndarray, p: float) -> np.ndarray:
        cov = np.cov(x, rowvar=False)
        cov += 0.7 * np.trace(cov) / x.shape[1] * np.eye(x.shape[1])
        values, vectors = np.linalg.eigh(cov)
        return (vectors * values ** p) @ vectors.T

    dense = (source - source.mean(0)) @ power(source, -0.5) @ power(target, 0.5) + target.mean(0)
    np.testing.assert_allclose(coral_align(source, target, shrinkage=0.7), dense, rtol=1e-4, atol=1e-4)


def test_gradient_reversal_flips_and_scales_the_gradient_only() -> None:
    x = torch.ones(3, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    (2 * y).sum().backward()
    assert torch.equal(y, x.detach()) and torch.allclose(x.grad, torch.full((3,), -1.0))
    assert reversal_strength(0.0) == 0.0 and 0.99 < reversal_strength(1.0) <= 1.0
    assert 0.46 < reversal_strength(0.1) < 0.47  # 2 / (1 + e^-1) - 1


def test_reestimating_the_first_batch_norm_runs_only_up_to_it_and_leaves_the_others() -> None:
    backbone, items = TinyImageBackbone(), low_contrast(color_images(20, seed=1)).items
    first, second = batch_norms(backbone.module)
    kept = second.running_mean.clone()
    later_calls = []
    backbone.module[1].register_forward_hook(lambda *_: later_calls.append(1))
    reestimate_batch_norm(backbone, items, layers=1, batch_size=8)
    with torch.no_grad():
        stem = backbone.module[0][0](backbone.collate(items))
    torch.testing.assert_close(first.running_mean, stem.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert later_calls == [] and torch.equal(second.running_mean, kept) and not backbone.module.training


# --- adaptation on a synthetic shift ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def shifted_fits() -> dict[str, dict]:
    """Target accuracy of each strategy from source colour images to a low-contrast rendering of them."""
    source, target, test = color_images(90, seed=0), low_contrast(color_images(60, seed=1)), \
        low_contrast(color_images(60, seed=2))
    fits = {}
    for name in ("linear", "adabn", "coral"):
        model = headstart.fit(source, backbone=TinyImageBackbone(), strategy=name, target=target, target_test=test,
                              progress=False, settings={"c_values": 4, "folds": 3})
        fits[name] = model.metrics
    return fits


def test_adabn_and_coral_recover_target_accuracy_the_linear_probe_loses(shifted_fits) -> None:
    # Measured (seed 0): linear 33%, adabn 100%, coral 97% on the shifted test set.
    target = {name: m["target"]["test"]["accuracy"] for name, m in shifted_fits.items()}
    assert target["linear"] < 0.5 and target["adabn"] > 0.9 and target["coral"] > 0.8, target
    assert all(m["target"]["shift"]["reading"] == "large" for m in shifted_fits.values())


def test_adabn_adapts_only_the_first_batch_norm_layer_by_default() -> None:
    backbone = TinyImageBackbone()
    model = headstart.fit(color_images(30), backbone=backbone, strategy="adabn", progress=False,
                          target=low_contrast(color_images(20, seed=1)), settings={"c_values": 2, "folds": 2})
    first, second = batch_norms(model.backbone.module)
    original_first, original_second = batch_norms(backbone.module)
    assert model.strategy_config["adapted_batch_norm_layers"] == 1
    assert not torch.allclose(first.running_mean, original_first.running_mean)
    assert torch.equal(second.running_mean, original_second.running_mean)
    assert torch.equal(second.running_var, original_second.running_var)


def test_adabn_measures_forgetting_only_when_asked() -> None:
    fits = {asked: headstart.fit(color_images(90), backbone=TinyImageBackbone(), strategy="adabn", progress=False,
                                 target=low_contrast(color_images(20, seed=1)), test_fraction=0.4,
                                 settings={"c_values": 2, "folds": 2, "forgetting": asked}).metrics["forgetting"]
            for asked in (False, True)}
    assert "target" not in fits[False] and "forgetting=true" in fits[False]["notes"][0]
    # The tiny backbone cannot read the bundled photos: the measure is on the test split.
    assert fits[True]["backbone_changed"] and 0.0 < fits[True]["target"]["feature_cka"] < 1.0


def test_dann_trains_on_the_loop_and_keeps_a_linear_head(tmp_path: Path) -> None:
    source, target = color_images(48, seed=0), low_contrast(color_images(24, seed=1))
    model = headstart.fit(source, backbone=TinyImageBackbone(), strategy="dann", target=target, progress=False,
                          settings={"epochs": 2, "head_epochs": 1, "min_steps": 0, "batch_size": 8}, out=tmp_path / "m")
    assert model.metrics["train"]["stages"] == ["head", "all"] and model.backbone_trained
    assert isinstance(model.head, torch.nn.Linear)
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["target"]["n_unlabeled"] == 24 and "pad" in saved["target"]["shift"]
    loaded = headstart.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(target.items[:5]), model.predict_proba(target.items[:5]),
                               atol=1e-6)


# --- bad input -------------------------------------------------------------------------------------------

def test_a_strategy_needing_a_target_is_refused_before_the_data_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--target"):
        headstart.fit(tmp_path / "missing", strategy="coral", progress=False)


def test_adabn_on_a_backbone_without_batch_norm_names_the_alternatives() -> None:
    texts = sentiment_texts(20)
    with pytest.raises(ConfigError, match="no BatchNorm.*coral or dann"):
        headstart.fit(texts, backbone=TinyTextBackbone(), strategy="adabn", target=sentiment_texts(6, seed=1),
                      progress=False)


def test_target_of_another_modality_is_refused_naming_the_option(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "images", per_class=2)
    with pytest.raises(DataError, match=r"--target\).*image data but the source data is text"):
        headstart.fit(sentiment_texts(20), backbone=TinyTextBackbone(), target=tmp_path / "images", progress=False)


def test_an_empty_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_unlabeled(tmp_path / "empty", "image")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no text examples"):
        load_unlabeled(tmp_path / "empty.txt", "text")
    with pytest.raises(DataError, match="does not exist"):
        load_unlabeled(tmp_path / "nowhere", "text")


def test_labels_in_an_unlabeled_target_are_ignored_and_said_so(tmp_path: Path, text_csv: Path) -> None:
    images, notes = load_unlabeled(write_image_folder(tmp_path / "images", per_class=2), "image")
    assert len(images) == 6 and set(images.labels) == {-1} and "subfolders (blue, green, red)" in notes[0]
    texts, notes = load_unlabeled(text_csv, "text")
    assert len(texts) == 20 and "column 'label'" in notes[0] and "ignored" in notes[0]
    (tmp_path / "plain.txt").write_text("one text\nanother\n")
    assert load_unlabeled(tmp_path / "plain.txt", "text")[0].items == ["one text", "another"]


def test_target_test_with_a_class_the_source_lacks_is_refused(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "test", per_class=2, classes=("red", "purple"))
    write_image_folder(tmp_path / "target", per_class=2)
    with pytest.raises(DataError, match="purple"):
        headstart.fit(write_image_folder(tmp_path / "source", per_class=4), backbone=TinyImageBackbone(),
                      target=tmp_path / "target", target_test=tmp_path / "test", progress=False)


def test_labeled_target_data_alone_is_measured_and_shows_the_shift() -> None:
    model = headstart.fit(color_images(60), backbone=TinyImageBackbone(), progress=False, strategy="linear",
                          target_test=low_contrast(color_images(30, seed=2)), settings={"c_values": 2})
    target = model.metrics["target"]
    assert target["n_unlabeled"] == 0 and target["test"]["n_examples"] == 30 and target["shift"]["pad"] > 1.5


# --- the command line ------------------------------------------------------------------------------------

def invert_folder(source: Path, out: Path) -> Path:
    """The images of ``source`` inverted, in the same class layout under ``out``."""
    for path in source.rglob("*.png"):
        target = out / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - np.asarray(Image.open(path))).save(target)
    return out


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["headstart", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return done.value.code or 0


def test_cli_fit_with_a_target_prints_the_shift_and_the_target_accuracy(tiny_timm_ref: str, tmp_path: Path,
                                                                       capsys, monkeypatch) -> None:
    source = write_image_folder(tmp_path / "source", per_class=8)
    target = invert_folder(write_image_folder(tmp_path / "raw", per_class=4, seed=1), tmp_path / "target")
    code = run_main(monkeypatch, "fit", str(source), "--out", str(tmp_path / "model"), "--backbone", tiny_timm_ref,
                    "--strategy", "coral", "--image-size", "32", "--target", str(target), "--target-test",
                    str(target), "--set", "c_values=2")
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "target test accuracy" in printed.out and "proxy A-distance" in printed.out
    assert "are ignored" in printed.err  # the target's class subfolders
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["target"]["test"]["n_examples"] == 12
    assert "Target domain" in (tmp_path / "model" / "report.html").read_text()
    assert run_main(monkeypatch, "fit", str(source), "--out", str(tmp_path / "m2"), "--strategy", "dann") == 2
    assert "--target" in capsys.readouterr().err


# --- compare with a target domain ------------------------------------------------------------------------

def test_compare_measures_every_strategy_on_the_target_test_set_beside_the_source_one() -> None:
    seen: list = []
    result = headstart.compare(color_images(90), strategies=["linear", "adabn", "coral"], shots=[10], seeds=2,
                               backbone=TinyImageBackbone(), target=low_contrast(color_images(60, seed=1)),
                               target_test=low_contrast(color_images(60, seed=2)), on_run=seen.append,
                               settings={"c_values": 2, "folds": 2}, progress=False)
    assert result.target["shift"]["reading"] == "large" and result.target["n_unlabeled"] == 60
    assert result.target["n_test"] == 60 and len(seen) == 6
    assert all(0.0 <= run.metrics["target_accuracy"] <= 1.0 for run in result.records)
    on_target = {row.strategy: row.mean for row in result.target_summary}
    on_source = {row.strategy: row.mean for row in result.summary}
    assert [row.n_seeds for row in result.target_summary] == [2, 2, 2]
    # Measured: linear 0.33 on the target (1.0 on the source), adabn and coral 1.0.
    assert on_target["linear"] < 0.5 < on_source["linear"], (on_target, on_source)
    assert on_target["adabn"] > 0.9 and on_target["coral"] > 0.9, on_target
    assert json.loads(json.dumps(result.to_dict()))["target"]["shift"]["pad"] == result.target["shift"]["pad"]


class ContrastBlindBackbone(TinyImageBackbone):
    """The tiny backbone on images standardised one by one: a contrast change is invisible to it."""

    ref = "test-tiny-image-contrast-blind"

    def collate(self, items, *, augment: str = "off") -> torch.Tensor:
        batch = super().collate(items, augment=augment)
        return (batch - batch.mean(dim=(1, 2, 3), keepdim=True)) / (batch.std(dim=(1, 2, 3), keepdim=True) + 1e-6)


def test_compare_measures_the_shift_with_every_backbone() -> None:
    first, blind = TinyImageBackbone(), ContrastBlindBackbone()
    result = headstart.compare(color_images(90), strategies=["linear"], shots=[10], seeds=1,
                               backbone=[first, blind], target=low_contrast(color_images(60, seed=1)),
                               settings={"c_values": 2, "folds": 2}, progress=False)
    shifts = result.target["shifts"]
    assert [shift["backbone"] for shift in shifts] == [first.ref, blind.ref]
    # Measured: PAD 2.0 with the plain backbone's features, 0.0 once every image is standardised.
    assert [shift["reading"] for shift in shifts] == ["large", "little"], shifts
    assert blind.ref in shifts[1]["summary"] and result.target["shift"]["pad"] == shifts[0]["pad"]
    assert json.loads(json.dumps(result.to_dict()))["target"]["shifts"] == shifts
    section = compare_report(result).split("<h2>Target domain</h2>")[1].split("<h2>")[0]
    assert first.ref in section and blind.ref in section and "little" in section and "large" in section


def test_the_report_reads_a_target_entry_from_before_shifts_per_backbone() -> None:
    result = headstart.compare(color_images(40), strategies=["linear"], shots=[4], seeds=1,
                               backbone=TinyImageBackbone(), target=low_contrast(color_images(20, seed=1)),
                               settings={"c_values": 2, "folds": 2}, progress=False)
    assert len(result.target["shifts"]) == 1
    del result.target["shifts"]
    assert result.target["shift"]["summary"] in compare_report(result)


def test_compare_refuses_an_adapting_strategy_without_a_target_before_any_run() -> None:
    seen: list = []
    with pytest.raises(ConfigError, match="'coral' adapts to a target domain.*--target"):
        headstart.compare(color_images(30), strategies=["linear", "coral"], shots=[4], seeds=1,
                          backbone=TinyImageBackbone(), on_run=seen.append, progress=False,
                          target_test=low_contrast(color_images(30, seed=2)))
    assert seen == []


def test_compare_checks_the_target_as_fit_does(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "images", per_class=2)
    with pytest.raises(DataError, match=r"--target\).*image data but the source data is text"):
        headstart.compare(sentiment_texts(20), strategies=["coral"], shots=[4], backbone=TinyTextBackbone(),
                          target=tmp_path / "images", progress=False)


def test_cli_compare_with_a_target_prints_the_shift_and_both_accuracies(tiny_timm_ref: str, tmp_path: Path,
                                                                       capsys, monkeypatch) -> None:
    source = write_image_folder(tmp_path / "source", per_class=8)
    target = invert_folder(write_image_folder(tmp_path / "raw", per_class=4, seed=1), tmp_path / "target")
    code = run_main(monkeypatch, "compare", str(source), "--out", str(tmp_path / "study"), "--backbone",
                    tiny_timm_ref, "--strategies", "linear,coral", "--shots", "4", "--seeds", "1", "--image-size",
                    "32", "--target", str(target), "--target-test", str(target), "--set", "c_values=2")
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "proxy A-distance" in printed.out and "target test" in printed.out and "source test" in printed.out
    assert "are ignored" in printed.out  # the target's class subfolders, said with the shift
    study = json.loads((tmp_path / "study" / "compare.json").read_text())
    assert {row["strategy"] for row in study["target_summary"]} == {"linear", "coral"}
    report = (tmp_path / "study" / "report.html").read_text()
    assert "Target domain" in report and "target accuracy" in report
    (tmp_path / "empty").mkdir()
    for bad in (["--target", str(tmp_path / "empty")], ["--strategies", "adabn"]):
        assert run_main(monkeypatch, "compare", str(source), "--backbone", tiny_timm_ref, "--shots", "4",
                        "--seeds", "1", *bad) == 2
        assert "--target" in capsys.readouterr().err
