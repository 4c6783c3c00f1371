"""The few-shot benchmark's summary: ratios paired by seed, head-time ratios, SetFit runs left out, variants kept
out of the table."""

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
    assert prototypes[3] == 3 and prototypes[-2:] == ["wall 0.50× · CPU 0.50× · head CPU 0.015×", "–"]


def test_setfit_left_out_is_a_line_with_its_steps_and_the_other_rows_say_so(fewshot) -> None:
    rows = [_row("setfit", 0, 0.80, 200.0, task="noun"), _row("linear", 0, 0.70, 20.0, 2.0, task="noun"),
            _row("linear", 0, 0.85, 40.0, 2.0, task="noun", shots=64, n_train=640)]
    summarised = fewshot.summary(rows)
    assert [(m["task"], m["shots"], m["pair_steps"]) for m in summarised["not_run"]] == [("noun", 64, 1600)]
    table = fewshot.readme_table(summarised["groups"], [], summarised["not_run"])
    lines = {(row[1], row[2]): row for row in table["rows"]}
    assert lines["8", "headstart `linear`"][-2:] == ["–", "wall 0.10× · CPU 0.10×"]
    assert lines["8", "SetFit 1.2.0 (defaults)"][-2:] == ["wall 10.00× · CPU 10.00×", "–"]
    assert lines["64", "headstart `linear`"][-1] == "not run"
    # 200 CPU s for 200 steps at 8 per class: 1,600 steps are about 27 CPU minutes
    assert lines["64", "SetFit 1.2.0 (defaults)"][3:5] == [
        0, "not run for lack of CPU time (1,600 pair steps, ≈ 27 CPU min per seed)"]


def test_variants_stay_out_of_the_table_and_a_short_class_is_named(fewshot) -> None:
    rows = [_row("contrastive", 0, 0.36, 80.0, task="verb", shots=64, n_train=927),
            _row("contrastive", 0, 0.30, 80.0, task="verb", shots=64, n_train=927, settings={"head": "prototypes"})]
    assert fewshot.row_key(rows[0]) != fewshot.row_key(rows[1])
    groups = fewshot.summary(rows)["groups"]
    table = fewshot.readme_table(groups, [])
    assert [row[1:5] for row in table["rows"]] == [["64 (verb.weather: 31)", "headstart `contrastive`", 1, "36.0"]]
    assert len(fewshot.variants_table(groups)) == 2
