import json

import pytest
from typer.testing import CliRunner

from headstart.cli import app, main, parse_settings
from headstart.errors import ConfigError

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_backbones_lists_the_bundled_defaults_as_offline():
    result = run("backbones")
    assert result.exit_code == 0
    for name in ("efficientnet_lite0", "minilm", "glove", "speech_embedding", "timm:<name>", "hf:<name>",
                 "ckpt:<name>"):
        assert name in result.output


def test_fit_evaluate_predict_round_trip(tmp_path, image_folder, tiny_timm_ref):
    out = tmp_path / "run"
    result = run("fit", image_folder, "--backbone", tiny_timm_ref, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "report.html" in result.output

    result = run("evaluate", out, image_folder, "--json")
    assert result.exit_code == 0
    # Progress goes to stderr (plain lines off a terminal); stdout holds only the JSON.
    assert json.loads(result.stdout)["n_examples"] == 36

    result = run("predict", out, image_folder / "green", "--format", "json", "-q")
    rows = json.loads(result.output)
    assert len(rows) == 12 and {"input", "label", "confidence"} <= rows[0].keys()

    result = run("predict", out, image_folder / "green", "--format", "csv", "-q")
    assert result.output.splitlines()[0] == "input,label,confidence"
    assert len(result.output.splitlines()) == 13


def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["headstart", "fit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as stop:
        main()
    error = capsys.readouterr().err
    assert stop.value.code == 2
    assert error.startswith("error:") and "missing" in error and len(error.strip().splitlines()) == 1
    assert "Traceback" not in error


def test_existing_output_folder_needs_force(tmp_path, image_folder, tiny_timm_ref, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.setattr("sys.argv", ["headstart", "fit", str(image_folder), "--out", str(out),
                                     "--backbone", tiny_timm_ref, "--quiet"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "--force" in capsys.readouterr().err


def test_set_pairs_are_parsed_and_bad_syntax_is_a_user_error():
    assert parse_settings(["c=0.5", "max-iter=10", "c_values=none"]) == {"c": "0.5", "max_iter": "10",
                                                                        "c_values": None}
    with pytest.raises(ConfigError, match="key=value"):
        parse_settings(["oops"])


def test_ctrl_c_during_fit_prints_the_checkpoint_and_the_resume_command(tmp_path, capsys, monkeypatch):
    from headstart import api

    out = tmp_path / "run"
    (tmp_path / "run.partial" / "checkpoint").mkdir(parents=True)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "fit", interrupted)
    monkeypatch.setattr("sys.argv", ["headstart", "fit", "my data", "--out", str(out)])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 130
    assert f"{tmp_path / 'run.partial' / 'checkpoint'}/" in err
    assert f"headstart fit 'my data' --out {out}" in err
