"""The ``tune`` command: a hyperparameter search over a strategy's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from headstart import api
from headstart.cli.app import (
    DataArgument,
    Force,
    ImageSize,
    LabelColumn,
    NoCache,
    PathColumn,
    Quiet,
    TextColumn,
    Track,
    TrackingUri,
    app,
    out,
    parse_settings,
    print_tracking,
    track_option,
)
from headstart.errors import ConfigError
from headstart.tuning import TuneResult


@app.command()
def tune(
    data: DataArgument,
    strategy: Annotated[str, typer.Option(help="Strategy whose settings are searched.")] = "finetune",
    trials: Annotated[int, typer.Option(help="Trials to finish (complete or pruned), counting those already in "
                                             "the study.")] = 20,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the best model, study.json and "
                                                                    "report.html; without it (with --storage) "
                                                                    "this process only runs trials.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone reference; default by modality.")] = None,
    max_time: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL shared by workers (sqlite:///study.db, "
                                                     "postgresql://...); default SQLite in the output's work "
                                                     "folder.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name in the storage (default from strategy and data).")
                     ] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Setting held fixed, key=value; repeatable.")
                        ] = None,
    space: Annotated[list[str] | None, typer.Option("--space", help="Searched setting replacing the declared "
                                                    "space: key=low:high, key=log:low:high or key=a,b,c; "
                                                    "repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every trial and of the sampler.")] = 0,
    keep_defaults_within: Annotated[float, typer.Option(help="Refit the defaults unless the best trial beats them "
                                                             "on validation by more than this many standard "
                                                             "errors (0: always the best).", min=0)] = 1.0,
    image_size: ImageSize = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    path_column: PathColumn = None,
    no_cache: NoCache = False,
    force: Force = False,
    track: Track = False,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Search a strategy's settings on DATA (Optuna; scored on validation data), refit the best, test it once."""
    result = api.tune(data, strategy=strategy, trials=trials, backbone=backbone, out=out_dir, force=force,
                      storage=storage, study=study, seed=seed, max_time=max_time,
                      settings=parse_settings(settings or []), space=parse_space(space or []) or None,
                      cache=not no_cache, progress=not quiet, image_size=image_size, text_column=text_column,
                      label_column=label_column, path_column=path_column, track=track_option(track, tracking_uri),
                      keep_defaults_within=keep_defaults_within)
    _print_tune(result, out_dir)


def parse_space(pairs: list[str]) -> dict[str, str]:
    """``["lr=log:1e-5:1e-3"]`` -> ``{"lr": "log:1e-5:1e-3"}`` (the tuner parses the ranges)."""
    space = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--space expects key=range, got {pair!r} (e.g. --space lr=log:1e-5:1e-3)")
        space[key.strip().replace("-", "_")] = value
    return space


def _print_tune(result: TuneResult, out_dir: Path | None) -> None:
    """Trials by state, the defaults' and the best score, the best settings' test accuracy, where it went."""
    states = [t["state"] for t in result.trials]
    out.print(f"study {result.study}: {states.count('COMPLETE')} trials complete, {states.count('PRUNED')} pruned, "
              f"{states.count('FAIL')} failed ({result.seconds:.0f} s)", highlight=False)
    if result.defaults is not None:
        out.print(f"defaults: validation accuracy {result.defaults['value']:.1%} (trial {result.defaults['number']})",
                  highlight=False)
    if result.best is not None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in result.best["params"].items())
        out.print(f"best:     validation accuracy [bold]{result.best['value']:.1%}[/] (trial "
                  f"{result.best['number']}): {shown or 'the defaults'}", highlight=False, soft_wrap=True)
    if "gain" in result.selection and result.chosen is not None:
        out.print(f"refit:    trial {result.chosen['number']}: {result.selection['why']}", highlight=False,
                  soft_wrap=True)
    if result.model is not None and "test" in result.model.metrics:
        t = result.model.metrics["test"]
        which = "defaults" if result.selection.get("kept_defaults") else "best settings"
        out.print(f"{which} refit: test accuracy [bold]{t['accuracy']:.1%}[/] on {t['n_examples']} held-out "
                  f"examples (macro F1 {t['macro_f1']:.3f})", highlight=False)
    if out_dir is not None:
        out.print(f"model:  {out_dir}/")
        out.print(f"report: {out_dir / 'report.html'}")
    print_tracking(result.tracking)
