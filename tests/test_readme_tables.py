"""The README's result tables are the ones the benchmarks' JSON files hold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_the_benchmark_results():
    _, changed = _module().render((ROOT / "README.md").read_text())
    assert changed == [], f"regenerate with: python benchmarks/readme_tables.py ({changed})"


def test_a_stale_table_is_found_and_rewritten(tmp_path):
    module = _module()
    (tmp_path / "speed.json").write_text('{"readme_table": {"columns": ["a", "b"], "rows": [[1, "2 ± 0"]]}}')
    readme = "intro\n<!-- table: speed -->\n| old |\n<!-- /table -->\nend\n"
    updated, changed = module.render(readme, tmp_path)
    assert changed == ["speed"]
    assert "| a | b |\n| --- | --- |\n| 1 | 2 ± 0 |\n" in updated
    assert module.render(updated, tmp_path)[1] == []


def test_a_ragged_row_is_refused():
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        _module().markdown_table({"columns": ["a", "b"], "rows": [[1, 2, 3]]})
