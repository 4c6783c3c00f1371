"""The plots every evaluation shows (confusion matrix, reliability diagram), drawn as SVG.

Every fit report carries them, so they are written directly: a few hundred bytes of markup in no time, where
matplotlib costs about a second to import and a fraction of one to render (most of a cached re-run's report).
They are returned as ``data:image/svg+xml`` URIs, so the page stays one self-contained file; class names are
escaped text, drawn as written.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

import numpy as np

from headstart.reports.plots import MAX_MATRIX_CLASSES, most_confused, short_label

# matplotlib's "Blues" colour map at nine evenly spaced stops (ColorBrewer), interpolated between.
_BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
_FONT = "font-family='system-ui,sans-serif' font-size='11'"
# Width of a character at the font size above, for the margins that hold labels (an upper bound, roughly).
_CHAR = 6.5


def _blue(share: float) -> str:
    """The "Blues" colour of ``share`` in ``[0, 1]``."""
    position = min(max(share, 0.0), 1.0) * (len(_BLUES) - 1)
    low = int(min(position, len(_BLUES) - 2))
    start, end = (np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) for c in _BLUES[low:low + 2])
    red, green, blue = np.round(start + (end - start) * (position - low)).astype(int)
    return f"#{red:02x}{green:02x}{blue:02x}"


def _text(x: float, y: float, content: str, extra: str = "") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' {_FONT} {extra}>{html.escape(content)}</text>"


def svg_uri(width: float, height: float, body: list[str]) -> str:
    """A ``data:image/svg+xml;base64,...`` URI of an SVG image of ``width`` x ``height`` pixels."""
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
           f"viewBox='0 0 {width:.0f} {height:.0f}'><rect width='100%' height='100%' fill='white'/>"
           + "".join(body) + "</svg>")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def confusion_matrix_plot(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    """Row-normalised confusion matrix (true class per row, colour: share of the row) with counts in the
    cells; beyond :data:`MAX_MATRIX_CLASSES` classes, the most confused ones only (rates stay those of the
    whole row)."""
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    title = "Confusion matrix (colour: share of the true class)"
    shown = np.arange(len(class_names))
    if len(class_names) > MAX_MATRIX_CLASSES:
        shown = most_confused(counts, MAX_MATRIX_CLASSES)
        title = f"The {len(shown)} most confused of {len(class_names)} classes (colour: share of the true class)"
    counts, rates = counts[np.ix_(shown, shown)], rates[np.ix_(shown, shown)]
    labels = [short_label(class_names[i]) for i in shown]
    n, cell = len(labels), 30 if len(labels) <= 12 else 18
    label_room = _CHAR * max(len(label) for label in labels) + 8
    left, top = label_room + 24, 30
    bottom = label_room * 0.72 + 30
    width, height = max(left + n * cell + 12, _CHAR * len(title) + 12), top + n * cell + bottom
    body = [_text(6, 18, title, "font-weight='bold'")]
    for i in range(n):
        row_y = top + i * cell
        body.append(_text(left - 6, row_y + cell / 2 + 4, labels[i], "text-anchor='end'"))
        for j in range(n):
            x = left + j * cell
            body.append(f"<rect x='{x}' y='{row_y}' width='{cell}' height='{cell}' fill='{_blue(rates[i, j])}'/>")
            if counts[i, j] and n <= 25:
                color = "white" if rates[i, j] > 0.5 else "black"
                body.append(_text(x + cell / 2, row_y + cell / 2 + 4, f"{int(counts[i, j])}",
                                  f"text-anchor='middle' fill='{color}'"))
    for j in range(n):
        x, y = left + j * cell + cell / 2, top + n * cell + 8
        body.append(_text(x, y, labels[j], f"text-anchor='end' transform='rotate(-45 {x:.1f} {y:.1f})'"))
    body.append(_text(left + n * cell / 2, height - 6, "predicted", "text-anchor='middle'"))
    middle = top + n * cell / 2
    body.append(_text(12, middle, "true", f"text-anchor='middle' transform='rotate(-90 12 {middle:.1f})'"))
    return svg_uri(width, height, body)


def reliability_plot(bins: dict[str, Sequence[float]], ece: float) -> str:
    """Reliability diagram: accuracy against confidence per bin (bins holding examples), with the diagonal of
    perfect calibration."""
    conf, acc = np.asarray(bins["confidence"], dtype=float), np.asarray(bins["accuracy"], dtype=float)
    keep = np.asarray(bins["count"], dtype=float) > 0
    left, top, size = 44, 30, 240

    def point(x: float, y: float) -> str:
        return f"{left + x * size:.1f},{top + (1 - y) * size:.1f}"

    body = [_text(left, 18, f"Reliability (ECE {ece:.3f})", "font-weight='bold'"),
            f"<rect x='{left}' y='{top}' width='{size}' height='{size}' fill='none' stroke='#555'/>"]
    for tick in np.linspace(0, 1, 6):
        x, y = left + tick * size, top + (1 - tick) * size
        body += [_text(x, top + size + 14, f"{tick:.1f}", "text-anchor='middle'"),
                 _text(left - 5, y + 4, f"{tick:.1f}", "text-anchor='end'")]
    body += [_text(left + size / 2, top + size + 30, "confidence", "text-anchor='middle'"),
             _text(12, top + size / 2, "accuracy", f"text-anchor='middle' transform='rotate(-90 12 {top + size / 2})'"),
             f"<polyline points='{point(0, 0)} {point(1, 1)}' fill='none' stroke='grey' stroke-dasharray='5,4'/>"]
    points = [point(c, a) for c, a in zip(conf[keep], acc[keep], strict=True)]
    if points:
        body.append(f"<polyline points='{' '.join(points)}' fill='none' stroke='#1f77b4' stroke-width='1.5'/>")
        body += [f"<circle cx='{p.split(',')[0]}' cy='{p.split(',')[1]}' r='3' fill='#1f77b4'/>" for p in points]
    body += [f"<line x1='{left + 8}' y1='{top + 12}' x2='{left + 28}' y2='{top + 12}' stroke='grey' "
             "stroke-dasharray='5,4'/>", _text(left + 34, top + 16, "perfectly calibrated"),
             f"<line x1='{left + 8}' y1='{top + 28}' x2='{left + 28}' y2='{top + 28}' stroke='#1f77b4'/>",
             _text(left + 34, top + 32, "model")]
    return svg_uri(left + size + 16, top + size + 40, body)
