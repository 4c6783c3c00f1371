"""Model folders: self-contained, loaded from what they hold only, checked against the data they are given,
and every broken file refused with one clear message."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import headstart
from conftest import TINY_PREPROCESS
from headstart.backbones import create_backbone
from headstart.errors import BackboneError, DataError, HeadstartWarning, ModelFileError


def images(folder: Path) -> list[str]:
    return [str(p) for p in sorted(folder.rglob("*.png"))]


@pytest.fixture
def image_model(tmp_path, image_folder, tiny_backbone) -> Path:
    """A linear model on the tiny timm backbone, saved in ``tmp_path / 'model'``."""
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "model", progress=False)
    return tmp_path / "model"


def test_model_from_a_local_weights_file_keeps_working_when_the_file_is_deleted_or_replaced(
        tmp_path, image_folder, tiny_timm_ref):
    weights = tmp_path / "weights.safetensors"
    shutil.copy(tiny_timm_ref.split("@", 1)[1], weights)
    backbone = create_backbone(f"timm:test_efficientnet@{weights}", preprocess=TINY_PREPROCESS)
    model = headstart.fit(image_folder, backbone=backbone, out=tmp_path / "model", progress=False)
    expected = model.predict_proba(images(image_folder))
    state = load_file(str(weights))
    save_file({k: v + 0.5 for k, v in state.items()}, str(weights))  # replaced: must not change predictions
    np.testing.assert_array_equal(headstart.load(tmp_path / "model").predict_proba(images(image_folder)), expected)
    weights.unlink()
    np.testing.assert_array_equal(headstart.load(tmp_path / "model").predict_proba(images(image_folder)), expected)


def test_model_on_a_ckpt_backbone_keeps_working_when_the_source_folder_is_deleted(tmp_path, image_folder,
                                                                                  image_model):
    model = headstart.fit(image_folder, backbone=f"ckpt:{image_model}", out=tmp_path / "target", progress=False)
    expected = model.predict_proba(images(image_folder))
    shutil.rmtree(image_model)
    reloaded = headstart.load(tmp_path / "target")
    np.testing.assert_array_equal(reloaded.predict_proba(images(image_folder)), expected)
    assert reloaded.backbone.ref == f"ckpt:{image_model.resolve()}"


def test_refit_over_its_own_ckpt_source_and_a_self_referencing_folder(tmp_path, image_folder, image_model):
    model = headstart.fit(image_folder, backbone=f"ckpt:{image_model}", out=image_model, force=True,
                          progress=False)
    np.testing.assert_array_equal(headstart.load(image_model).predict_proba(images(image_folder)[:4]),
                                  model.predict_proba(images(image_folder)[:4]))
    config = json.loads((image_model / "config.json").read_text())
    config["backbone_stored"] = False  # as written before folders held their backbone
    (image_model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneError, match="leads back to itself"):
        create_backbone(f"ckpt:{image_model}")


def test_hub_backbone_is_never_downloaded_when_loading_a_folder(tmp_path, image_folder, tiny_timm_ref, monkeypatch):
    import headstart.backbones.timm as timm_family

    backbone = create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)
    backbone.ref = "timm:test_efficientnet"  # as if its weights had come from the hub
    model = headstart.fit(image_folder, backbone=backbone, out=tmp_path / "model", progress=False)
    real_create = timm_family._create_timm

    def no_download(name, *, pretrained):
        assert not pretrained, "tried to download weights"
        return real_create(name, pretrained=False)

    monkeypatch.setattr(timm_family, "_create_timm", no_download)
    reloaded = headstart.load(tmp_path / "model")
    np.testing.assert_array_equal(reloaded.predict_proba(images(image_folder)[:4]),
                                  model.predict_proba(images(image_folder)[:4]))
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["backbone_stored"] = False  # an older folder that names its hub backbone only
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneError, match="allow_download=True"):
        headstart.load(tmp_path / "model")


def _edit_config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


BROKEN = {
    "truncated weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-9]),
                          "model.safetensors is not a readable safetensors file"),
    "invalid config": (lambda f: (f / "config.json").write_text('{"format_version": 1,'), "config.json is not valid"),
    "missing key": (lambda f: _edit_config(f, lambda c: c.pop("class_names")), "lacks or has invalid class_names"),
    "class count": (lambda f: _edit_config(f, lambda c: c["class_names"].append("extra")), "4 classes"),
    "feature size": (lambda f: _edit_config(f, lambda c: c.update(feature_dim=7)), "7 features"),
    "duplicate classes": (lambda f: _edit_config(f, lambda c: c.update(class_names=["a", "a", "b"])),
                          "class_names \\(two or more distinct names\\)"),
    "zero temperature": (lambda f: _edit_config(f, lambda c: c.update(temperature=0)), "temperature"),
    "negative temperature": (lambda f: _edit_config(f, lambda c: c.update(temperature=-1.0)), "temperature"),
    "zero crop_pct": (lambda f: _edit_config(f, lambda c: c["backbone"]["preprocess"].update(crop_pct=0)),
                      "crop_pct"),
    "zero input_size": (lambda f: _edit_config(f, lambda c: c["backbone"]["preprocess"].update(input_size=0)),
                        "input_size 0 is outside"),
    "huge input_size": (lambda f: _edit_config(f, lambda c: c["backbone"]["preprocess"].update(input_size=100000)),
                        "input_size 100000 is outside"),
}


@pytest.mark.parametrize("damage", sorted(BROKEN))
def test_broken_model_folder_is_refused_with_the_file_named(image_model, damage):
    breaks, message = BROKEN[damage]
    breaks(image_model)
    with pytest.raises(ModelFileError, match=message):
        headstart.load(image_model)


def test_broken_file_is_one_line_exit_2_on_the_command_line(image_model, image_folder, monkeypatch, capsys):
    from test_cli import run_main

    BROKEN["truncated weights"][0](image_model)
    code, _, error = run_main(monkeypatch, capsys, "predict", image_model, image_folder / "red", "-q")
    assert code == 2 and len(error.strip().splitlines()) == 1 and "model.safetensors" in error


def test_damaged_metrics_only_warn_and_predict_still_works(image_model, image_folder):
    (image_model / "metrics.json").write_text("{truncated")
    with pytest.warns(HeadstartWarning, match="metrics.json"):
        model = headstart.load(image_model)
    assert model.metrics == {}
    assert len(model.predict(images(image_folder)[:2])) == 2


@pytest.fixture
def text_model(tmp_path, text_csv, tiny_bert) -> Path:
    headstart.fit(text_csv, backbone=f"hf:{tiny_bert}", out=tmp_path / "text-model", progress=False)
    return tmp_path / "text-model"


def test_text_model_refuses_image_data_and_image_paths(text_model, image_folder, monkeypatch, capsys):
    with pytest.raises(DataError, match="holds image data, but the model was trained on text data"):
        headstart.evaluate(text_model, image_folder)
    from test_cli import run_main

    code, _, error = run_main(monkeypatch, capsys, "evaluate", text_model, image_folder, "-q")
    assert code == 2 and "trained on text data" in error
    picture = images(image_folder)[0]
    with pytest.raises(DataError, match="is a file, and a text model reads texts"):
        headstart.predict(text_model, [picture])
    assert headstart.predict(text_model, ["a cat sat on the mat"])[0]["label"] in ("animal", "food")


def test_image_model_refuses_text_data(image_model, text_csv):
    with pytest.raises(DataError, match="holds text data, but the model was trained on image data"):
        headstart.evaluate(image_model, text_csv)


def test_stored_backbone_weights_survive_a_folder_copy(image_model, tmp_path, image_folder):
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(image_model, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    assert any(k.startswith("backbone.") for k in tensors), "a local-file backbone must be stored in the folder"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading a healthy folder warns about nothing
        reloaded = headstart.load(copy)
    assert torch.equal(reloaded.head.weight, headstart.load(image_model).head.weight)


def test_a_backbone_factory_without_the_build_keywords_still_builds(monkeypatch, tiny_timm_ref):
    from headstart.backbones.references import BACKBONES, BackboneSpec

    built = []

    def older_family(argument, preprocess):  # written before pretrained / allow_download existed
        built.append(argument)
        return create_backbone(tiny_timm_ref, preprocess=TINY_PREPROCESS)

    monkeypatch.setitem(BACKBONES._entries, "older:", BackboneSpec("older:", "image", True, "test", older_family))
    backbone = create_backbone("older:x", pretrained=False, allow_download=False)
    assert built == ["x"] and backbone.modality == "image"
