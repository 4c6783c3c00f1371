"""Commands that list what headstart offers: backbones and strategies."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.table import Table

from headstart.backbones import list_backbones
from headstart.cli.app import app, out
from headstart.strategies import STRATEGIES


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
        # The docstring's whole first paragraph: its first line alone stops mid-sentence where the source wraps.
        summary = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
        grid = Table(title=f"{name}: {summary}", title_justify="left")
        for column in ("setting", "default", "meaning"):
            grid.add_column(column)
        for field, info in cls.config_class.model_fields.items():
            grid.add_row(field, repr(info.default), info.description or "")
        out.print(grid)
