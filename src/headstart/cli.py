"""The ``headstart`` command line: parses and validates options, then calls the Python API."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from headstart import api
from headstart.backbones import list_backbones
from headstart.errors import ConfigError, HeadstartError
from headstart.io import is_main_process
from headstart.reports import ranking_rows
from headstart.strategies import STRATEGIES
from headstart.studies import SIZE_LABEL, SkippedRun

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Transfer learning for small data sets: fit, evaluate, predict.")
# soft_wrap: summary lines stay whole when piped or logged; emoji=False: a path such as runs/:x: prints as written.
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)  # an error stays one line in logs

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or informational output.")]
TextColumn = Annotated[str | None, typer.Option(help="Text column of tabular data.")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column of tabular data.")]
PathColumn = Annotated[str | None, typer.Option(help="Image path column of a CSV.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not read or write cached features.")]
Force = Annotated[bool, typer.Option(help="Replace an existing output folder.")]
AllowOutsidePaths = Annotated[bool, typer.Option("--allow-outside-paths", help="Let a table name image files "
                                                "outside its own folder (../x.png, absolute paths elsewhere).")]
ImageSize = Annotated[int | None, typer.Option(help="Input size of an image backbone in pixels instead of its own "
                                                    "(e.g. 128 for small images: about 3x faster fine-tuning).")]


# Terminal escape sequences (CSI such as colours and cursor moves, OSC such as window titles), then any other
# control character: a label or path must not recolour, move or retitle the user's terminal.
_TERMINAL_CODES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
                             r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC
                             r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """``value`` as text without terminal escape sequences or control characters (tabs and newlines stay)."""
    return _TERMINAL_CODES.sub("", str(value))


def shown(value: object) -> str:
    """``value`` (a path, label, name or message from the user's data) ready to sit inside rich markup: control
    codes dropped and brackets escaped, so ``[/]`` or ``[bold]`` print as written instead of failing or styling."""
    return escape(plain(value))


def cell(value: object) -> Text:
    """A table cell showing ``value`` literally (rich would read a plain ``str`` cell as markup)."""
    return Text(plain(value))


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
    grid = Table(title="Backbones")
    for column in ("name", "modality", "offline", "what it is"):
        grid.add_column(column)
    for spec in list_backbones():
        name = spec.name + ("<name>" if spec.name.endswith(":") else "")
        grid.add_row(name, spec.modality, "yes" if spec.offline else "needs hub", spec.description)
    out.print(grid)


@app.command()
def strategies(
    name: Annotated[str | None, typer.Argument(help="Show only this strategy.")] = None,
) -> None:
    """List the transfer strategies and their settings (set them with `fit --set key=value`)."""
    chosen = [(name, STRATEGIES.get(name))] if name else STRATEGIES.items()
    for name, cls in chosen:
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
    backbone: Annotated[str | None, typer.Option(help="Backbone reference (see `headstart backbones`), or "
                                                      "'auto' to rank the bundled ones by LogME and take the "
                                                      "best; default: efficientnet_lite0 / minilm by modality.")
                        ] = None,
    strategy: Annotated[str, typer.Option(help="How to transfer (see `headstart strategies`).")] = "linear",
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Fit a softmax temperature on validation data "
                                                                "so confidences match accuracy (reports ECE "
                                                                "before/after).")] = False,
    class_weight: Annotated[str | None, typer.Option(help="'balanced' to weight classes by inverse frequency "
                                                          "(linear strategy; for imbalanced data).")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Strategy setting key=value; repeatable.")
                        ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for splits and training.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation share when the data has no val split "
                                                     "and the strategy uses one.")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Held-out test share when the data has no test split.")
                             ] = 0.2,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    skip_bad_images: Annotated[bool, typer.Option(help="Skip unreadable images (listed in the report) "
                                                       "instead of stopping.")] = False,
    max_time: Annotated[float | None, typer.Option(help="Training time budget in seconds.")] = None,
    image_size: ImageSize = None,
    allow_outside_paths: AllowOutsidePaths = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache folder (default ~/.cache/headstart).")
                         ] = None,
    no_cache: NoCache = False,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Train a model on DATA by transferring a pre-trained backbone; writes model, metrics and report."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ConfigError("--val-fraction and --test-fraction must be in [0, 1)")
    cache: bool | Path = False if no_cache else (cache_dir or True)
    options = parse_settings(settings or [])
    if class_weight is not None:
        if class_weight not in ("balanced", "none"):
            raise ConfigError(f"--class-weight must be 'balanced' or 'none', not {class_weight!r}")
        options["class_weight"] = None if class_weight == "none" else class_weight
    model = api.fit(data, backbone=backbone, strategy=strategy, out=out_dir, force=force, seed=seed,
                      val_fraction=val_fraction, test_fraction=test_fraction, cache=cache, progress=not quiet,
                      max_time=max_time, calibrate=calibrate, image_size=image_size,
                      skip_bad_images=skip_bad_images,
                      text_column=text_column, label_column=label_column, path_column=path_column,
                      allow_outside_paths=allow_outside_paths, settings=options)
    if not is_main_process():
        return
    m = model.metrics
    for warning in m.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {shown(warning)}", highlight=False)
    if "backbone_ranking" in m:
        out.print(f"backbone auto: chose [bold]{shown(m['backbone_ranking']['best'])}[/] — "
                  f"{shown(m['backbone_ranking']['explanation'])}", highlight=False)
    if "calibration" in m:
        c = m["calibration"]
        changes = ", ".join(f"{name} {c['ece_before'][name]:.3f} -> {c['ece_after'][name]:.3f}"
                            for name in ("test", "val") if name in c["ece_before"])
        out.print(f"calibrated: temperature {c['temperature']:.3f}; ECE {changes}")
    if "test" in m:
        t = m["test"]
        out.print(f"test accuracy [bold]{t['accuracy']:.1%}[/] on {t['n_examples']} held-out examples "
                  f"(balanced {t['balanced_accuracy']:.1%}, macro F1 {t['macro_f1']:.3f}) "
                  f"— {model.strategy} on {shown(model.backbone.ref)}, {m['data']['n_train']} training examples, "
                  f"{m['seconds']:.1f} s")
    out.print(f"model:  {shown(out_dir)}/")
    out.print(f"report: {shown(out_dir / 'report.html')}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `headstart fit`.")],
    data: Annotated[Path, typer.Argument(help="Labeled data in any format `fit` accepts.")],
    split: Annotated[str | None, typer.Option(help="train, val, test or all (default: test if present, "
                                                   "else all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every metric as JSON.")] = False,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    quiet: Quiet = False,
) -> None:
    """Measure a saved model on labeled data."""
    m = api.evaluate(model_dir, data, split=split, progress=not quiet, text_column=text_column,
                     label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    if as_json:
        out.print_json(json.dumps(m))
        return
    out.print(f"accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}  "
              f"macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}  on {m['n_examples']} examples")
    grid = Table()
    for column in ("class", "precision", "recall", "F1", "support"):
        grid.add_column(column, justify="left" if column == "class" else "right")
    for name, row in m["per_class"].items():
        # None where undefined: recall of a class absent from the data, precision of a class never predicted.
        scores = ("–" if row[key] is None else f"{row[key]:.3f}" for key in ("precision", "recall", "f1"))
        grid.add_row(cell(name), *scores, str(row["support"]))
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
    if output_format not in ("table", "json", "csv"):
        raise ConfigError(f"--format must be table, json or csv, not {output_format!r}")
    rows = api.predict(model_dir, inputs, top_k=top_k, progress=not quiet)
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
            name = r["input"] if len(r["input"]) <= 80 else r["input"][:77] + "..."
            label = r["label"] if top_k <= 1 else ", ".join(f"{n} {p:.2f}" for n, p in r["top"])
            grid.add_row(cell(name), cell(label), f"{r['confidence']:.3f}")
        out.print(grid)


def _names(value: str, option: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise ConfigError(f"{option} needs a comma-separated list, e.g. {option} a,b")
    return names


def _numbers(value: str | None, option: str, kind: type) -> list[Any] | None:
    if value is None:
        return None
    try:
        return [kind(v) for v in _names(value, option)]
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated {kind.__name__}s, got {value!r}") from None


def _wide() -> Console:
    # Piped output has no terminal width to respect; rich's 80-column default would truncate score tables.
    return out if out.is_terminal else Console(width=160)


def rank_table(result: Any) -> Table:
    """The rank result as a rich table, best backbone first."""
    _, header, body = ranking_rows(result.to_dict())
    grid = Table(title=Text(f"Backbones for {plain(result.source)} by {result.sort_by} (higher is better)"))
    for column in header:
        grid.add_column(column, justify="left" if column == "backbone" else "right")
    for row in body:
        grid.add_row(*[f"{v:.4g}" if isinstance(v, float) else "–" if v is None else cell(v) for v in row])
    return grid


@app.command()
def rank(
    data: Annotated[Path, typer.Argument(help="Labeled data in any format `fit` accepts.")],
    backbone_list: Annotated[str, typer.Option("--backbones", help="Comma-separated backbone references of the "
                                                                 "data's modality, e.g. minilm,glove.")],
    score: Annotated[str, typer.Option(help="Score to rank by: logme, hscore, knn, linear_probe, leep, nce.")
                     ] = "logme",
    scores: Annotated[str | None, typer.Option(help="Comma-separated scores to compute (default: all that "
                                                    "apply).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for rank.json and report.html.")
                       ] = None,
    image_size: ImageSize = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    no_cache: NoCache = False,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Rank backbones for DATA by transferability scores of their frozen features (no training)."""
    result = api.rank(data, backbones=_names(backbone_list, "--backbones"),
                            scores=_numbers(scores, "--scores", str), sort_by=score, cache=not no_cache,
                            out=out_dir, force=force, progress=not quiet, image_size=image_size,
                            text_column=text_column, label_column=label_column, path_column=path_column,
                            allow_outside_paths=allow_outside_paths)
    _wide().print(rank_table(result))
    out.print(f"best: [bold]{shown(result.best)}[/] — {shown(result.explanation())}", highlight=False)
    if out_dir is not None:
        out.print(f"report: {shown(out_dir / 'report.html')}")


@app.command()
def compare(
    data: Annotated[Path, typer.Argument(help="Labeled data in any format `fit` accepts.")],
    strategy_list: Annotated[str, typer.Option("--strategies", help="Comma-separated strategies; include "
                                                                   "scratch for transfer verdicts.")
                             ] = "linear,finetune,scratch",
    fractions: Annotated[str | None, typer.Option(help="Training-set sizes as fractions of the training split "
                                                       "(default 0.05,0.1,0.25,0.5,1).")] = None,
    shots: Annotated[str | None, typer.Option(help="Training-set sizes as examples per class, e.g. 1,5,10 "
                                                   "(instead of --fractions).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per size and strategy.")] = 3,
    backbone: Annotated[str | None, typer.Option(help="Backbone reference; default by modality.")] = None,
    max_time: Annotated[float | None, typer.Option(help="Budget for the whole study in seconds; runs that "
                                                        "would exceed it are skipped and listed.")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Strategy setting key=value (all "
                                                       "strategies that have it) or strategy.key=value; "
                                                       "repeatable.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for compare.json and report.html.")
                       ] = None,
    test_fraction: Annotated[float, typer.Option(help="Fixed hold-out share when the data has no test split.")
                             ] = 0.2,
    image_size: ImageSize = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    no_cache: NoCache = False,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Learning curves on DATA: strategies x training-set sizes x seeds, with the transfer verdict."""
    def show(run: Any) -> None:
        if quiet:
            return
        if isinstance(run, SkippedRun):
            out.print(f"  skipped {run.strategy} at {run.size:g} {SIZE_LABEL}, seed {run.seed}: "
                      f"{shown(run.reason)}", soft_wrap=True)
        else:
            out.print(f"  {run.strategy:>10} {run.size:>7g} {SIZE_LABEL} seed {run.seed}: "
                      f"accuracy {run.accuracy:.1%} ({run.seconds:.1f} s)", highlight=False, soft_wrap=True)

    result = api.compare(data, strategies=_names(strategy_list, "--strategies"),
                                fractions=_numbers(fractions, "--fractions", float),
                                shots=_numbers(shots, "--shots", int), seeds=seeds, backbone=backbone,
                                max_time=max_time, cache=not no_cache, out=out_dir, force=force,
                                settings=parse_settings(settings or []), test_fraction=test_fraction, on_run=show,
                                image_size=image_size, text_column=text_column, label_column=label_column,
                                path_column=path_column, allow_outside_paths=allow_outside_paths)
    if result.summary:
        grid = Table(title=f"Test accuracy on {result.n_test} examples (mean ± std over seeds)")
        grid.add_column(SIZE_LABEL, justify="right")
        for name in result.strategies:
            grid.add_column(name, justify="right")
        cells = {(r.strategy, r.size): r for r in result.summary}
        for size in result.sizes:
            row = [f"{size:g}"]
            for name in result.strategies:
                r = cells.get((name, size))
                row.append("skipped" if r is None else f"{r.mean:.1%}" + ("" if r.std is None else
                                                                         f" ± {r.std:.1%}"))
            grid.add_row(*row)
        _wide().print(grid)
    for saving in result.savings:
        out.print(f"data savings: {shown(saving.message)}", highlight=False, soft_wrap=True)
    for gain in result.gains:
        out.print(f"gain {gain.strategy} - scratch at {gain.size:g} {SIZE_LABEL}: {gain.difference * 100:+.1f} "
                  f"points" + ("" if gain.p_value is None else f" (p={gain.p_value:.2g})"), highlight=False)
    for verdict in result.verdicts:
        colour = {"positive": "green", "negative": "red"}.get(verdict.status, "yellow")
        out.print(f"[bold {colour}]{verdict.strategy}: {verdict.status}[/] — {shown(verdict.message)}",
                  highlight=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {shown(note)}", highlight=False, soft_wrap=True)
    if result.skipped:
        out.print(f"{len(result.skipped)} runs skipped by the {max_time:g} s budget (listed in the report)")
    out.print(f"{len(result.records)} runs in {result.seconds:.0f} s")
    if out_dir is not None:
        out.print(f"report: {shown(out_dir / 'report.html')}")


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        app()
    except HeadstartError as error:
        err.print(f"[bold red]error:[/] {shown(error)}", highlight=False)
        sys.exit(2)
