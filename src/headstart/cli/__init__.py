"""The ``headstart`` command line: parses and validates options, then calls the Python API.

One module per command group registers its commands on the one Typer :data:`app`.
"""

from __future__ import annotations

import sys

from headstart.cli import catalog, models, shipping, studies  # noqa: F401  (registration)
from headstart.cli.app import app, err, parse_settings, shown
from headstart.errors import HeadstartError

__all__ = ["app", "main", "parse_settings"]


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        app()
    except HeadstartError as error:
        err.print(f"[bold red]error:[/] {shown(error)}", highlight=False)
        sys.exit(2)
