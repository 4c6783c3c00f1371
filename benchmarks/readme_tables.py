"""Regenerate the README's result tables from ``benchmarks/results/*.json``, so they cannot go stale.

A benchmark stores the table it wants shown under the key ``"readme_table"`` of its JSON::

    {"readme_table": {"columns": ["strategy", "accuracy"], "rows": [["linear", "85.4 ± 0.3"]]}, ...}

and the README marks where it goes::

    <!-- table: strategies -->
    ...generated, never edited by hand...
    <!-- /table -->

``python benchmarks/readme_tables.py`` rewrites every marked block; ``--check`` exits 1 when the README is
out of date (the test suite runs it), naming the tables to regenerate.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)


def markdown_table(table: dict) -> str:
    """Render ``{"columns": [...], "rows": [[...], ...]}`` as a GitHub markdown table (one line per row)."""
    columns = [str(c) for c in table["columns"]]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in table["rows"]:
        if len(row) != len(columns):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(columns)} columns")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def render(readme: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """Return the README with every marked table regenerated, and the names of the tables that changed."""
    changed: list[str] = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        path = results / f"{name}.json"
        if not path.exists():
            raise SystemExit(f"README marks a table '{name}' but {path} does not exist: run its benchmark first")
        table = json.loads(path.read_text()).get("readme_table")
        if table is None:
            raise SystemExit(f"{path} has no 'readme_table' key: the benchmark must write one")
        body = markdown_table(table)
        if body != match["body"]:
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, readme), changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables; exit 1 if any")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    text = args.readme.read_text()
    updated, changed = render(text)
    if args.check:
        if changed:
            print(f"README tables out of date: {', '.join(changed)}; run python benchmarks/readme_tables.py")
            return 1
        return 0
    args.readme.write_text(updated)
    print(f"regenerated {len(changed)} table(s): {', '.join(changed) or 'none changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
