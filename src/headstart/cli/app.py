"""The Typer app, its consoles, and the option types and parsers every command shares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from headstart import __version__
from headstart.errors import ConfigError, command_line_wording
from headstart.tracking.tracker import ui_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Transfer learning for small data sets: fit, evaluate, predict.")
# soft_wrap: summary lines and errors stay whole when piped or logged; emoji=False: runs/:x: prints as written.
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"headstart {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _every_command(
    context: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    # Messages raised while a command runs name options as flags (--force), not Python keywords (force=True).
    context.with_resource(command_line_wording())


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or informational output.")]
TextColumn = Annotated[str | None, typer.Option(help="Text column of tabular data.")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column of tabular data.")]
PathColumn = Annotated[str | None, typer.Option(help="File path column of a table of image or audio paths.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not read or write cached features or ONNX graphs.")]
CacheDir = Annotated[Path | None, typer.Option(help="Cache folder for features and ONNX graphs (default "
                                                    "~/.cache/headstart).")]
AllowDownload = Annotated[bool, typer.Option("--allow-download", help="Let a backbone the model folder does not "
                                                                     "hold be downloaded (older folders only).")]
Force = Annotated[bool, typer.Option(help="Replace an existing output folder.")]


def parse_image_size(value: str) -> int | str:
    """``--image-size``: a number of pixels, or ``auto``."""
    if value == "auto" or value.isdigit():
        return value if value == "auto" else int(value)
    raise typer.BadParameter(f"{value!r} is not a number of pixels or 'auto'")


ImageSize = Annotated[str | None, typer.Option(parser=parse_image_size, help=(
    "Input size of an image backbone in pixels instead of its own (e.g. 128 for small images: about 3x faster "
    "fine-tuning); 'auto' (fit) picks 128 when every training image is much smaller than the backbone's input."))]
Engine = Annotated[str | None, typer.Option(help=(
    "Where frozen features are computed: auto (ONNX Runtime; PyTorch once weights change), onnx, int8 (features "
    "cached apart; text encoders dynamically quantized, about 1.2x faster than fp32; image backbones statically, "
    "calibrated on the first 64 images extracted: 1.0-1.3x faster, no probe accuracy lost on Fashion-MNIST) "
    "or torch."))]
Preprocessing = Annotated[list[str] | None, typer.Option(
    "--preprocess", help="Backbone preprocessing setting key=value, saved with the model; repeatable. Images: "
                         "views=none|flip|flip+crops (frozen features averaged over the mirror image, or ten "
                         "crops; 2x or 10x the extraction time); stages=last|last2 (last2: pooled features of "
                         "the last two network stages, concatenated; the default of linear, prototypes and auto, "
                         "last of the others). Audio: max_seconds=10, long_clips=first|windows "
                         "(what to do with longer clips), target_dbfs, pad_seconds, pooling=mean|max.")]
SkipBadFiles = Annotated[bool, typer.Option("--skip-bad-files", "--skip-bad-images",
                                            help="Skip unusable files (unreadable images; unreadable, empty, "
                                                 "silent, too short or too long audio; listed in the report) "
                                                 "instead of stopping.")]
AllowOutsidePaths = Annotated[bool, typer.Option("--allow-outside-paths", help="Let a table name files outside "
                                                "its own folder (../x.png, absolute paths elsewhere).")]
Track = Annotated[bool, typer.Option("--track", help="Log the run to MLflow: an embedded SQLite store beside the "
                                                   "output folder (<out parent>/mlruns.db), no server. The run is "
                                                   "written in the background after the command exits; the outcome "
                                                   "is appended to <out parent>/headstart-tracking.jsonl.")]
TrackingUri = Annotated[str | None, typer.Option(help="MLflow tracking URI (a server such as http://host:5000, or "
                                                      "sqlite:///path/mlruns.db); implies --track.")]
DataArgument = Annotated[Path, typer.Argument(help="Labeled data in any format `fit` accepts.")]
ModelArgument = Annotated[Path, typer.Argument(help="A model folder written by `headstart fit`.")]
Target = Annotated[Path | None, typer.Option(help="Unlabeled data of the domain the model is for: image or audio "
                                                  "folder (class subfolders ignored), table of paths or texts "
                                                  "(labels ignored), or .txt of texts. Its shift from DATA is "
                                                  "measured first; adabn, coral, dann adapt to it.")]
TargetTest = Annotated[Path | None, typer.Option(help="Labeled data of the target domain to measure the model on, "
                                                      "beside DATA's test split.")]


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


def parse_settings(pairs: list[str], option: str = "--set") -> dict[str, Any]:
    """``["lr=0.01", "epochs=3"]`` -> ``{"lr": "0.01", "epochs": "3"}``; the strategy's config (or the
    backbone's preprocessing, for ``--preprocess``) converts types."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            where = "see `headstart strategies`" if option == "--set" else "a saved model's config.json shows them"
            raise ConfigError(f"{option} expects key=value, got {pair!r} ({where} for keys)")
        settings[key.strip().replace("-", "_")] = None if value.strip().lower() == "none" else value.strip()
    return settings


def cache_option(no_cache: bool, cache_dir: Path | None) -> bool | Path:
    """The API's ``cache=`` for ``--no-cache`` / ``--cache-dir``."""
    return False if no_cache else (cache_dir or True)


def comma_list(value: str, option: str) -> list[str]:
    """A comma-separated option value as a list; raises :class:`ConfigError` if it names nothing."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"{option} needs a comma-separated list, e.g. {option} a,b")
    return items


def typed_list(value: str | None, option: str, kind: type) -> list[Any] | None:
    """A comma-separated option value as values of type ``kind`` (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        return [kind(v) for v in comma_list(value, option)]
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated {kind.__name__}s, got {value!r}") from None


def wide() -> Console:
    """The console for wide tables."""
    # Piped output has no terminal width to respect; rich's 80-column default would truncate score tables.
    return out if out.is_terminal else Console(width=160)



def track_option(track: bool, tracking_uri: str | None) -> bool | str:
    """The API's ``track`` argument from ``--track`` and ``--tracking-uri``."""
    return tracking_uri or track


def print_tracking(run: dict[str, Any] | None) -> None:
    """Say where a tracked run went (or is going, when the tracking worker writes it after the command exits)
    and how to browse it."""
    if not run:
        return
    if run.get("pending"):
        out.print(f"tracking: MLflow run {shown(run['name'])!r} is being written to {shown(run['uri'])} in the "
                  f"background (a few seconds; outcome in {shown(run['log'])}) — browse: "
                  f"{shown(ui_command(run['uri']))}", highlight=False, soft_wrap=True)
        return
    out.print(f"tracked: MLflow run {run['run_id']} in experiment {run['experiment']!r} at {run['uri']} — "
              f"browse: {ui_command(run['uri'])}", highlight=False, soft_wrap=True)
