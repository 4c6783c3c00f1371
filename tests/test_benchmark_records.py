"""The benchmarks' shared result record: the machine fields, the printed table and the atomic results file."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def records(monkeypatch):
    # The benchmarks import it as a top-level module from their own folder, as `python benchmarks/x.py` does.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.delitem(sys.modules, "records", raising=False)
    return importlib.import_module("records")


def test_machine_record_says_command_load_machine_and_versions(records, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/speed.py", "--rounds", "2"])
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    record = records.machine_record(["numpy", "pytest"], load_before=(1.5, 1.0, 0.5))
    assert record["command"] == f"{Path(sys.executable).name} benchmarks/speed.py --rounds 2"
    assert record["load_average_before"] == [1.5, 1.0, 0.5] and len(record["load_average_after"]) == 3
    assert record["threads"] == "3"  # the environment's setting when the caller does not say
    assert set(record["versions"]) == {"numpy", "pytest"}
    assert {"date", "cpus", "machine", "platform", "python"} <= set(record)
    json.dumps(record)  # every field is plain JSON


def test_machine_record_keeps_a_script_s_older_names(records):
    record = records.machine_record(["pytest"], load_before=(1.0, 1.0, 1.0), threads=2,
                                    names={**records.LOADAVG_NAMES, "threads": "torch_threads"}, flat_versions=True)
    assert {"loadavg_before", "loadavg_after", "cpu_count", "torch_threads", "pytest"} <= set(record)
    assert not {"load_average_before", "load_average_after", "cpus", "threads"} & set(record)
    assert record["torch_threads"] == 2 and record["pytest"] == record["versions"]["pytest"]


def test_without_a_load_before_only_the_load_after_is_recorded(records):
    record = records.machine_record(names=records.SHORT_LOAD_NAMES)
    assert "load_after" in record and "load_before" not in record and record["versions"] == {}


def test_write_result_round_trips_and_leaves_no_temporary_file(records, tmp_path):
    path = tmp_path / "results" / "speed.json"  # the folder does not exist yet
    records.write_result(path, {"rows": [[1, "2 ± 0"]], "data": tmp_path / "data"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"rows": [[1, "2 ± 0"]], "data": str(tmp_path / "data")}
    assert path.read_text(encoding="utf-8").endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["speed.json"]


def test_a_failed_write_keeps_the_previous_results(records, tmp_path, monkeypatch):
    path = tmp_path / "speed.json"
    records.write_result(path, {"run": 1})

    def refuse(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        records.write_result(path, {"run": 2})
    assert json.loads(path.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["speed.json"]


def test_print_table_prints_the_readme_markdown(records, capsys):
    records.print_table(**{"columns": ["engine", "items/s"], "rows": [["onnx", "12.5 ± 0.3"], ["eager", 9]]})
    assert capsys.readouterr().out == "\n| engine | items/s |\n| --- | --- |\n| onnx | 12.5 ± 0.3 |\n| eager | 9 |\n"
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        records.print_table(["a", "b"], [["only one"]])
