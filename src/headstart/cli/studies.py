"""Commands that compare before or instead of training: rank backbones, compare strategies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from headstart import api
from headstart.cli.app import (
    AllowOutsidePaths,
    CacheDir,
    DataArgument,
    Engine,
    Force,
    ImageSize,
    LabelColumn,
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
    comma_list,
    out,
    parse_settings,
    plain,
    print_tracking,
    shown,
    track_option,
    typed_list,
    wide,
)
from headstart.reports import ranking_rows
from headstart.studies import SIZE_LABEL, CompareResult, RunRecord, SkippedRun
from headstart.studies.records import SummaryRow
from headstart.studies.target_domain import TARGET_ACCURACY, target_shifts
from headstart.studies.tradeoff import tradeoff_message


def rank_table(result: Any) -> Table:
    """The rank result as a rich table, best backbone first."""
    _, header, body = ranking_rows(result.to_dict())
    grid = Table(title=Text(f"Backbones for {plain(result.source)} ranked by {result.sort_by}, best first "
                             "(higher is better for every score)."), title_justify="left")
    for column in header:
        grid.add_column(column, justify="left" if column == "backbone" else "right")
    for row in body:
        grid.add_row(*[f"{v:.4g}" if isinstance(v, float) else "–" if v is None else cell(v) for v in row])
    return grid


@app.command()
def rank(
    data: DataArgument,
    backbone_list: Annotated[str, typer.Option("--backbones", help="Comma-separated backbone references of the "
                                                                 "data's modality, e.g. minilm,glove.")],
    score: Annotated[str, typer.Option(help="Score to rank by: logme, hscore, knn, linear_probe, leep, nce.")
                     ] = "logme",
    scores: Annotated[str | None, typer.Option(help="Comma-separated scores to compute (default: all that "
                                                    "apply).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for rank.json and report.html.")
                       ] = None,
    image_size: ImageSize = None,
    preprocess: Preprocessing = None,
    engine: Engine = None,
    skip_bad_files: SkipBadFiles = False,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Rank backbones for DATA by transferability scores of their frozen features (no training)."""
    result = api.rank(data, backbones=comma_list(backbone_list, "--backbones"),
                      scores=typed_list(scores, "--scores", str), sort_by=score,
                      cache=cache_option(no_cache, cache_dir), out=out_dir, force=force, progress=not quiet,
                      image_size=image_size, engine=engine,
                      preprocess=parse_settings(preprocess or [], "--preprocess"), skip_bad_files=skip_bad_files,
                      text_column=text_column,
                      label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths)
    wide().print(rank_table(result))
    out.print(f"best: [bold]{shown(result.best)}[/] — {shown(result.explanation())}", highlight=False)
    if out_dir is not None:
        out.print(f"report: {shown(out_dir / 'report.html')}")


@app.command()
def compare(
    data: DataArgument,
    strategy_list: Annotated[str, typer.Option("--strategies", help="Comma-separated strategies; include "
                                                                   "scratch for transfer verdicts.")
                             ] = "linear,finetune,scratch",
    fractions: Annotated[str | None, typer.Option(help="Training-set sizes as fractions of the training split "
                                                       "(default 0.05,0.1,0.25,0.5,1).")] = None,
    shots: Annotated[str | None, typer.Option(help="Training-set sizes as examples per class, e.g. 1,5,10 "
                                                   "(instead of --fractions).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per size and strategy.")] = 3,
    backbone: Annotated[str | None, typer.Option("--backbone", "--backbones", help="Backbone reference (default "
                                                 "by modality), or several comma-separated on one learning curve, "
                                                 "e.g. efficientnet_lite0,ckpt:runs/source (scratch runs once).")
                        ] = None,
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
    preprocess: Preprocessing = None,
    engine: Engine = None,
    skip_bad_files: SkipBadFiles = False,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    target: Target = None,
    target_test: TargetTest = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    force: Force = False,
    track: Track = False,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Learning curves on DATA: strategies x training-set sizes x seeds, with the transfer verdict."""
    result = api.compare(data, strategies=comma_list(strategy_list, "--strategies"),
                         fractions=typed_list(fractions, "--fractions", float), shots=typed_list(shots, "--shots", int),
                         seeds=seeds, max_time=max_time,
                         backbone=comma_list(backbone, "--backbones") if backbone is not None else None,
                         cache=cache_option(no_cache, cache_dir), out=out_dir, force=force,
                         settings=parse_settings(settings or []), test_fraction=test_fraction,
                         on_run=None if quiet else _show_run, image_size=image_size, engine=engine,
                         preprocess=parse_settings(preprocess or [], "--preprocess"), skip_bad_files=skip_bad_files,
                         text_column=text_column,
                         label_column=label_column, path_column=path_column, allow_outside_paths=allow_outside_paths,
                         track=track_option(track, tracking_uri), progress=not quiet, target=target,
                         target_test=target_test)
    _print_compare(result, max_time, out_dir)
    print_tracking(result.tracking)


def _print_compare(result: CompareResult, max_time: float | None, out_dir: Path | None) -> None:
    """The shift per backbone (with a target domain), the accuracy table, then the conclusions: savings, gains,
    verdicts, notes, skipped runs."""
    if result.target is not None:
        for shift in target_shifts(result.target):
            out.print(shown(shift["summary"]), highlight=False, soft_wrap=True)
        for note in result.target["notes"]:
            out.print(f"[yellow]note:[/] {shown(note)}", highlight=False, soft_wrap=True)
    if result.target_summary:
        wide().print(_target_table(result))
    elif result.summary:
        wide().print(_accuracy_table(result))
    for saving in result.savings:
        out.print(f"data savings: {shown(saving.message)}", highlight=False, soft_wrap=True)
    for gain in result.gains:
        out.print(f"gain {gain.strategy} - scratch at {gain.size:g} {SIZE_LABEL}: {gain.difference * 100:+.1f} "
                  f"points" + ("" if gain.p_value is None else f" (p={gain.p_value:.2g})"), highlight=False)
    for verdict in result.verdicts:
        colour = {"positive": "green", "negative": "red"}.get(verdict.status, "yellow")
        out.print(f"[bold {colour}]{verdict.strategy}: {verdict.status}[/] — {shown(verdict.message)}", highlight=False,
                  soft_wrap=True)
    if len(result.tradeoff) > 1:
        out.print(f"forgetting: {tradeoff_message(result.tradeoff)}", highlight=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {shown(note)}", highlight=False, soft_wrap=True)
    if result.skipped:
        out.print(f"{len(result.skipped)} runs skipped by the {max_time:g} s budget (listed in the report)")
    out.print(f"{len(result.records)} runs in {result.seconds:.0f} s")
    if out_dir is not None:
        out.print(f"report: {shown(out_dir / 'report.html')}")


def _show_run(run: RunRecord | SkippedRun) -> None:
    """One line per run as it finishes (or is skipped)."""
    if isinstance(run, SkippedRun):
        out.print(f"  skipped {run.strategy} at {run.size:g} {SIZE_LABEL}, seed {run.seed}: {shown(run.reason)}",
                  soft_wrap=True)
    else:
        on_target = f", target {run.metrics[TARGET_ACCURACY]:.1%}" if TARGET_ACCURACY in run.metrics else ""
        out.print(f"  {run.strategy:>10} {run.size:>7g} {SIZE_LABEL} seed {run.seed}: "
                  f"accuracy {run.accuracy:.1%}{on_target} ({run.seconds:.1f} s)", highlight=False, soft_wrap=True)
    out.file.flush()  # piped stdout is block-buffered: a log shows each run as it ends


def _accuracy_table(result: CompareResult) -> Table:
    """Mean ± std test accuracy, one row per size and one column per strategy."""
    grid = Table(title=f"Test accuracy on {result.n_test} held-out examples, mean ± std over seeds.",
                 title_justify="left")
    grid.add_column(SIZE_LABEL, justify="right")
    for name in result.strategies:
        grid.add_column(name, justify="right")
    cells = {(r.strategy, r.size): r for r in result.summary}
    for size in result.sizes:
        grid.add_row(f"{size:g}", *(_cell(cells.get((name, size))) for name in result.strategies))
    return grid


def _target_table(result: CompareResult) -> Table:
    """Mean ± std accuracy on the target test set beside the source test set, one row per size and strategy."""
    target = result.target or {}
    title = (f"Accuracy on {target.get('n_test')} target test examples ({plain(target.get('test_source'))}) and "
             f"{result.n_test} source test examples, mean ± std over seeds.")
    grid = Table(title=Text(title), title_justify="left")
    for column in (SIZE_LABEL, "strategy", "target test", "source test"):
        grid.add_column(column, justify="left" if column == "strategy" else "right")
    source = {(r.strategy, r.size): r for r in result.summary}
    on_target = {(r.strategy, r.size): r for r in result.target_summary}
    for size in result.sizes:
        for name in result.strategies:
            grid.add_row(f"{size:g}", cell(name), _cell(on_target.get((name, size))), _cell(source.get((name, size))))
    return grid


def _cell(row: SummaryRow | None) -> str:
    """A summary row as ``mean ± std`` (``skipped`` when the runs did not happen)."""
    if row is None:
        return "skipped"
    return f"{row.mean:.1%}" + ("" if row.std is None else f" ± {row.std:.1%}")

