"""Plots for reports, drawn with matplotlib and returned as PNG data URIs so an HTML report is one self-contained
file (the two every evaluation shows are SVG: :mod:`headstart.reports.svg`).

Labels come from users' data (class names, file paths), so text is drawn literally: matplotlib's math mode
(``$...$``) is off, long labels are cut, and a figure never grows with the number of classes beyond a bound.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., str])

#: A confusion matrix with more classes shows only this many: those with the most errors.
MAX_MATRIX_CLASSES = 40
MAX_LABEL_CHARS = 32
# A "$" in a class name would start matplotlib math text, which fails on unbalanced or unknown TeX.
_LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


@functools.cache
def pyplot() -> Any:
    """matplotlib's ``pyplot`` on the Agg backend, imported by the first plot drawn: it costs about a second
    of start-up that a command drawing no plot does not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def literal_text(draw: F) -> F:
    """Run a plot function with matplotlib's math text and TeX off, so every label is drawn as written."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        with pyplot().rc_context(_LITERAL_TEXT):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def short_label(text: str) -> str:
    """``text`` cut to :data:`MAX_LABEL_CHARS` characters (its end kept: paths and refs differ there)."""
    text = str(text)
    return text if len(text) <= MAX_LABEL_CHARS else "…" + text[-(MAX_LABEL_CHARS - 1):]


def to_data_uri(fig: Any) -> str:
    """Render a matplotlib figure to a ``data:image/png;base64,...`` URI and close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def most_confused(counts: np.ndarray, limit: int) -> np.ndarray:
    """Indices (in class order) of the ``limit`` classes with the most errors, as true or predicted class."""
    errors = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
    return np.sort(np.argsort(-errors, kind="stable")[:limit])


@literal_text
def history_plot(history: Sequence[dict[str, Any]], stop: str | None = None) -> str:
    """Training curves in panels with their own axes (losses, accuracies, learning rate), a dashed line where
    each stage after the first starts, and ``stop`` (why training ended short) under the panels."""
    keys = [k for k in dict.fromkeys(k for row in history for k, v in row.items()
                                     if k not in ("epoch", "seconds", "partial") and isinstance(v, (int, float)))]
    panels = [(title, group) for title, group in (
        ("loss", [k for k in keys if "loss" in k]), ("accuracy", [k for k in keys if "acc" in k]),
        ("learning rate", [k for k in keys if k == "lr"])) if group]
    fig, axes = pyplot().subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    epochs = [row.get("epoch", i) for i, row in enumerate(history)]
    starts = [(row.get("epoch", i), row["stage"]) for i, row in enumerate(history)
              if "stage" in row and i > 0 and history[i - 1].get("stage") != row["stage"]]
    for ax, (title, group) in zip(axes.flat, panels, strict=False):
        for key in group:
            ax.plot(epochs, [row.get(key, np.nan) for row in history], marker=".", label=key)
        for epoch, stage in starts:
            ax.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(stage, (epoch - 0.5, 1), xycoords=("data", "axes fraction"), fontsize=7, ha="left",
                        va="top")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=8)
    if stop:
        fig.text(0.5, 0.01, stop, ha="center", fontsize=8, color="#a15c00")
        fig.subplots_adjust(bottom=0.22)
    return to_data_uri(fig)


@literal_text
def score_bars_plot(backbones: Sequence[str], scores: dict[str, Sequence[float | None]], sort_by: str) -> str:
    """One horizontal bar chart per transferability score (their scales differ), backbones in rank order.

    Args:
        backbones: Backbone names, best first.
        scores: Score name -> one value per backbone (``None`` where not computed).
        sort_by: The score the ranking uses; its panel comes first and is highlighted.
    """
    names = [sort_by, *[n for n in scores if n != sort_by]]
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = pyplot().subplots(rows, columns, figsize=(3.4 * columns, rows * (0.4 * len(backbones) + 1.3)),
                             squeeze=False)
    positions = np.arange(len(backbones))
    labels = [short_label(b) for b in backbones]
    for index, ax in enumerate(axes.flat):
        if index >= len(names):
            ax.set_visible(False)
            continue
        name = names[index]
        values = np.array([np.nan if v is None else v for v in scores[name]], dtype=float)
        bars = ax.barh(positions, np.nan_to_num(values, nan=0.0),
                       color="#2f6fb0" if name == sort_by else "#9db4cf")
        ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.3g}" for v in values], padding=3, fontsize=8)
        ax.margins(x=0.3)
        ax.set_title(name + (" (ranks by)" if name == sort_by else ""), fontsize=10)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_yticks(positions, labels if index % columns == 0 else [""] * len(labels))
        ax.invert_yaxis()
    fig.suptitle("Transferability scores (higher is better; best backbone on top)", fontsize=11)
    fig.tight_layout()
    return to_data_uri(fig)


@literal_text
def learning_curve_plot(curves: dict[str, dict[str, Sequence[float]]], size_label: str,
                        metric: str = "test accuracy") -> str:
    """Mean test accuracy against training-set size per strategy, a band of ± one std over seeds, and each
    seed's result as a faint dot; log-scale size axis.

    Args:
        curves: Strategy -> ``{"size", "mean", "std"}`` lists (std 0 for single seeds) plus ``"points"``:
            ``[(size, value), ...]`` of every run.
        size_label: Unit of the x axis (``"examples/class"``).
        metric: Name of the y axis.
    """
    from matplotlib import ticker

    fig, ax = pyplot().subplots(figsize=(7.5, 4.6))
    for index, (name, curve) in enumerate(curves.items()):
        color = f"C{index}"
        size, mean, std = (np.asarray(curve[k], dtype=float) for k in ("size", "mean", "std"))
        ax.plot(size, mean, marker="o", color=color, label=name)
        ax.fill_between(size, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
        points = np.asarray(curve.get("points", []), dtype=float).reshape(-1, 2)
        ax.scatter(points[:, 0], points[:, 1], color=color, s=10, alpha=0.35)
    ax.set_xscale("log")
    # Ticks at the measured sizes only: a log axis alone labels just the powers of ten.
    sizes = sorted({float(s) for curve in curves.values() for s in curve["size"]})
    ax.xaxis.set_major_locator(ticker.FixedLocator(sizes))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel(f"training examples ({size_label}, log scale)")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves (mean ± 1 std over seeds; dots: single runs)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return to_data_uri(fig)


@literal_text
def tradeoff_plot(points: Sequence[Any]) -> str:
    """Target accuracy against retention (feature CKA to the source backbone), one dot per strategy; the
    frontier (strategies no other beats on both axes) is joined by a line."""
    fig, ax = pyplot().subplots(figsize=(6.0, 4.4))
    for index, point in enumerate(points):
        marker = "o" if not point.dominated_by else "x"
        ax.scatter(point.retention, point.accuracy, color=f"C{index}", marker=marker, s=60, label=point.strategy)
    frontier = sorted((p for p in points if not p.dominated_by), key=lambda p: p.retention)
    if len(frontier) > 1:
        ax.plot([p.retention for p in frontier], [p.accuracy for p in frontier], color="#8a93a6", linewidth=1,
                linestyle="--", label="frontier")
    ax.set_xlabel("retention: feature CKA to the source backbone (1 = unchanged)")
    ax.set_ylabel("target test accuracy")
    ax.set_title("What each strategy kept of the source, and what it gained (x: dominated)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
def optimisation_history_plot(trials: Sequence[dict[str, Any]], objective: str) -> str:
    """Each complete trial's score (dots; pruned trials as crosses at their last reported score) and the best
    so far (line), by trial number."""
    fig, ax = pyplot().subplots(figsize=(7, 3.6))
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    pruned = [t for t in trials if t["state"] == "PRUNED" and t["intermediate"]]
    if complete:
        numbers = [t["number"] for t in complete]
        values = [t["value"] for t in complete]
        ax.scatter(numbers, values, s=22, color="#3b6fd8", label="trial", zorder=3)
        ax.step(numbers, np.maximum.accumulate(values), where="post", color="#d0453a", label="best so far")
        defaults = [t for t in complete if t.get("defaults")]
        if defaults:
            ax.scatter([defaults[0]["number"]], [defaults[0]["value"]], s=70, facecolors="none",
                       edgecolors="black", label="defaults", zorder=4)
    if pruned:
        ax.scatter([t["number"] for t in pruned], [list(t["intermediate"].values())[-1] for t in pruned],
                   marker="x", color="#8a93a6", label="pruned (last score)")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return to_data_uri(fig)


def importance_plot(importances: dict[str, float]) -> str:
    """Horizontal bars: each setting's share of the score's variance (fANOVA), largest on top."""
    names = list(importances)[::-1]
    fig, ax = pyplot().subplots(figsize=(6, 0.4 * len(names) + 1))
    ax.barh(names, [importances[n] for n in names], color="#3b6fd8")
    ax.set_xlabel("importance (share of variance)")
    ax.set_xlim(0, 1)
    return to_data_uri(fig)
