import json

import pytest

from headstart.errors import OutputExistsError
from headstart.io import check_output, publish, work_dir, write_json


def test_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(OutputExistsError, match="--force"):
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
    (out / "old.txt").write_text("old")
    partial = work_dir(out)
    (partial / "new.txt").write_text("new")
    with pytest.raises(OutputExistsError):
        publish(partial, out, force=False)
    assert (out / "old.txt").exists() and partial.exists()
    publish(partial, out, force=True)
    assert (out / "new.txt").read_text() == "new"
    assert not (out / "old.txt").exists()
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
