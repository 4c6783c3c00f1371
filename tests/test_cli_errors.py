"""The README's promise, through the real entry point: a user mistake prints one clear line and exits with code 2,
no traceback; the user's own strings (paths, labels, --out) are printed as written, never read as rich markup or
terminal codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import training_support  # noqa: F401  (registers the test-tiny-text backbone)
from conftest import write_image_folder
from headstart.cli import main
from headstart.cli.app import plain, shown

MARKUP_CLASSES = ("[/]close", "[bold]loud", "\x1b[31mred")


def headstart(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: object
              ) -> tuple[int, str, str]:
    """Run ``headstart ARGS`` as the console script does; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["headstart", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


def assert_user_error(result: tuple[int, str, str], *phrases: str) -> str:
    """Exit code 2 and one line on stderr starting with ``error:`` that holds every phrase; returns that line."""
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for phrase in phrases:
        assert phrase in lines[0]
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def text_rows(n: int = 10) -> str:
    return "".join(f"text {i} {'xxxx' if i % 2 else 'zzzz'},{'pos' if i % 2 else 'neg'}\n" for i in range(n))


# --- markup, terminal codes ------------------------------------------------------------------------------

def test_shown_keeps_brackets_literal_and_drops_terminal_codes():
    assert plain("a\x1b[31mred\x1b[0m\x1b]0;title\x07\rz\tb") == "aredz\tb"
    assert shown("[/]x[bold]") == "\\[/]x\\[bold]"


@pytest.mark.parametrize("name", ["no[/]where", "no[/i]where", "no[bold]where", "run/:fire:"])
def test_markup_in_a_missing_data_path_is_printed_as_written(tmp_path, monkeypatch, capsys, name):
    result = headstart(monkeypatch, capsys, "fit", tmp_path / name, "--out", tmp_path / "o")
    assert_user_error(result, f"{tmp_path / name} does not exist")


@pytest.fixture
def text_model(tmp_path, monkeypatch, capsys):
    """A text model fitted through the CLI on labels and an --out that hold markup and terminal codes; returns
    (model folder, its training table, fit's stdout)."""
    rows = [f"text {i} {'xxxx' * (i % 3 + 1)},{MARKUP_CLASSES[i % 3]}" for i in range(18)]
    table = write(tmp_path / "texts.csv", "text,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run[/]"
    code, stdout, err = headstart(monkeypatch, capsys, "fit", table, "--backbone", "test-tiny-text", "--out", out,
                                  "--strategy", "linear", "--set", "c=1", "-q")
    assert code == 0, err
    return out, table, stdout


def test_markup_in_out_and_labels_is_printed_literally(text_model, monkeypatch, capsys):
    out, table, fit_output = text_model
    assert f"model:  {out}/" in fit_output and "Traceback" not in fit_output

    code, stdout, err = headstart(monkeypatch, capsys, "evaluate", out, table, "-q")
    assert code == 0, err
    for name in MARKUP_CLASSES:
        assert plain(name) in stdout
    assert "\x1b" not in stdout

    code, stdout, err = headstart(monkeypatch, capsys, "predict", out, "text 1 xxxx", "[/]", "--top-k", "3", "-q")
    assert code == 0, err
    assert "[bold]loud" in stdout and "[/]close" in stdout and "\x1b" not in stdout


def test_evaluation_data_lacking_a_class_prints_dashes(text_model, tmp_path, monkeypatch, capsys):
    out, _, _ = text_model
    table = write(tmp_path / "partial.csv", f"text,label\nxxxx,{MARKUP_CLASSES[1]}\nyyyy,{MARKUP_CLASSES[2]}\n")
    code, stdout, err = headstart(monkeypatch, capsys, "evaluate", out, table, "-q")
    assert code == 0, err
    cells = [c.strip() for c in next(line for line in stdout.splitlines() if "close" in line).split("│")]
    assert cells[1:] == ["[/]close", cells[2], "–", cells[4], "0", ""]  # recall undefined, support 0


@pytest.fixture
def image_model(tmp_path, tiny_timm_ref, monkeypatch, capsys):
    """An image model fitted through the CLI from a folder holding a truncated JPEG, which stops the run unless
    --skip-bad-images skips it; returns (model folder, data folder)."""
    data = write_image_folder(tmp_path / "images", per_class=6, classes=("[bold]loud", "plain"))
    pixels = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "whole.jpg", quality=90)
    whole = (tmp_path / "whole.jpg").read_bytes()
    (data / "plain" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "images-run"
    result = headstart(monkeypatch, capsys, "fit", data, "--backbone", tiny_timm_ref, "--out", out, "-q")
    assert_user_error(result, "cannot be used", "truncated.jpg", "--skip-bad-files")
    code, _, err = headstart(monkeypatch, capsys, "fit", data, "--backbone", tiny_timm_ref, "--out", out,
                             "--skip-bad-images", "-q")
    assert code == 0, err
    return out, data


def test_image_paths_outside_the_table_need_the_flag(image_model, tmp_path, monkeypatch, capsys):
    out, data = image_model
    rows = [f"{path},{path.parent.name}" for path in sorted(data.rglob("*.png"))[::2]]
    table = write(tmp_path / "tables" / "eval.csv", "path,label\n" + "\n".join(rows) + "\n")
    assert_user_error(headstart(monkeypatch, capsys, "evaluate", out, table, "-q"), "lead outside",
                      "--allow-outside-paths")
    code, stdout, err = headstart(monkeypatch, capsys, "evaluate", out, table, "--allow-outside-paths", "--json")
    assert code == 0, err
    assert json.loads(stdout)["n_examples"] == len(rows)
    code, stdout, err = headstart(monkeypatch, capsys, "predict", out, data / "[bold]loud", "-q")
    assert code == 0, err
    assert "[bold]loud" in stdout


# --- data mistakes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "phrases"), [
    ("text;label\na;x\nb;y\n", ["looks semicolon-delimited", "save it as comma-separated CSV or as TSV"]),
    ("text,label\na,1\nb,1.0\nc,01\nd,2\n", ["same number", "'1' (line 2) = '1.0' (line 3) = '01' (line 4)"]),
    ("text,label\na,x\nb,nan\nc,y\nd,y\n", ["look like missing values at line 3 ('nan')"]),
    ("text,label\n" + "".join(f"t{i},id{i}\n" for i in range(2000)), ["probably an ID", "--label-column"]),
    (",".join(f"c{i}" for i in range(20_000)) + "\n" + ",".join("0" * 20_000) + "\n",
     ["no label column", "and 19990 more"]),
])
def test_table_mistakes_are_one_short_line(tmp_path, monkeypatch, capsys, content, phrases):
    table = write(tmp_path / "d.csv", content)
    line = assert_user_error(headstart(monkeypatch, capsys, "fit", table, "--out", tmp_path / "o", "-q"), *phrases)
    assert len(line) < 1000


def test_nested_jsonl_values_are_one_line_naming_column_and_line(tmp_path, monkeypatch, capsys):
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": {"name": "x"}}, {"text": "c", "label": "y"}]
    table = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    assert_user_error(headstart(monkeypatch, capsys, "fit", table, "--out", tmp_path / "o"),
                      "column 'label'", "line 2 (dict)")


def test_a_200k_character_field_trains(tmp_path, monkeypatch, capsys):
    table = write(tmp_path / "d.csv", f'text,label\n"{"long " * 40_000}",neg\n{text_rows(20)}')
    code, stdout, err = headstart(monkeypatch, capsys, "fit", table, "--backbone", "test-tiny-text",
                                  "--out", tmp_path / "run", "--strategy", "linear", "--set", "c=1",
                                  "-q")
    assert code == 0, err
    assert "accuracy" in stdout  # cross-validated: 21 rows are too few to hold out a test split


def test_an_engine_the_backbone_cannot_use_is_one_line(tmp_path, monkeypatch, capsys, tiny_timm_ref):
    table = write(tmp_path / "d.csv", f"text,label\n{text_rows(20)}")
    result = headstart(monkeypatch, capsys, "fit", table, "--backbone", "test-tiny-text", "--engine", "int8",
                       "--test-fraction", "0", "--out", tmp_path / "o")
    assert_user_error(result, "runs in PyTorch only", "--engine torch")
    folder = write_image_folder(tmp_path / "images")
    result = headstart(monkeypatch, capsys, "rank", folder, "--backbones", tiny_timm_ref, "--engine", "fast")
    assert_user_error(result, "--engine fast is not an extraction engine")


def test_class_weight_needs_the_linear_strategy_now_that_auto_is_the_default(tmp_path, monkeypatch, capsys):
    result = headstart(monkeypatch, capsys, "fit", tmp_path, "--class-weight", "balanced", "--out", tmp_path / "m")
    assert_user_error(result, "--class-weight", "add --strategy linear")
