"""Plots for reports, returned as PNG data URIs so an HTML report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def to_data_uri(fig: Any) -> str:
    """Render a matplotlib figure to a ``data:image/png;base64,...`` URI and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def confusion_matrix_plot(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    """Row-normalised confusion matrix (true class per row) with counts in the cells."""
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 25:
        for (i, j), value in np.ndenumerate(counts):
            if value:
                ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title("Confusion matrix (colour: share of the true class)")
    return to_data_uri(fig)


def reliability_plot(bins: dict[str, Sequence[float]], ece: float) -> str:
    """Reliability diagram: accuracy against confidence per bin, with the diagonal of perfect calibration."""
    conf = np.asarray(bins["confidence"], dtype=float)
    acc = np.asarray(bins["accuracy"], dtype=float)
    count = np.asarray(bins["count"], dtype=float)
    keep = count > 0
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(conf[keep], acc[keep], marker="o", label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    return to_data_uri(fig)


def history_plot(history: Sequence[dict[str, float]]) -> str:
    """Training curves: every numeric series in a per-epoch history, losses and accuracies side by side."""
    keys = sorted({k for row in history for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))})
    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if k not in losses]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    for ax, group, title in ((axes[0], losses, "loss"), (axes[1], others, "metrics")):
        for key in group:
            ax.plot(epochs, [row.get(key, np.nan) for row in history], marker=".", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if group:
            ax.legend(fontsize=8)
    return to_data_uri(fig)
