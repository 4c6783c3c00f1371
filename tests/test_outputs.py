"""Output folders: checked before any work, locked while written, replaced only when headstart wrote them."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from headstart.errors import OutputExistsError, OutputLockedError, OutputPathError
from headstart.io import (
    OUTPUT_MARKER,
    WorkFolder,
    check_output,
    partial_path,
    publish,
    write_bytes,
    write_json,
)
from headstart.locks import LOCK_FILE


def test_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(OutputExistsError, match="force=True"):
        check_output(out, force=False)
    assert check_output(out, force=True) == out


def test_output_that_is_a_file_is_refused_even_with_force(tmp_path):
    target = tmp_path / "run"
    target.write_text("mine")
    with pytest.raises(OutputExistsError, match="is a file"):
        check_output(target, force=True)
    assert target.read_text() == "mine"


def test_publish_replaces_only_with_force_and_keeps_old_until_new_is_in_place(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    partial = partial_path(out)
    partial.mkdir()
    (partial / "new.txt").write_text("new")
    with pytest.raises(OutputExistsError):
        publish(partial, out, force=False)
    assert (out / "metrics.json").exists() and partial.exists()
    publish(partial, out, force=True)
    assert (out / "new.txt").read_text() == "new"
    assert not (out / "metrics.json").exists()
    assert not partial.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_write_json_is_atomic_and_leaves_no_temporary_files(tmp_path):
    import numpy as np

    path = tmp_path / "m.json"
    write_json(path, {"a": np.float32(0.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2]}
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["a"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_written_files_get_the_umask_permissions_not_mkstemps_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "report.html", b"<html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644


def test_published_folder_carries_a_marker_and_force_replaces_it(tmp_path):
    out = tmp_path / "run"
    with WorkFolder(out, kind="model", force=False) as work:
        (work.path / "model.safetensors").write_bytes(b"1")
        work.publish()
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker["kind"] == "model"
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "model.safetensors"]
    (out / "notes.txt").write_text("mine, but inside a headstart output")
    with WorkFolder(out, kind="model", force=True) as work:
        (work.path / "model.safetensors").write_bytes(b"2")
        work.publish()
    assert (out / "model.safetensors").read_bytes() == b"2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_force_never_replaces_a_folder_headstart_did_not_write(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(OutputPathError, match="only folders headstart wrote"):
        check_output(photos, force=True)
    # A folder from before the marker existed, holding only what headstart writes, is still recognised.
    old_run = tmp_path / "old-run"
    old_run.mkdir()
    for name in ("config.json", "model.safetensors", "metrics.json", "report.html"):
        (old_run / name).write_text("{}")
    assert check_output(old_run, force=True) == old_run


@pytest.mark.parametrize("where", ["data", "parent", "inside", "dotted"])
def test_out_touching_the_data_is_refused_even_with_force(tmp_path, where):
    data = tmp_path / "project" / "data"
    (data / "cat").mkdir(parents=True)
    (data / OUTPUT_MARKER).write_text("{}")  # even a forged marker does not make the data replaceable
    out = {"data": data, "parent": data.parent, "inside": data / "run", "dotted": data / "cat" / ".."}[where]
    with pytest.raises(OutputPathError, match="data"):
        check_output(out, force=True, protected=[data])


def test_out_that_is_the_current_folder_or_under_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputPathError, match="current folder"):
        check_output(".", force=True)
    with pytest.raises(OutputPathError, match="current folder"):
        check_output("..", force=True)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputPathError, match="which is a file"):
        check_output(tmp_path / "notes.txt" / "run", force=False)


@pytest.fixture
def read_only_place(tmp_path):
    """A folder this process cannot create anything in (root ignores file modes, so /sys then)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
        yield folder
        folder.chmod(0o755)
    elif Path("/sys").is_dir():
        yield Path("/sys")
    else:
        pytest.skip("no read-only place for root")


def test_read_only_output_location_is_one_clear_error(read_only_place):
    with pytest.raises(OutputPathError, match="cannot (write|create)"):
        WorkFolder(read_only_place / "run", kind="model", force=False)


def test_a_failed_run_leaves_no_empty_working_folder_behind(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), WorkFolder(out, kind="model", force=False):
        raise RuntimeError("data error")
    assert list(tmp_path.iterdir()) == []


HOLD_LOCK = """
import sys
from headstart.io import WorkFolder
work = WorkFolder(sys.argv[1], kind="model", force=False)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def lock_holder(tmp_path):
    """A second live process holding the lock of ``tmp_path / 'run'`` until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_second_run_on_the_same_out_fails_fast_naming_the_other_process(tmp_path, lock_holder):
    with pytest.raises(OutputLockedError, match=f"pid {lock_holder.pid}") as error:
        WorkFolder(tmp_path / "run", kind="model", force=False)
    assert "run.partial" in str(error.value)
    lock_holder.kill()  # a killed run's lock is stale: the next run takes the folder over (and resumes)
    lock_holder.wait()
    assert json.loads((tmp_path / "run.partial" / LOCK_FILE).read_text())["pid"] == lock_holder.pid
    with WorkFolder(tmp_path / "run", kind="model", force=False) as work:
        assert json.loads((work.path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_lock_file_naming_a_live_process_is_respected_even_without_a_file_lock(tmp_path):
    import socket

    partial = tmp_path / "run.partial"
    partial.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (partial / LOCK_FILE).write_text(json.dumps({"pid": live.pid, "host": socket.gethostname()}))
        with pytest.raises(OutputLockedError, match=f"pid {live.pid}"):
            WorkFolder(tmp_path / "run", kind="model", force=False)
    finally:
        live.kill()
        live.wait()
    with WorkFolder(tmp_path / "run", kind="model", force=False):
        pass
