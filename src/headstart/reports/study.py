"""The report of a learning-curve study: curves, verdicts, savings and every run."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from headstart.reports.html import cards, figure, page, table, write_report
from headstart.reports.plots import learning_curve_plot, tradeoff_plot
from headstart.studies import SIZE_LABEL, CompareResult
from headstart.studies.target_domain import TARGET_ACCURACY, target_shifts
from headstart.studies.tradeoff import tradeoff_message


def compare_report(result: CompareResult) -> str:
    """The HTML report of ``headstart compare``: learning curves, verdicts, savings, tables."""
    subtitle = (f"{', '.join(result.strategies)} from {result.backbone} on {result.source}; tested on "
                f"{result.n_test} examples ({result.test_source})")
    runs = len(result.records)
    sections = [cards([("runs", str(runs)), ("skipped (time budget)", str(len(result.skipped))),
                       ("sizes", ", ".join(f"{s:g}" for s in result.sizes) + f" {SIZE_LABEL}"),
                       ("seconds", f"{result.seconds:.0f}")])]
    sections.append("<h2>Verdict</h2>")
    for verdict in result.verdicts:
        sections.append(f"<p class='verdict {verdict.status}'><b>{html.escape(verdict.strategy)}</b>: "
                        f"{html.escape(verdict.message)}</p>")
    for saving in result.savings:
        sections.append(f"<p>Data savings: {html.escape(saving.message)}</p>")
    sections.extend(f"<p class='warn'>{html.escape(note)}</p>" for note in result.notes)
    if result.target is not None:
        sections.append(_target_section(result))
    if result.summary:
        curves: dict[str, dict[str, list[Any]]] = {}
        for row in result.summary:
            curve = curves.setdefault(row.strategy, {"size": [], "mean": [], "std": [], "points": []})
            curve["size"].append(row.size)
            curve["mean"].append(row.mean)
            curve["std"].append(row.std or 0.0)
        for record in result.records:
            curves[record.strategy]["points"].append((record.size, record.accuracy))
        sections.append("<h2>Learning curves</h2>" + figure("learning curves", learning_curve_plot, curves, SIZE_LABEL))
        sections.append("<h2>Test accuracy per size</h2>" + table(
            ["strategy", SIZE_LABEL, "seeds", "mean", "std", "95% CI"],
            [[r.strategy, f"{r.size:g}", r.n_seeds, r.mean, r.std,
              "–" if r.ci_low is None else f"{r.ci_low:.3f} – {r.ci_high:.3f}"] for r in result.summary]))
    if len(result.tradeoff) > 1:
        sections.append(f"<h2>Accuracy against forgetting</h2><p>{html.escape(tradeoff_message(result.tradeoff))}"
                        f" (at the largest size each ran; retention is the feature CKA between the source and the "
                        f"transferred backbone on the bundled reference set).</p>"
                        + figure("accuracy against retention", tradeoff_plot, result.tradeoff))
    if result.gains:
        sections.append("<h2>Gain over scratch</h2>" + table(
            ["strategy", SIZE_LABEL, "difference", "95% CI", "p-value"],
            [[g.strategy, f"{g.size:g}", f"{g.difference * 100:+.1f} points",
              "–" if g.ci_low is None else f"{g.ci_low * 100:+.1f} – {g.ci_high * 100:+.1f}",
              "–" if g.p_value is None else f"{g.p_value:.2g}"] for g in result.gains]))
    if result.skipped:
        sections.append("<h2>Skipped runs</h2>" + table(
            ["strategy", SIZE_LABEL, "seed", "reason"],
            [[s.strategy, f"{s.size:g}", s.seed, s.reason] for s in result.skipped]))
    on_target = bool(result.target_summary)
    sections.append("<h2>Every run</h2>" + table(
        ["strategy", SIZE_LABEL, "seed", "training examples", "accuracy", *(["target accuracy"] * on_target),
         "balanced accuracy", "ECE", "retention", "seconds"],
        [[r.strategy, f"{r.size:g}", r.seed, r.n_train, r.accuracy,
          *([r.metrics.get(TARGET_ACCURACY)] * on_target), r.metrics.get("balanced_accuracy"),
          r.metrics.get("ece"), r.metrics.get("retention"), r.seconds] for r in result.records]))
    return page("headstart compare report", subtitle, sections)


def _target_section(result: CompareResult) -> str:
    """The shift from the training data to the target domain and, with a labeled target test set, each
    strategy's accuracy on it beside its accuracy on the source test set."""
    target = result.target or {}
    notes = "".join(f"<p class='warn'>{html.escape(note)}</p>" for note in target.get("notes", []))
    section = f"<h2>Target domain</h2>{_shift_part(target_shifts(target))}{notes}"
    if not result.target_summary:
        return section
    source = {(r.strategy, r.size): r for r in result.summary}
    return section + (f"<p>Accuracy on {target['n_test']} target test examples ({html.escape(target['test_source'])})"
                      f" beside the {result.n_test} source test examples, mean ± std over seeds.</p>") + table(
        ["strategy", SIZE_LABEL, "seeds", "target test", "target std", "source test", "source std"],
        [[r.strategy, f"{r.size:g}", r.n_seeds, r.mean, r.std, source[(r.strategy, r.size)].mean,
          source[(r.strategy, r.size)].std] for r in result.target_summary])


def _shift_part(shifts: list[dict[str, Any]]) -> str:
    """The shift as one sentence for one backbone, or a table with a row per backbone for several."""
    if len(shifts) == 1:
        return f"<p>{html.escape(shifts[0]['summary'])}.</p>"
    return ("<p>Domain shift from the training data to the target as each backbone's frozen features see it "
            "(proxy A-distance: below 0.5 little, below 1.5 moderate, else large).</p>" + table(
                ["backbone", "proxy A-distance", "shift", "domain classifier error", "examples per domain"],
                [[s["backbone"], s["pad"], s["reading"], s["domain_error"], s["n_per_domain"]] for s in shifts]))


def write_compare_report(folder: str | Path, result: CompareResult) -> Path:
    """Write the compare ``report.html`` into ``folder`` atomically; returns its path."""
    return write_report(folder, "headstart compare report", lambda: compare_report(result))
