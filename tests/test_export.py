"""ONNX export: one graph from pixels or token ids to probabilities, checked against PyTorch; int8; predict on it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import headstart
import training_support  # noqa: F401  (registers the test-tiny-text backbone)
from headstart.cli import app
from headstart.errors import ConfigError, ExportError, ModelFileError, OutputExistsError
from headstart.onnx_export import OnnxModel
from headstart.onnx_export import export as export_onnx_module


@pytest.fixture
def image_run(tmp_path, image_folder, tiny_backbone):
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "run", progress=False, calibrate=True)
    return tmp_path / "run"


@pytest.fixture
def text_run(tmp_path, text_csv, tiny_text_ref):
    headstart.fit(text_csv, backbone=tiny_text_ref, out=tmp_path / "text-run", progress=False)
    return tmp_path / "text-run"


def test_image_graph_reproduces_the_model_and_carries_its_preprocessing(image_run, image_folder):
    report = headstart.export(image_run)
    assert report.path == image_run / "onnx" / "model.onnx"
    assert report.parity.max_abs_diff <= 1e-4 and report.parity.top1_agreement == 1.0
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(report.path)).metadata_props}
    model = headstart.load(image_run)
    assert meta["class_names"] == model.class_names
    assert meta["preprocess"]["input_size"] == 32 and meta["preprocess"]["interpolation"] == "bilinear"
    assert meta["temperature"] == pytest.approx(model.temperature) and model.temperature != 1.0
    sidecar = json.loads(report.sidecar.read_text())
    assert sidecar["preprocess"] == meta["preprocess"] and sidecar["inputs"] == ["pixel_values"]
    assert any("centre-crop 32x32" in step for step in sidecar["preprocess_steps"])
    items = [str(p) for p in sorted(image_folder.rglob("*.png"))]
    graph = OnnxModel(report.path)
    for batch in (items[:1], items[:7]):  # the batch axis is dynamic
        assert np.abs(graph.predict_proba(batch) - model.predict_proba(batch)).max() <= 1e-4


def test_predict_runs_on_the_exported_graph(image_run, image_folder):
    headstart.export(image_run)
    items = [str(p) for p in sorted(image_folder.rglob("*.png"))[:6]]
    by_torch = headstart.predict(image_run, items, top_k=2)
    by_engine = headstart.predict(image_run, items, top_k=2, engine="onnx")
    by_file = headstart.predict(image_run / "onnx" / "model.onnx", items, top_k=2)
    assert [r["label"] for r in by_engine] == [r["label"] for r in by_torch] == [r["label"] for r in by_file]
    assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(by_torch, by_file, strict=True)) <= 1e-4


def test_static_int8_is_quantized_and_reports_the_accuracy_change(image_run, image_folder):
    report = headstart.export(image_run, quantize="int8", data=image_folder)
    assert report.path.name == "model.int8.onnx" and report.quantization == "int8 static"
    ops = {node.op_type for node in onnx.load(str(report.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert report.accuracy["n_examples"] == 36
    assert 0 <= report.accuracy["int8"] <= 1 and report.accuracy["fp32"] >= 0.8
    assert report.quantized_parity.n_examples == 36


def test_text_graph_takes_token_ids_and_ships_its_tokenizer(text_run, text_csv):
    report = headstart.export(text_run, data=text_csv)
    folder = report.path.parent
    assert (folder / "tokenizer.json").is_file()
    assert report.parity.max_abs_diff <= 1e-4
    assert [i.name for i in onnx.load(str(report.path)).graph.input] == ["input_ids", "attention_mask"]
    texts = ["a cat", "grilled cheese sandwich with a long tail of extra words"]
    model = headstart.load(text_run)
    assert np.abs(OnnxModel(report.path).predict_proba(texts) - model.predict_proba(texts)).max() <= 1e-4
    quantized = headstart.export(text_run, quantize="int8", data=text_csv)
    assert quantized.quantization == "int8 dynamic"
    assert quantized.accuracy["n_examples"] == 20


def test_a_graph_off_by_more_than_the_tolerance_is_refused_and_not_written(image_run, monkeypatch):
    monkeypatch.setattr(export_onnx_module, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differs from the PyTorch model"):
        headstart.export(image_run)
    assert not (image_run / "onnx" / "model.onnx").exists()


def test_export_refuses_what_it_cannot_do(image_run, tmp_path, text_csv):
    with pytest.raises(ConfigError, match="onnx"):
        headstart.export(image_run, format="tflite")
    with pytest.raises(ConfigError, match="int8"):
        headstart.export(image_run, quantize="int4")
    headstart.export(image_run)
    with pytest.raises(OutputExistsError, match="force=True"):
        headstart.export(image_run)
    headstart.fit(text_csv, backbone="test-tiny-text", out=tmp_path / "custom", progress=False)
    with pytest.raises(ExportError, match="supports timm image backbones"):
        headstart.export(tmp_path / "custom")


def test_predict_on_a_folder_without_an_export_or_a_foreign_graph_says_what_to_do(image_run, tmp_path):
    with pytest.raises(ModelFileError, match="headstart export"):
        headstart.predict(image_run, ["x"], engine="onnx")
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(ModelFileError, match="not exported by headstart"):
        OnnxModel(foreign)


def test_cli_export_prints_the_parity_check(image_run):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["export", str(image_run)])
    assert result.exit_code == 0, result.output
    assert "parity fp32 vs PyTorch" in result.output and "top-1 agreement 100.0%" in result.output


@pytest.mark.e2e
def test_efficientnet_lite0_exports_within_tolerance(tmp_path):
    from headstart.data import load_dataset, sample_per_class

    splits = load_dataset("examples/fashion-mnist-mini")
    model = headstart.fit(sample_per_class(splits.train, 5, seed=0), backbone="efficientnet_lite0", progress=False,
                          test_fraction=0, out=tmp_path / "run")
    assert model.metrics["data"]["n_train"] == 50
    report = headstart.export(tmp_path / "run", data="examples/fashion-mnist-mini")
    assert report.parity.n_examples == 64
    assert report.parity.max_abs_diff <= 1e-4 and report.parity.top1_agreement == 1.0
