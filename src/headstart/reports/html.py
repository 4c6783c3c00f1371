"""The building blocks of headstart's self-contained HTML reports (plots embedded as PNG or SVG images)."""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headstart.display import html_table as table
from headstart.errors import HeadstartWarning
from headstart.io import write_bytes
from headstart.reports.svg import confusion_matrix_plot, reliability_plot

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
     padding:0 1em;color:#1d2330;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #dde}
.sub{color:#5a6275;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{background:#f3f5fa;border-radius:8px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.4em} .card span{color:#5a6275;font-size:.85em}
table{border-collapse:collapse;font-size:.9em} td,th{padding:.25em .7em;border-bottom:1px solid #e5e8f0;
     text-align:right} th:first-child,td:first-child{text-align:left}
.warn{background:#fff4e0;border-left:4px solid #f0a020;padding:.5em 1em}
.verdict{padding:.5em 1em;border-left:4px solid #8a93a6;background:#f3f5fa}
.verdict.positive{border-color:#2e9d55;background:#e9f7ee} .verdict.negative{border-color:#d0453a;background:#fdecea}
img{max-width:100%} .figs{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
"""


def page(title: str, subtitle: str, sections: list[str]) -> str:
    """A complete HTML page with the report style."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='sub'>{html.escape(subtitle)}</p>{''.join(sections)}</body></html>")


def cards(values: list[tuple[str, str]]) -> str:
    """A row of headline numbers."""
    items = "".join(f"<div class='card'><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>"
                    for k, v in values)
    return f"<div class='cards'>{items}</div>"


def evaluation_section(title: str, metrics: dict[str, Any], class_names: list[str]) -> str:
    """Headline metrics, per-class table, confusion matrix and reliability diagram of one evaluation."""
    parts = [f"<h2>{html.escape(title)}</h2>",
             cards([("accuracy", f"{metrics['accuracy']:.1%}"),
                    ("balanced accuracy", f"{metrics['balanced_accuracy']:.1%}"),
                    ("macro F1", f"{metrics['macro_f1']:.3f}"),
                    ("calibration error (ECE)", f"{metrics['ece']:.3f}"),
                    ("examples", str(metrics.get("n_examples", "")))])]
    per_class = metrics.get("per_class", {})
    rows = [[name, per_class[name]["precision"], per_class[name]["recall"], per_class[name]["f1"],
             per_class[name]["support"]] for name in class_names if name in per_class]
    figures = [figure("confusion matrix", confusion_matrix_plot, metrics["confusion_matrix"], class_names)]
    if "reliability" in metrics:
        figures.append(figure("reliability diagram", reliability_plot, metrics["reliability"], metrics["ece"]))
    parts.append(f"<div class='figs'>{''.join(figures)}</div>")
    parts.append(table(["class", "precision", "recall", "F1", "support"], rows))
    return "".join(parts)


def calibration_section(calibration: dict[str, Any]) -> str:
    """Temperature scaling: the fitted temperature and ECE per split before and after it."""
    before, after = calibration["ece_before"], calibration["ece_after"]
    rows = [[f"{name} split" + (" (fitted here, optimistic)" if name == "val" else ""), before[name],
             after[name]] for name in ("test", "val") if name in before]
    t = calibration["temperature"]
    effect = ("the model was overconfident, so probabilities are softened" if t > 1 else
              "the model was underconfident, so probabilities are sharpened")
    return (f"<h2>Calibration</h2><p>Softmax temperature <b>{t:.3f}</b> fitted on the "
            f"{html.escape(calibration['fitted_on'])}: {effect}; predictions and accuracy are unchanged. "
            f"Expected calibration error (lower is better); the results below use the temperature:</p>"
            + table(["evaluated on", "ECE before", "ECE after"], rows))


def forgetting_section(forgetting: dict[str, Any]) -> str:
    """What the transferred backbone kept of its source, per input set (see headstart.evaluation.forgetting)."""
    measures = ["feature_cka", "mean_cosine", "similarity_spearman", "source_agreement", "source_kl"]
    rows = [[part.get("name", f"{part['n']} {name} inputs"), *(part.get(k) for k in measures)]
            for name in ("reference", "target") if (part := forgetting.get(name))]
    notes = "".join(f"<p class='sub'>{html.escape(note)}</p>" for note in forgetting.get("notes", []))
    task = forgetting.get("source_task")
    if task is not None:
        notes = (f"<p>Source task: accuracy <b>{task['accuracy_before']:.1%}</b> before transfer, "
                 f"<b>{task['accuracy_after']:.1%}</b> after, on the {html.escape(task['name'])}, read by "
                 f"{html.escape(task['head'])} (kept, not refitted).</p>") + notes
    return ("<h2>What the backbone kept of its source</h2>"
            + table(["inputs", "feature CKA", "mean cosine", "similarity Spearman", "source top-1 kept",
                     "source KL"], rows) + notes)


def report_failure(part: str, error: Exception) -> str:
    """A warning (for the caller) and a paragraph (for the report) saying that ``part`` could not be made."""
    reason = f"{type(error).__name__}: {str(error)[:300]}"
    warnings.warn(f"the {part} of the report could not be made ({reason}); the rest of the run is unaffected",
                  HeadstartWarning, stacklevel=3)
    return f"<p class='warn'>The {html.escape(part)} could not be made ({html.escape(reason)}).</p>"


def figure(alt: str, draw: Callable[..., str], *args: Any) -> str:
    """An ``<img>`` of the plot ``draw(*args)`` returns as a data URI; if drawing fails, a paragraph naming the
    plot and the error instead (a plot never fails a run)."""
    try:
        uri = draw(*args)
    except Exception as error:  # any plotting failure; the report says which plot and why
        return report_failure(alt, error)
    return f"<img alt='{html.escape(alt)}' src='{uri}'>"


def write_report(folder: str | Path, title: str, build: Callable[[], str]) -> Path:
    """Write the page ``build()`` returns as ``report.html`` into ``folder`` atomically; returns its path.

    A report is an account of results that are already saved: if building it fails, the page says so and
    the caller gets a warning, never an error.
    """
    try:
        content = build()
    except Exception as error:  # whatever broke, the model and JSON files beside the report are intact
        content = page(title, "", [report_failure("report", error)
                                   + "<p>The results are in the JSON files in this folder.</p>"])
    path = Path(folder) / "report.html"
    write_bytes(path, content.encode())
    return path
