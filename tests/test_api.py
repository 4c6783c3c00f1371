import json

import numpy as np
import pytest

import headstart
from headstart.errors import ConfigError, DataError, OutputExistsError
from training_support import TinyTextBackbone


def test_fit_save_reload_gives_identical_predictions(tmp_path, image_folder, tiny_backbone, tiny_timm_ref):
    out = tmp_path / "run"
    model = headstart.fit(image_folder, backbone=tiny_backbone, out=out, progress=False, test_fraction=0.2)
    assert sorted(p.name for p in out.iterdir()) == [".headstart-output", "README.md", "config.json", "metrics.json",
                                                    "model.safetensors", "report.html"]
    assert model.metrics["test"]["accuracy"] >= 0.8
    items = [str(p) for p in sorted(image_folder.rglob("*.png"))]
    reloaded = headstart.load(out)
    assert np.array_equal(reloaded.predict_proba(items), model.predict_proba(items))
    assert reloaded.class_names == ["blue", "green", "red"]
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"]["ref"] == tiny_timm_ref
    assert config["backbone"]["preprocess"]["input_size"] == 32
    assert reloaded.backbone.preprocess == tiny_backbone.preprocess
    assert headstart.evaluate(out, image_folder)["accuracy"] >= 0.8


def test_second_fit_reuses_cached_features(tmp_path, image_folder, tiny_backbone, monkeypatch):
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "a", progress=False)
    from headstart.backbones.base import Backbone

    def fail(*args, **kwargs):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(Backbone, "embed", fail)
    for klass in Backbone.__subclasses__():
        monkeypatch.setattr(klass, "embed", fail, raising=False)
    model = headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "b", progress=False, seed=0,
                          strategy="linear", settings={"c": 0.1})
    assert model.strategy_config["chosen_C"] == 0.1


def test_existing_output_is_refused_before_any_work(tmp_path, image_folder):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="force=True"):
        headstart.fit(image_folder, backbone="timm:not-a-model", out=out, progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_backbone_of_the_wrong_modality_is_refused(text_csv, tiny_timm_ref):
    with pytest.raises(ConfigError, match="image data"):
        headstart.fit(text_csv, backbone=tiny_timm_ref, progress=False)


def test_unknown_strategy_setting_names_the_setting(image_folder, tiny_backbone):
    with pytest.raises(ConfigError, match="no_such_knob"):
        headstart.fit(image_folder, backbone=tiny_backbone, progress=False, settings={"no_such_knob": 1})


def test_evaluate_rejects_classes_the_model_does_not_know(tmp_path, image_folder, tiny_backbone):
    from conftest import write_image_folder

    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "run", progress=False)
    other = write_image_folder(tmp_path / "other", classes=("red", "purple"))
    with pytest.raises(DataError, match="purple"):
        headstart.evaluate(tmp_path / "run", other)


def test_predict_top_k_on_a_folder(tmp_path, image_folder, tiny_backbone):
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "run", progress=False)
    rows = headstart.predict(tmp_path / "run", [str(image_folder / "red")], top_k=2)
    assert len(rows) == 12
    assert all(len(r["top"]) == 2 and r["top"][0][1] >= r["top"][1][1] for r in rows)
    assert sum(r["label"] == "red" for r in rows) >= 9


def test_image_size_is_used_saved_and_restored(tmp_path, image_folder, tiny_timm_ref):
    out = tmp_path / "run"
    model = headstart.fit(image_folder, backbone=tiny_timm_ref, image_size=40, out=out, progress=False)
    assert model.backbone.preprocess.input_size == 40
    assert model.backbone.collate([str(next(image_folder.rglob("*.png")))]).shape[-2:] == (40, 40)
    assert json.loads((out / "config.json").read_text())["backbone"]["preprocess"]["input_size"] == 40
    assert headstart.load(out).backbone.preprocess.input_size == 40


def test_image_size_changes_the_feature_cache_key(tiny_timm_ref):
    from headstart.backbones import create_backbone, with_image_size

    base = create_backbone(tiny_timm_ref)
    resized = with_image_size(tiny_timm_ref, 48)
    assert resized.preprocess.input_size == 48
    assert resized.fingerprint() != base.fingerprint()
    assert with_image_size(base, None) is base


def test_image_size_is_refused_for_text_backbones(text_csv):
    with pytest.raises(ConfigError, match="image_size=64 applies to image backbones"):
        headstart.fit(text_csv, backbone=TinyTextBackbone(), image_size=64, progress=False)
