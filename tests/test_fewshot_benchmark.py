"""The few-shot benchmark's summary: ratios paired by seed, head-time ratios, variants kept out of the table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fewshot():
    spec = importlib.util.spec_from_file_location("fewshot", ROOT / "benchmarks" / "fewshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(method: str, seed: int, accuracy: float, cpu: float, head: float | None = None, task: str = "fashion",
         shots: int = 8, n_train: int = 80, **extra) -> dict:
    row = {"task": task, "shots": shots, "seed": seed, "method": method, "accuracy": accuracy, "seconds": 2 * cpu,
           "cpu_seconds": cpu, "n_train": n_train, **extra}
    return row | ({"head_seconds": head, "head_cpu_seconds": head} if head is not None else {})


def test_prototypes_are_paired_with_linear_by_seed_including_the_head_time(fewshot) -> None:
    rows = [_row("linear", 0, 0.75, 20.0, 2.0), _row("linear", 1, 0.77, 30.0, 4.0),
            _row("prototypes", 0, 0.70, 10.0, 0.02), _row("prototypes", 1, 0.72, 15.0, 0.08),
            _row("prototypes", 2, 0.74, 99.0, 9.0)]  # seed 2 has no linear run to pair with
    table = fewshot.readme_table(fewshot.summary(rows)["groups"], [])
    prototypes = next(row for row in table["rows"] if "prototypes" in row[2])
    assert prototypes[3] == 3 and prototypes[-1] == "0.50 / 0.50 / 0.015 × linear"


def test_variants_stay_out_of_the_table_and_a_short_class_is_named(fewshot) -> None:
    rows = [_row("contrastive", 0, 0.36, 80.0, task="verb", shots=64, n_train=927),
            _row("contrastive", 0, 0.30, 80.0, task="verb", shots=64, n_train=927, settings={"head": "prototypes"})]
    assert fewshot.row_key(rows[0]) != fewshot.row_key(rows[1])
    groups = fewshot.summary(rows)["groups"]
    table = fewshot.readme_table(groups, [])
    assert [row[1:5] for row in table["rows"]] == [["64 (verb.weather: 31)", "headstart `contrastive`", 1, "36.0"]]
    assert len(fewshot.variants_table(groups)) == 2
