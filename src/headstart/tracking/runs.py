"""What a tracked run holds: the run descriptions built from a fit, a compare study or a tuning study.

A :class:`~headstart.tracking.spec.RunSpec` is plain data (names, params, metric points, tags, artifact paths, child
runs), so it is built and tested without MLflow; the tracking worker (:mod:`headstart.tracking.worker`) writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart import __version__
from headstart.data import DataSplits
from headstart.fitting import data_fingerprint
from headstart.tracking.spec import RunSpec

if TYPE_CHECKING:
    from headstart.model import TransferModel
    from headstart.studies import CompareResult
    from headstart.tuning import TuneResult

#: Final metrics of an evaluation that every run logs per split.
EVALUATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece")
#: Per-epoch numbers of the training history, logged with the epoch as step.
HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def _tags(command: str, source: str, out: Path | None) -> dict[str, str]:
    tags = {"headstart.command": command, "headstart.version": __version__, "headstart.data": source}
    if out is not None:
        tags["headstart.out"] = str(Path(out).resolve())
    return tags


def evaluation_metrics(metrics: dict[str, Any], step: int = 0) -> list[tuple[str, float, int]]:
    """``val/accuracy``, ``test/macro_f1``, ... of a model's metrics, plus ``seconds`` when measured."""
    points = [(f"{split}/{name}", float(metrics[split][name]), step) for split in ("val", "test")
              if split in metrics for name in EVALUATION_METRICS if metrics[split].get(name) is not None]
    if metrics.get("seconds") is not None:
        points.append(("seconds", float(metrics["seconds"]), step))
    return points


def history_metrics(history: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """``epoch/<name>`` points of a training history, stepped by epoch."""
    return [(f"epoch/{name}", float(record[name]), int(record["epoch"])) for record in history
            for name in HISTORY_METRICS if record.get(name) is not None]


def settings_params(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Settings as run parameters, named apart from run arguments (``setting.lr``)."""
    return {f"setting.{k}": v for k, v in (settings or {}).items()}


def fit_run(model: TransferModel, splits: DataSplits, *, out: str | Path | None, command: str = "fit") -> RunSpec:
    """The run of one trained model: its settings, data fingerprint, per-epoch and final metrics, and its
    published folder and report as artifacts.

    Args:
        model: The trained model (``metrics`` as :func:`headstart.fitting.fit_splits` fills them).
        splits: The data it was trained and measured on.
        out: Its published model folder, or ``None`` (then no artifacts).
        command: The command that made it (a tag).
    """
    m = model.metrics
    settings = {k: v for k, v in model.strategy_config.items() if k != "seed"}
    params = {"backbone": model.backbone.ref, "strategy": model.strategy,
              "seed": model.strategy_config.get("seed"), "data_fingerprint": data_fingerprint(splits),
              "calibrate": "calibration" in m, "stop_reason": m.get("train", {}).get("stop_reason"),
              **settings_params(settings)}
    for name in ("train", "val", "test"):
        if f"n_{name}" in m.get("data", {}):
            params[f"n_{name}"] = m["data"][f"n_{name}"]
    points = evaluation_metrics(m) + history_metrics(m.get("train", {}).get("history") or [])
    if m.get("train", {}).get("cv_accuracy") is not None:
        points.append(("train/cv_accuracy", float(m["train"]["cv_accuracy"]), 0))
    if "calibration" in m:
        points.append(("calibration/temperature", float(m["calibration"]["temperature"]), 0))
    artifacts = []
    if out is not None:
        artifacts = [(str(out), "model"), (str(Path(out) / "report.html"), "")]
    return RunSpec(f"{command} {model.strategy} {model.backbone.ref}", params, points,
                   _tags(command, splits.source, Path(out) if out else None), artifacts)


def compare_run(result: CompareResult, splits: DataSplits, *, out: str | Path | None,
                arguments: dict[str, Any]) -> RunSpec:
    """A parent run for a compare study (its design, mean accuracies, report) with one child run per
    (strategy, size, seed).

    Args:
        result: The finished study.
        splits: The data as loaded (before the study's subsets).
        out: The study's published folder, or ``None``.
        arguments: The study's arguments that are not in ``result`` (settings, fractions).
    """
    params = {"backbone": result.backbone, "strategies": ",".join(result.strategies),
              "sizes": ",".join(f"{s:g}" for s in result.sizes), "n_test": result.n_test,
              "data_fingerprint": data_fingerprint(splits), **arguments}
    points = [(f"mean_accuracy/{row.strategy}/{row.size:g}", float(row.mean), 0) for row in result.summary]
    points.append(("seconds", float(result.seconds), 0))
    tags = _tags("compare", splits.source, Path(out) if out else None)
    children = [RunSpec(f"{r.strategy} {r.size:g} seed {r.seed}",
                        {"strategy": r.strategy, "size": r.size, "seed": r.seed, "n_train": r.n_train,
                         "backbone": result.backbone},
                        [("test/accuracy", float(r.accuracy), 0)]
                        + [(f"test/{k}", float(v), 0) for k, v in r.metrics.items() if v is not None]
                        + ([("seconds", float(r.seconds), 0)] if r.seconds is not None else []),
                        tags | {"headstart.command": "compare.run"}) for r in result.records]
    artifacts = [(str(out), "compare")] if out is not None else []
    return RunSpec(f"compare {','.join(result.strategies)} {result.backbone}", params, points, tags, artifacts,
                   children)


def tune_run(result: TuneResult, splits: DataSplits, *, out: str | Path | None, arguments: dict[str, Any]
             ) -> RunSpec:
    """A parent run for a tuning study (best settings and score, the refit model's metrics and folder) with one
    child run per trial (its settings, state, per-epoch validation scores and final score).

    Args:
        result: The finished study (with its refit model, if any).
        splits: The data as loaded.
        out: The published output folder, or ``None``.
        arguments: The study's arguments that are not in ``result`` (trials, budget).
    """
    params = {"strategy": result.strategy, "backbone": result.backbone, "seed": result.seed,
              "data_fingerprint": result.data_fingerprint, "study": result.study, "storage": result.storage,
              **{f"setting.{k}": v for k, v in result.fixed.items()},
              **{f"space.{k}": v for k, v in result.space.items()}, **arguments}
    points: list[tuple[str, float, int]] = []
    if result.best is not None:
        params.update({f"best.{k}": v for k, v in result.best["params"].items()}, best_trial=result.best["number"])
        points.append((f"best/{result.objective}", float(result.best["value"]), 0))
    if result.chosen is not None:
        params["refit_trial"] = result.chosen["number"]
    if result.defaults is not None:
        points.append((f"defaults/{result.objective}", float(result.defaults["value"]), 0))
    if result.model is not None:
        points += [p for p in evaluation_metrics(result.model.metrics) if p[0] != "seconds"]
    points.append(("seconds", float(result.seconds), 0))
    tags = _tags("tune", splits.source, Path(out) if out else None)
    children = [RunSpec(f"trial {t['number']}", {**t["params"], "state": t["state"], "trial": t["number"]},
                        [(f"epoch/{result.objective}", float(v), int(step)) for step, v in t["intermediate"].items()]
                        + ([(result.objective, float(t["value"]), 0)] if t["value"] is not None else [])
                        + ([("seconds", float(t["seconds"]), 0)] if t["seconds"] is not None else []),
                        tags | {"headstart.command": "tune.trial", "optuna.state": t["state"]})
                for t in result.trials]
    artifacts = [(str(out), "model"), (str(Path(out) / "report.html"), "")] if out is not None else []
    return RunSpec(f"tune {result.strategy} {result.backbone}", params, points, tags, artifacts, children)
