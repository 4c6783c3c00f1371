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
    result = run("fit", image_folder, "--backbone", tiny_timm_ref, "--out", out, "--quiet", "--test-fraction", "0.2")
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


def run_main(monkeypatch, capsys, *args):
    """Run the real entry point (errors become exit code 2); returns (exit code, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["headstart", *[str(a) for a in args]])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(root):
    """Every file and folder under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


WRITING_COMMANDS = {
    "fit": ["fit", "{data}", "--backbone", "{ref}", "-q"],
    "rank": ["rank", "{data}", "--backbones", "{ref}", "-q"],
    "compare": ["compare", "{data}", "--backbone", "{ref}", "--strategies", "linear", "--shots", "2", "--seeds",
                "1", "-q"],
}


@pytest.mark.parametrize("command", sorted(WRITING_COMMANDS))
def test_no_command_that_writes_touches_the_data_even_with_force(tmp_path, tiny_timm_ref, command, monkeypatch,
                                                                 capsys):
    from conftest import write_image_folder

    data = write_image_folder(tmp_path / "project" / "data", per_class=3)
    csv_file = tmp_path / "project" / "list.csv"
    csv_file.write_text("path,label\n" + "".join(f"data/{c}/{c}_{i:03d}.png,{c}\n" for c in ("red", "green", "blue")
                                                  for i in range(3)))
    before = snapshot(tmp_path)
    args = [a.format(data=data, ref=tiny_timm_ref) for a in WRITING_COMMANDS[command]]
    csv_args = [a.format(data=csv_file, ref=tiny_timm_ref) for a in WRITING_COMMANDS[command]]
    attempts = [(args, data), (args, data.parent), (args, data / "run"), (args, data / "red"),
                (csv_args, data), (csv_args, data / "red"), (csv_args, csv_file)]
    for attempt, out in attempts:
        code, _, error = run_main(monkeypatch, capsys, *attempt, "--out", out, "--force")
        assert code == 2, (attempt, out, error)
        assert "error:" in error and "Traceback" not in error
        assert snapshot(tmp_path) == before, (attempt, out)


def test_out_at_the_current_folder_or_under_a_file_is_one_clear_line(tmp_path, image_folder, tiny_timm_ref,
                                                                      monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    for out in (".", tmp_path / "notes.txt" / "run"):
        code, _, error = run_main(monkeypatch, capsys, "fit", image_folder, "--backbone", tiny_timm_ref, "--out",
                                  out, "--force", "-q")
        assert code == 2 and len(error.strip().splitlines()) == 1, error
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_a_second_fit_on_the_same_out_stops_before_any_work(tmp_path, image_folder, tiny_timm_ref, monkeypatch,
                                                            capsys):
    from headstart.io import WorkFolder

    with WorkFolder(tmp_path / "run", kind="model", force=False):
        code, _, error = run_main(monkeypatch, capsys, "fit", image_folder, "--backbone", tiny_timm_ref, "--out",
                                  tmp_path / "run", "-q")
    assert code == 2 and "in use by another headstart run" in error
    assert not (tmp_path / "run").exists()


def test_ctrl_c_during_fit_exits_130_saying_where_the_checkpoint_is_and_how_to_resume(tmp_path, image_folder,
                                                                                      monkeypatch, capsys):
    import headstart.api

    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        checkpoint = tmp_path / "run.partial" / "checkpoint"
        checkpoint.mkdir(parents=True)
        (checkpoint / "state.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(headstart.api, "fit", interrupted)
    code, _, error = run_main(monkeypatch, capsys, "fit", image_folder, "--out", out, "--strategy", "finetune")
    assert code == 130
    assert len(error.strip().splitlines()) == 1
    assert f"{tmp_path / 'run.partial' / 'checkpoint'}" in error
    assert f"resume with: headstart fit {image_folder} --out {out} --strategy finetune" in error
