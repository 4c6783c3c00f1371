"""Learning-curve studies: records, summary, verdicts, time budget, settings routing, CLI and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

import headstart
from headstart.backbones.base import Backbone
from headstart.cli import app
from headstart.errors import ConfigError
from headstart.fitting import fit_splits
from headstart.studies import budget, runner
from headstart.studies.runner import strategy_settings

FAST_SCRATCH = {"scratch.epochs": 1, "scratch.batch_size": 16, "scratch.augment": "off"}


def test_linear_and_scratch_over_two_fractions_and_two_seeds(image_folder: Path, tiny_backbone: Backbone) -> None:
    result = headstart.compare(image_folder, strategies=["linear", "scratch"], fractions=[0.5, 1.0], seeds=2,
                               backbone=tiny_backbone, settings=FAST_SCRATCH)
    assert len(result.records) == 8 and not result.skipped
    assert result.sizes == sorted(result.sizes) and len(result.sizes) == 2
    assert {(r.strategy, r.size) for r in result.records} == {(s, z) for s in ("linear", "scratch")
                                                              for z in result.sizes}
    test_sizes = {r.n_train for r in result.records if r.size == result.sizes[-1]}
    assert test_sizes == {len(headstart.load_dataset(image_folder).train) - result.n_test}
    assert {(row.strategy, row.n_seeds) for row in result.summary} == {("linear", 2), ("scratch", 2)}
    assert [v.strategy for v in result.verdicts] == ["linear"]
    assert len(result.savings) == 1 and len(result.gains) == 2
    assert "hold-out" in result.test_source


def test_without_scratch_there_is_no_verdict_and_a_note_says_why(image_folder: Path,
                                                                 tiny_backbone: Backbone) -> None:
    result = headstart.compare(image_folder, strategies=["linear"], shots=[2, 4], seeds=2, backbone=tiny_backbone)
    assert [r.size for r in result.summary] == [2.0, 4.0]
    assert not result.verdicts and any("add `scratch`" in note for note in result.notes)


def test_time_budget_skips_the_runs_estimated_to_end_past_it(image_folder: Path, tiny_backbone: Backbone,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner's clock advances 10 s per run and stands still otherwise, whatever the machine's speed.
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(runner, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: clock.now))

    def ten_seconds(*args: Any, **kwargs: Any) -> Any:
        model = fit_splits(*args, **kwargs)
        clock.now += 10.0
        return model

    monkeypatch.setattr(runner, "fit_splits", ten_seconds)
    result = headstart.compare(image_folder, strategies=["linear"], fractions=[0.5, 1.0], seeds=2,
                               backbone=tiny_backbone, max_time=25)
    # Both seeds at the smaller size fit (0 + 0 s, then 10 + 10 s); the full size, about twice as many
    # examples per class, is estimated at ~20 s and would end at 40 s.
    assert [(r.size, r.seed, r.seconds) for r in result.records] == [(result.sizes[0], 0, 10.0),
                                                                      (result.sizes[0], 1, 10.0)]
    assert [(s.size, s.seed) for s in result.skipped] == [(result.sizes[1], 0), (result.sizes[1], 1)]
    assert all("20 s of the 25 s budget spent; this run would take ~20 s" in s.reason and "but 5 s are left"
               in s.reason for s in result.skipped)


def test_settings_route_to_the_strategies_that_have_them() -> None:
    routed = strategy_settings(["linear", "scratch"], {"batch_size": 8, "scratch.epochs": 1, "c": 1.0})
    assert routed == {"linear": {"batch_size": 8, "c": 1.0}, "scratch": {"batch_size": 8, "epochs": 1}}
    with pytest.raises(ConfigError, match="none of"):
        strategy_settings(["linear"], {"epochs": 2})
    with pytest.raises(ConfigError, match="not among"):
        strategy_settings(["linear"], {"finetune.epochs": 2})


def test_compare_cli_writes_json_and_report(image_folder: Path, tiny_timm_ref: str, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["compare", str(image_folder), "--strategies", "linear,scratch", "--fractions", "0.5,1", "--seeds",
            "2", "--backbone", tiny_timm_ref, "--out", str(out)]
    for key, value in FAST_SCRATCH.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Test accuracy" in result.output and "linear:" in result.output and "data savings" in result.output
    data = json.loads((out / "compare.json").read_text())
    assert len(data["records"]) == 8 and data["verdicts"][0]["strategy"] == "linear"
    assert data["size_label"] == "examples/class" and data["summary"]
    page = (out / "report.html").read_text()
    assert "Learning curves" in page and "Verdict" in page and "data:image/png;base64," in page


def test_cheap_strategies_run_first_and_each_run_gets_what_is_left_of_the_budget(
        image_folder: Path, tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    from headstart.studies import runner

    budgets: list[tuple[str, float | None]] = []
    measure = runner._measure

    def recording(name, *args, max_time, **kwargs):
        budgets.append((name, max_time))
        return measure(name, *args, max_time=max_time, **kwargs)

    monkeypatch.setattr(runner, "_measure", recording)
    headstart.compare(image_folder, strategies=["scratch", "linear"], fractions=[1.0], seeds=1,
                      backbone=tiny_backbone, settings=FAST_SCRATCH, max_time=600)
    assert [name for name, _ in budgets] == ["linear", "scratch"]
    assert 0 < budgets[1][1] < budgets[0][1] <= 600


def test_a_skipped_run_says_what_it_would_have_cost(image_folder: Path, tiny_backbone: Backbone) -> None:
    from headstart.studies.budget import StudyBudget

    budget = StudyBudget(100.0)
    budget.spent("finetune", 5.0, 80.0)
    skipped = budget.skipped("finetune", 10.0, seed=0)
    assert skipped is not None and "would take ~160 s" in skipped.reason
    assert "took 80 s" in skipped.reason and "s are left" in skipped.reason


def test_a_trained_run_trains_for_what_is_left_less_its_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fine-tuned model is measured after its training budget ends; that time is kept out of its budget.
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    study = budget.StudyBudget(100.0)
    clock.now = 20.0
    assert study.for_training(trained=False) == 80.0
    assert study.for_training(trained=True) == 60.0  # before any trained run: a quarter kept back
    study.spent("finetune", 5.0, 50.0, evaluation=12.0)
    clock.now = 70.0
    assert study.for_training(trained=True) == 18.0  # 30 s left, less the last evaluation's 12 s
    assert budget.StudyBudget(None).for_training(trained=True) is None


def test_every_frozen_feature_run_is_scheduled_before_any_trained_run() -> None:
    from headstart.strategies import get_strategy
    from headstart.studies.runner import _schedule

    chosen = {name: get_strategy(name) for name in ("scratch", "linear", "prototypes")}
    plan = [(size, lambda seed, size=size: f"subset {size}/{seed}") for size in (5.0, 10.0)]
    order = [(names, subset) for names, _, subset, _ in _schedule(chosen, plan, seeds=2)]
    cheap, trained = ["linear", "prototypes"], ["scratch"]
    subsets = ["subset 5.0/0", "subset 5.0/1", "subset 10.0/0", "subset 10.0/1"]
    assert order == [(cheap, subset) for subset in subsets] + [(trained, subset) for subset in subsets]
