"""How headstart's objects show themselves: a one-line ``repr`` in a console, a small HTML table in a notebook.

A notebook renders an object's ``_repr_html_`` when it is the last value of a cell; these helpers keep that
short whatever the data's size: at most :data:`MAX_ROWS` rows, then how many more there are (as
:func:`~headstart.errors.listing` does for messages).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

#: Most rows a notebook table shows; the rest are counted below it.
MAX_ROWS = 10


def html_cell(value: Any) -> str:
    """``value`` escaped for an HTML cell; floats with four significant digits (a learning rate of 5e-05 stays
    readable where fixed decimals would show 0.000), ``None`` as a dash."""
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def html_table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]], *, limit: int | None = None,
               caption: str = "") -> str:
    """An HTML table of ``rows`` under ``header``.

    Args:
        header: Column names (``None``: no header row, e.g. for a table of named facts).
        rows: Cell values (see :func:`html_cell`).
        limit: Show at most this many rows and count the rest in a last row (``None``: every row).
        caption: A sentence above the table (escaped).

    Example:
        >>> html_table(["class", "examples"], [["cat", 3], ["dog", 4]], caption="Two classes.")
        '<table><caption>Two classes.</caption><tr><th>class</th>...'
    """
    shown = rows if limit is None else rows[:limit]
    head = "" if header is None else "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html_cell(v)}</td>" for v in row) + "</tr>" for row in shown)
    if len(rows) > len(shown):
        body += f"<tr><td colspan='{len(rows[0])}'>… and {len(rows) - len(shown)} more</td></tr>"
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}{head}{body}</table>"


def facts_table(caption: str, facts: Sequence[tuple[str, Any]]) -> str:
    """A two-column HTML table of named facts (``("classes", 10)``), for an object's ``_repr_html_``."""
    return html_table(None, facts, caption=caption)


def percent(value: float | None) -> str:
    """An accuracy in ``[0, 1]`` as ``"83.6%"`` (``"–"`` when unknown)."""
    return "–" if value is None else f"{value:.1%}"


def mean_std(mean: float, std: float | None) -> str:
    """``"83.6% ± 1.2%"`` (the ``±`` part only with a standard deviation)."""
    return percent(mean) + ("" if std is None else f" ± {std:.1%}")
