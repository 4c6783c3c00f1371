"""Commands on models: fit one, evaluate it, predict with it."""

from __future__ import annotations

import csv
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from headstart import api
from headstart.cli.app import (
    AllowDownload,
    AllowOutsidePaths,
    CacheDir,
    DataArgument,
    Engine,
    Force,
    ImageSize,
    LabelColumn,
    ModelArgument,
    NoCache,
    PathColumn,
    Preprocessing,
    Quiet,
    SkipBadFiles,
    Target,
    TargetTest,
    TextColumn,
    Track,
    TrackingUri,
    app,
    cache_option,
    cell,
    err,
    out,
    parse_settings,
    print_tracking,
    shown,
    track_option,
)
from headstart.errors import ConfigError
from headstart.evaluation.forgetting import forgetting_summary
from headstart.io import is_main_process, partial_path
from headstart.model import TransferModel
from headstart.strategies import STRATEGIES, TrainedStrategy
from headstart.training.checkpoint import CHECKPOINT_DIR, STATE_FILE
from headstart.training.outcome import stop_message

SourceData = Annotated[Path | None, typer.Option(
    "--source", help="Labeled data of the backbone's source task (same formats as DATA): its test accuracy "
                     "before and after transfer, read by one kept source head (the source model's own for a "
                     "ckpt: backbone, which finds its data by itself; else a linear probe on the source backbone).")]


@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="Image or audio folder (class subfolders, optional "
                                              "train/val/test), CSV of path,label, or CSV/JSONL/Parquet of "
                                              "text,label.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the model, metrics and report.")],
    backbone: Annotated[str | None, typer.Option(help="Backbone reference (see `headstart backbones`), or "
                                                      "'auto' to rank the bundled ones by LogME and take the "
                                                      "best; default: efficientnet_lite0 / minilm / "
                                                      "speech_embedding by modality.")
                        ] = None,
    strategy: Annotated[str, typer.Option(help="How to transfer (see `headstart strategies`); 'auto' picks among "
                                               "the frozen-feature heads by cross-validation and fine-tunes only "
                                               "when it may pay.")] = "auto",
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Fit a softmax temperature on validation data "
                                                                "so confidences match accuracy (reports ECE "
                                                                "before/after).")] = False,
    class_weight: Annotated[str | None, typer.Option(help="'balanced' to weight classes by inverse frequency "
                                                          "(with --strategy linear; for imbalanced data).")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Strategy setting key=value; repeatable.")
                        ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for splits and training.")] = 0,
    val_fraction: Annotated[float | None, typer.Option(help="Validation share when the strategy needs one; "
                                                            "default 0.15, or none if < 10 per class.")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="Test share when the data has no test split; default "
                                                             "0.2, or cross-validation if < 10 per class.")] = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    skip_bad_files: SkipBadFiles = False,
    max_time: Annotated[float | None, typer.Option(help="Training time budget in seconds.")] = None,
    image_size: ImageSize = None,
    preprocess: Preprocessing = None,
    engine: Engine = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    force: Force = False,
    track: Track = False, tracking_uri: TrackingUri = None, source: SourceData = None,
    target: Target = None, target_test: TargetTest = None,
    quiet: Quiet = False,
) -> None:
    """Train a model on DATA by transferring a pre-trained backbone; writes model, metrics and report."""
    if any(f is not None and not 0 <= f < 1 for f in (val_fraction, test_fraction)):
        raise ConfigError("--val-fraction and --test-fraction must be in [0, 1)")
    options = _strategy_settings(settings, class_weight, strategy)
    try:
        model = api.fit(data, backbone=backbone, strategy=strategy, out=out_dir, force=force, seed=seed,
                        val_fraction=val_fraction, test_fraction=test_fraction, target=target, target_test=target_test,
                        cache=cache_option(no_cache, cache_dir), progress=not quiet, max_time=max_time,
                        calibrate=calibrate, image_size=image_size, engine=engine, settings=options,
                        preprocess=parse_settings(preprocess or [], "--preprocess"), skip_bad_files=skip_bad_files,
                        text_column=text_column, label_column=label_column, path_column=path_column,
                        allow_outside_paths=allow_outside_paths, track=track_option(track, tracking_uri),
                        source=source)
    except KeyboardInterrupt:
        err.print(interrupted_message(out_dir), highlight=False, markup=False)
        raise typer.Exit(130) from None
    if is_main_process():
        _print_fit(model, out_dir)


def _strategy_settings(settings: list[str] | None, class_weight: str | None, strategy: str) -> dict[str, Any]:
    """The ``--set`` settings, with ``--class-weight`` (a shortcut for the linear strategy's setting) added."""
    options = parse_settings(settings or [])
    if class_weight is not None:
        if strategy != "linear":
            raise ConfigError(f"--class-weight is a setting of the linear strategy, not of {strategy!r}; add "
                              f"--strategy linear")
        if class_weight not in ("balanced", "none"):
            raise ConfigError(f"--class-weight must be 'balanced' or 'none', not {class_weight!r}")
        options["class_weight"] = None if class_weight == "none" else class_weight
    return options


def interrupted_message(out_dir: Path) -> str:
    """The line a Ctrl-C'd ``fit`` prints: where its checkpoint is and the command that resumes from it."""
    command = shlex.join(["headstart", *sys.argv[1:]])
    checkpoint = partial_path(out_dir) / CHECKPOINT_DIR
    if (checkpoint / STATE_FILE).is_file():
        return f"interrupted; the last checkpoint is in {checkpoint}/ — resume with: {command}"
    return (f"interrupted before the first checkpoint (written after each training epoch); to start again "
            f"(cached features are reused): {command}")


def _print_fit(model: TransferModel, out_dir: Path) -> None:
    """Warnings, then what was chosen and measured, then where the model and report are."""
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
    stopped = stop_message(m.get("train", {}), backbone_trained=model.backbone_trained, budget="--max-time")
    if "test" in m:
        t = m["test"]
        out.print(f"test accuracy [bold]{t['accuracy']:.1%}[/] on {t['n_examples']} held-out examples "
                  f"(balanced {t['balanced_accuracy']:.1%}, macro F1 {t['macro_f1']:.3f}, ECE {t['ece']:.3f}) "
                  f"— {shown(model.strategy_chosen)} on {shown(model.backbone.ref)}, {m['data']['n_train']} training "
                  f"examples, {m['seconds']:.1f} s" + (f"; [bold yellow]{stopped}[/]" if stopped else ""))
    elif m.get("cross_validation"):
        cv = m["cross_validation"]
        out.print(f"cross-validated accuracy [bold]{cv['accuracy']:.1%}[/] ({cv['folds']}-fold, {cv['n_examples']} "
                  f"examples, too few to hold out a test split; macro F1 {cv['macro_f1']:.3f}, ECE {cv['ece']:.3f}) "
                  f"— {shown(model.strategy_chosen)} on {shown(model.backbone.ref)}, {m['seconds']:.1f} s")
    elif stopped:
        out.print(f"[bold yellow]{stopped}[/]")
    target = m.get("target", {})
    if "test" in target:
        t = target["test"]
        out.print(f"target test accuracy [bold]{t['accuracy']:.1%}[/] on {t['n_examples']} examples of "
                  f"{shown(t['source'])} (balanced {t['balanced_accuracy']:.1%}); "
                  f"{shown(target['shift']['summary'])}", highlight=False)
    if "forgetting" in m and issubclass(STRATEGIES.get(model.strategy), TrainedStrategy):
        out.print(f"forgetting: {forgetting_summary(m['forgetting'])}", highlight=False)
    out.print(f"model:  {shown(out_dir)}/")
    out.print(f"report: {shown(out_dir / 'report.html')}")
    print_tracking(m.get("tracking"))


@app.command()
def evaluate(
    model_dir: ModelArgument,
    data: DataArgument,
    split: Annotated[str | None, typer.Option(help="train, val, test or all (default: test if present, "
                                                   "else all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every metric as JSON.")] = False,
    forgetting: Annotated[bool, typer.Option("--forgetting", help="Also measure what the backbone kept of its "
                                                                  "source (bundled reference set and DATA).")
                          ] = False,
    reference: Annotated[list[Path] | None, typer.Option(
        "--reference", help="Source-domain inputs (files, folders, a .txt of texts) to measure forgetting on "
                            "instead of the bundled reference set; repeatable; implies --forgetting.")] = None,
    source: SourceData = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    allow_download: AllowDownload = False,
    quiet: Quiet = False,
) -> None:
    """Measure a saved model on labeled data."""
    m = api.evaluate(model_dir, data, split=split, progress=not quiet, forgetting=forgetting, reference=reference,
                     source=source, allow_download=allow_download, text_column=text_column,
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
    if "forgetting" in m:
        out.print(f"forgetting: {forgetting_summary(m['forgetting'])}", highlight=False)


def _write_csv(rows: list[dict]) -> None:
    """Predictions as CSV on stdout with ``\n`` line endings: input, label, confidence, then the next classes
    (``label_2``, ``confidence_2``, ...) when ``--top-k`` asks for them."""
    k = max((len(r.get("top", [])) for r in rows), default=1)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["input", "label", "confidence", *(f"{c}_{i}" for i in range(2, k + 1)
                                                        for c in ("label", "confidence"))])
    for r in rows:
        ranked = r.get("top") or [(r["label"], r["confidence"])]
        writer.writerow([r["input"], *(v for name, p in ranked for v in (name, f"{p:.6f}"))])


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `headstart fit`, or an .onnx file "
                                                   "written by `headstart export`.")],
    inputs: Annotated[list[str], typer.Argument(help="Image or audio files or folders; or texts, a .txt file "
                                                     "(one text per line) or a CSV/JSONL with a text column.")],
    output_format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    top_k: Annotated[int, typer.Option(help="How many classes to show per input.")] = 1,
    allow_download: AllowDownload = False,
    engine: Annotated[str, typer.Option(help="torch (the saved model) or onnx (the folder's exported graph, "
                                             "onnx/model.onnx).")] = "torch",
    quiet: Quiet = False,
) -> None:
    """Predict classes for new inputs with a saved model or an exported ONNX graph."""
    if output_format not in ("table", "json", "csv"):
        raise ConfigError(f"--format must be table, json or csv, not {output_format!r}")
    rows = api.predict(model_dir, inputs, top_k=top_k, progress=not quiet, allow_download=allow_download,
                       engine=engine)
    if output_format == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif output_format == "csv":
        _write_csv(rows)
    else:
        grid = Table()
        for column in ("input", "label", "confidence"):
            grid.add_column(column)
        for r in rows:
            name = r["input"] if len(r["input"]) <= 80 else r["input"][:77] + "..."
            label = r["label"] if top_k <= 1 else ", ".join(f"{n} {p:.2f}" for n, p in r["top"])
            grid.add_row(cell(name), cell(label), f"{r['confidence']:.3f}")
        out.print(grid)

