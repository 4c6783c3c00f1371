"""Python and notebook ergonomics: short reprs, small HTML tables, DataFrames, predict on in-memory inputs,
messages in the caller's words; and the CLI's version, strategy listing and CSV predictions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import headstart
from headstart.cli import app
from headstart.data import Dataset, load_dataset
from headstart.display import MAX_ROWS
from headstart.errors import DataError, OutputExistsError, command_line_wording, option
from headstart.studies import CompareResult, RunRecord
from headstart.studies.statistics import summarise
from headstart.transferability import BackboneScores, RankResult
from training_support import TinyTextBackbone, sentiment_texts


@pytest.fixture
def image_model(image_folder, tiny_backbone):
    return headstart.fit(image_folder, backbone=tiny_backbone, progress=False)


def test_model_repr_and_html_name_the_strategy_backbone_classes_and_accuracy(image_model, image_folder,
                                                                            tiny_timm_ref):
    text = repr(image_model)
    # The fixture's 21 images are too few to hold out a test split: the fit is measured by cross-validation.
    # auto names what it chose (every candidate reaches 100% on these colours, so which one wins is a near tie).
    winner = image_model.strategy_config["winner"]
    assert winner in ("linear", "prototypes", "blend")
    assert text.startswith(f"TransferModel(auto (chose {winner}) on {tiny_timm_ref}, 3 classes: blue, green, red; "
                           "cross-validated accuracy ")
    page = image_model._repr_html_()
    assert "<table>" in page and "cross-validated accuracy" in page and "no (frozen)" in page
    tested = headstart.fit(image_folder, backbone=image_model.backbone, progress=False, test_fraction=0.3)
    assert "; test accuracy " in repr(tested) and "test accuracy" in tested._repr_html_()


def test_a_dataset_shows_its_size_and_at_most_a_few_classes():
    names = [f"class{i:02d}" for i in range(30)]
    data = Dataset([f"text {i}" for i in range(60)], np.arange(60) % 30, names, "text", "notes.csv")
    assert repr(data) == ("Dataset(text, 60 examples, 30 classes: class00, class01, class02, class03, class04 ... "
                          "and 25 more; source 'notes.csv')")
    page = data._repr_html_()
    assert page.count("<tr>") == 1 + MAX_ROWS + 1 and "… and 20 more" in page


def test_data_splits_show_each_split(image_folder):
    splits = load_dataset(image_folder)
    assert repr(splits).startswith("DataSplits(image, train 36; 3 classes: blue, green, red;")
    assert "<th>train</th>" in splits._repr_html_()


def _rank_result() -> RankResult:
    rows = [BackboneScores(f"net{i}", 8, {"logme": 1.0 - i / 20, "knn": 0.5}, {"logme": 0.1}, 0.2) for i in range(12)]
    return RankResult("data", "image", 100, 4, "logme", rows)


def test_rank_result_repr_html_and_frame():
    result = _rank_result()
    assert repr(result) == ("RankResult(best 'net0' by logme among 12 backbones, 100 image examples of "
                            "4 classes)")
    assert "… and 2 more" in result._repr_html_()
    frame = result.to_frame()
    assert list(frame.columns) == ["backbone", "feature_dim", "logme", "knn", "seconds"]
    assert frame.backbone.tolist()[:2] == ["net0", "net1"] and len(frame) == 12


def test_compare_result_repr_html_and_frame():
    records = [RunRecord(name, size, seed, int(size) * 3, accuracy, {"macro_f1": accuracy}, 1.0)
               for name, accuracy in (("linear", 0.8), ("scratch", 0.5)) for size in (5.0, 10.0) for seed in (0, 1)]
    result = CompareResult("data", "net", ["linear", "scratch"], [5.0, 10.0], 40, "test split", records,
                           summary=summarise(records), seconds=12.3)
    assert repr(result) == "CompareResult(linear, scratch on net, 2 sizes: 8 runs, 0 skipped, 12 s)"
    assert "80.0% ± 0.0%" in result._repr_html_()
    frame = result.to_frame()
    assert list(frame.columns) == ["strategy", "size", "seed", "n_train", "accuracy", "seconds", "macro_f1"]
    assert frame.groupby("strategy").accuracy.mean().to_dict() == {"linear": 0.8, "scratch": 0.5}


def test_predict_takes_pil_images_arrays_and_single_texts(image_model, image_folder):
    path = sorted((image_folder / "red").glob("*.png"))[0]
    image = Image.open(path).convert("RGB")
    by_path = headstart.predict(image_model, str(path))[0]
    by_image = headstart.predict(image_model, image)[0]
    by_array = headstart.predict(image_model, np.asarray(image)[None])[0]
    assert by_image["label"] == by_array["label"] == by_path["label"]
    assert by_image["confidence"] == pytest.approx(by_path["confidence"], abs=1e-6)
    assert by_image["input"].startswith("<image 0: 24x24>")


def test_a_text_model_reads_a_txt_file_and_says_so_but_predict_refuses_a_path(tmp_path, capsys):
    model = headstart.fit(sentiment_texts(40), backbone=TinyTextBackbone(), progress=False)
    assert len(headstart.predict(model, "a single text")) == 1
    notes = tmp_path / "notes.txt"
    notes.write_text("good film\n\nbad film\n", encoding="utf-8")
    capsys.readouterr()
    assert [r["input"] for r in headstart.predict(model, str(notes), progress=True)] == ["good film", "bad film"]
    assert "notes.txt: 2 texts, one per non-blank line" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"is the path of an existing file.*headstart.predict\(model"):
        model.predict([str(notes)])


def test_messages_name_options_as_the_caller_spells_them(tmp_path, image_folder):
    (tmp_path / "run").mkdir()
    with pytest.raises(OutputExistsError, match=r"pass force=True to replace it, or choose another out=") as error:
        headstart.fit(image_folder, out=tmp_path / "run", progress=False)
    assert "--" not in str(error.value)
    with command_line_wording():
        assert (option("force", True), option("val_fraction", 0), option("strategies", ["a", "b"])) == (
            "--force", "--val-fraction 0", "--strategies a,b")
    assert option("force", True) == "force=True"  # the CLI's wording ends with the block


def test_cli_errors_keep_flags_and_python_wording_returns_after_a_command(tmp_path, image_folder):
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(app, ["fit", str(image_folder), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "--force" in str(result.exception)
    assert option("out", "x") == "out='x'"


def test_version_and_one_strategy():
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output.strip() == f"headstart {headstart.__version__}"
    one = runner.invoke(app, ["strategies", "finetune"], terminal_width=200).output
    assert "The finetune strategy." in one and "weight_decay" in one and "head_epochs" in one
    assert "linear" not in one.split("\n", 1)[1]


def test_settings_shared_by_strategies_are_listed_once():
    output = CliRunner().invoke(app, ["strategies"], terminal_width=200).output
    assert "Settings that " in output and output.count("weight_decay") == 1
    assert "The linear strategy." in output and "It also takes the shared settings above." in output


def test_predict_csv_honours_top_k_with_newline_endings(tmp_path, image_folder, tiny_backbone):
    headstart.fit(image_folder, backbone=tiny_backbone, out=tmp_path / "run", progress=False)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(image_folder / "red"), "--format",
                                      "csv", "--top-k", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stdout
    lines = result.stdout.split("\n")
    assert lines[0] == "input,label,confidence,label_2,confidence_2" and len(lines) == 12 + 2
    assert all(len(line.split(",")) == 5 for line in lines[1:-1])
