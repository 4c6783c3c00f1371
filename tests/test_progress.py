"""Progress display: plain lines when stderr is not a terminal, at a bounded rate."""

import io

import pytest

from headstart import progress
from headstart.progress import ProgressTask, display_kind, status, track


def test_a_pipe_gets_plain_lines_first_and_last_with_counts():
    stream = io.StringIO()
    task = ProgressTask("features train (tiny)", 50, unit="batches", stream=stream, interval=3600)
    for _ in range(50):
        task.advance(loss=0.5)
    task.close()
    lines = stream.getvalue().splitlines()
    assert display_kind(stream) == "lines"
    # The first line at once, then none until the interval has passed, then the last at 100%.
    assert len(lines) == 2
    assert lines[0].startswith("features train (tiny): 0/50 batches (0%)")
    assert lines[1].startswith("features train (tiny): 50/50 batches (100%)")
    assert "batches/s" in lines[1] and "done in" in lines[1] and "loss 0.5000" in lines[1]


def test_plain_lines_come_once_per_interval_with_an_eta(monkeypatch):
    clock = iter(range(0, 1000, 4))  # every call to monotonic() is 4 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    task = ProgressTask("training head epoch 1/3", 10, unit="steps", stream=stream, interval=10)
    for _ in range(4):
        task.advance()
    task.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # 0%, one after >= 10 s, and where it stopped (4/10) on close
    assert "ETA" in lines[1] and lines[-1].startswith("training head epoch 1/3: 4/10 steps (40%)")


def test_track_is_silent_when_disabled(capsys):
    assert list(track(range(3), total=3, description="x", enabled=False)) == [0, 1, 2]
    with status("exporting backbone to ONNX (once)", enabled=False):
        pass
    assert capsys.readouterr().err == ""


def test_status_writes_one_line_off_a_terminal(capsys):
    with status("exporting backbone to ONNX (once)"):
        pass
    assert capsys.readouterr().err == "exporting backbone to ONNX (once) ...\n"


@pytest.mark.parametrize("label, expected", [("train", "features train ("), ("", "features (")])
def test_feature_progress_names_the_split(tiny_backbone, label, expected):
    assert tiny_backbone.progress_description(label) == f"{expected}{tiny_backbone.ref})"
