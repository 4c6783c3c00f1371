"""The ``headstart`` command line: parses and validates options, then calls the Python API."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from headstart.errors import ConfigError, HeadstartError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Transfer learning for small data sets: fit, evaluate, predict.")
out = Console()
err = Console(stderr=True)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or informational output.")]


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "epochs=3"]`` -> ``{"lr": "0.01", "epochs": "3"}``; the strategy's config converts types."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r} (see `headstart strategies` for keys)")
        settings[key.strip().replace("-", "_")] = None if value.strip().lower() == "none" else value.strip()
    return settings


@app.command()
def backbones() -> None:
    """List the backbones headstart can use; bundled ones work offline now."""
    from headstart.backbones import list_backbones

    grid = Table(title="Backbones")
    for column in ("name", "modality", "offline", "what it is"):
        grid.add_column(column)
    for spec in list_backbones():
        name = spec.name + ("<name>" if spec.name.endswith(":") else "")
        grid.add_row(name, spec.modality, "yes" if spec.offline else "needs hub", spec.description)
    out.print(grid)


@app.command()
def strategies() -> None:
    """List the transfer strategies and their settings (set them with `fit --set key=value`)."""
    from headstart.strategies import list_strategies

    for name, cls in list_strategies():
        grid = Table(title=f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}", title_justify="left")
        for column in ("setting", "default", "meaning"):
            grid.add_column(column)
        for field, info in cls.config_class.model_fields.items():
            grid.add_row(field, repr(info.default), info.description or "")
        out.print(grid)


@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="Image folder (class subfolders, optional train/val/test), "
                                              "CSV of path,label, or CSV/JSONL/Parquet of text,label.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the model, metrics and report.")],
    backbone: Annotated[str | None, typer.Option(help="Backbone reference (see `headstart backbones`); "
                                                      "default: efficientnet_lite0 / minilm by modality.")] = None,
    strategy: Annotated[str, typer.Option(help="How to transfer (see `headstart strategies`).")] = "linear",
    settings: Annotated[list[str] | None, typer.Option("--set", help="Strategy setting key=value; repeatable.")
                        ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for splits and training.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation share when the data has no val split "
                                                     "and the strategy uses one.")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Held-out test share when the data has no test split.")
                             ] = 0.2,
    text_column: Annotated[str | None, typer.Option(help="Text column of tabular data.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column of tabular data.")] = None,
    path_column: Annotated[str | None, typer.Option(help="Image path column of a CSV.")] = None,
    skip_bad_images: Annotated[bool, typer.Option(help="Skip unreadable images (listed in the report) "
                                                       "instead of stopping.")] = False,
    max_time: Annotated[float | None, typer.Option(help="Training time budget in seconds.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache folder (default ~/.cache/headstart).")
                         ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write cached features.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    quiet: Quiet = False,
) -> None:
    """Train a model on DATA by transferring a pre-trained backbone; writes model, metrics and report."""
    from headstart.api import fit as fit_model

    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ConfigError("--val-fraction and --test-fraction must be in [0, 1)")
    cache: bool | Path = False if no_cache else (cache_dir or True)
    model = fit_model(data, backbone=backbone, strategy=strategy, out=out_dir, force=force, seed=seed,
                      val_fraction=val_fraction, test_fraction=test_fraction, cache=cache, progress=not quiet,
                      max_time=max_time, skip_bad_images=skip_bad_images, text_column=text_column,
                      label_column=label_column, path_column=path_column, **parse_settings(settings or []))
    m = model.metrics
    if "test" in m:
        t = m["test"]
        out.print(f"test accuracy [bold]{t['accuracy']:.1%}[/] on {t['n_examples']} held-out examples "
                  f"(balanced {t['balanced_accuracy']:.1%}, macro F1 {t['macro_f1']:.3f}) "
                  f"— {model.strategy} on {model.backbone.ref}, {m['data']['n_train']} training examples, "
                  f"{m['seconds']:.1f} s")
    out.print(f"model:  {out_dir}/")
    out.print(f"report: {out_dir / 'report.html'}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `headstart fit`.")],
    data: Annotated[Path, typer.Argument(help="Labeled data in any format `fit` accepts.")],
    split: Annotated[str | None, typer.Option(help="train, val, test or all (default: test if present, "
                                                   "else all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every metric as JSON.")] = False,
    text_column: Annotated[str | None, typer.Option(help="Text column of tabular data.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column of tabular data.")] = None,
    path_column: Annotated[str | None, typer.Option(help="Image path column of a CSV.")] = None,
    quiet: Quiet = False,
) -> None:
    """Measure a saved model on labeled data."""
    from headstart.api import evaluate as evaluate_model

    m = evaluate_model(model_dir, data, split=split, progress=not quiet, text_column=text_column,
                       label_column=label_column, path_column=path_column)
    if as_json:
        out.print_json(json.dumps(m))
        return
    out.print(f"accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}  "
              f"macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}  on {m['n_examples']} examples")
    grid = Table()
    for column in ("class", "precision", "recall", "F1", "support"):
        grid.add_column(column, justify="left" if column == "class" else "right")
    for name, row in m["per_class"].items():
        grid.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                     str(row["support"]))
    out.print(grid)


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `headstart fit`.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files or folders; or texts, a .txt file (one "
                                                     "text per line) or a CSV/JSONL with a text column.")],
    output_format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    top_k: Annotated[int, typer.Option(help="How many classes to show per input.")] = 1,
    quiet: Quiet = False,
) -> None:
    """Predict classes for new inputs with a saved model."""
    from headstart.api import predict as predict_inputs

    if output_format not in ("table", "json", "csv"):
        raise ConfigError(f"--format must be table, json or csv, not {output_format!r}")
    rows = predict_inputs(model_dir, inputs, top_k=top_k, progress=not quiet)
    if output_format == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["input", "label", "confidence"])
        writer.writerows([r["input"], r["label"], f"{r['confidence']:.6f}"] for r in rows)
    else:
        grid = Table()
        for column in ("input", "label", "confidence"):
            grid.add_column(column)
        for r in rows:
            shown = r["input"] if len(r["input"]) <= 80 else r["input"][:77] + "..."
            label = r["label"] if top_k <= 1 else ", ".join(f"{n} {p:.2f}" for n, p in r["top"])
            grid.add_row(shown, label, f"{r['confidence']:.3f}")
        out.print(grid)


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        app()
    except HeadstartError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
