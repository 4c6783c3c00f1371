"""The ``headstart`` command line: parses and validates options, then calls the Python API.

One module per command group registers its commands on the one Typer :data:`app`.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from headstart.cli import catalog, models, shipping, studies, tuning  # noqa: F401  (registration)
from headstart.cli.app import app, err, parse_settings, shown
from headstart.errors import HeadstartError, HeadstartWarning

__all__ = ["app", "main", "parse_settings"]


_python_showwarning = warnings.showwarning


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
    """headstart's own warnings as one yellow line; any other warning as Python shows it."""
    if issubclass(category, HeadstartWarning):
        err.print(f"[bold yellow]warning:[/] {shown(message)}", highlight=False)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback; headstart's warnings
    one yellow line each."""
    warnings.showwarning = show_warning
    try:
        app()
    except HeadstartError as error:
        err.print(f"[bold red]error:[/] {shown(error)}", highlight=False)
        sys.exit(2)
