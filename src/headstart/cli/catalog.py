"""Commands that list what headstart offers: backbones and strategies."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Annotated, Any

import typer
from rich.table import Table

from headstart.backbones import list_backbones
from headstart.cli.app import app, out
from headstart.strategies import STRATEGIES


@app.command()
def backbones() -> None:
    """List the backbones headstart can use; bundled ones work offline now."""
    grid = Table(title="The backbones headstart can use; the bundled ones work offline.", title_justify="left")
    for column in ("name", "modality", "offline", "what it is"):
        grid.add_column(column)
    for spec in list_backbones():
        name = spec.name + ("<name>" if spec.name.endswith(":") else "")
        grid.add_row(name, spec.modality, "yes" if spec.offline else "needs hub", spec.description)
    out.print(grid)


def _settings(cls: type) -> dict[str, tuple[str, str]]:
    """A strategy's settings: name -> (default, help text)."""
    return {field: (repr(info.default), info.description or "")
            for field, info in cls.config_class.model_fields.items()}


def _settings_table(title: str, rows: dict[str, tuple[str, str]]) -> Table:
    grid = Table(title=title, title_justify="left")
    for column in ("setting", "default", "meaning"):
        grid.add_column(column)
    for field, (default, meaning) in rows.items():
        grid.add_row(field, default, meaning)
    return grid


def _summary(cls: type) -> str:
    # The docstring's whole first paragraph: its first line alone stops mid-sentence where the source wraps.
    return " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())


def _shared_settings(classes: dict[str, Any]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The settings (with the same default and meaning) that most strategies have, and those strategies."""
    counts = Counter(item for cls in classes.values() for item in _settings(cls).items())
    common = {item for item, count in counts.items() if count > 1 and count == max(counts.values())}
    sharing = [name for name, cls in classes.items() if common <= set(_settings(cls).items())]
    return sharing, dict(sorted(common, key=lambda item: list(counts).index(item)))


@app.command()
def strategies(
    name: Annotated[str | None, typer.Argument(help="Show only this strategy, with all its settings.")] = None,
) -> None:
    """List the transfer strategies and their settings (set them with `fit --set key=value`)."""
    if name is not None:
        cls = STRATEGIES.get(name)
        out.print(_settings_table(f"The {name} strategy. {_summary(cls)}", _settings(cls)))
        return
    classes = dict(STRATEGIES.items())
    sharing, shared = _shared_settings(classes)
    if shared:
        out.print(_settings_table(f"Settings that {', '.join(sharing)} share (same default and meaning).", shared))
    for strategy, cls in classes.items():
        own = {k: v for k, v in _settings(cls).items() if strategy not in sharing or k not in shared}
        also = " It also takes the shared settings above." if strategy in sharing else ""
        out.print(_settings_table(f"The {strategy} strategy. {_summary(cls)}{also}", own))
