"""Self-contained HTML reports (plots embedded), written next to the JSON of every number."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.outputs import write_bytes

if TYPE_CHECKING:
    from headstart.comparison import CompareResult
    from headstart.data import DataSplits
    from headstart.model import TransferModel
    from headstart.ranking import RankResult

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


def table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table; floats are shown with three decimals."""
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def evaluation_section(title: str, metrics: dict[str, Any], class_names: list[str]) -> str:
    """Headline metrics, per-class table, confusion matrix and reliability diagram of one evaluation."""
    from headstart.plots import confusion_matrix_plot, reliability_plot

    parts = [f"<h2>{html.escape(title)}</h2>",
             cards([("accuracy", f"{metrics['accuracy']:.1%}"),
                    ("balanced accuracy", f"{metrics['balanced_accuracy']:.1%}"),
                    ("macro F1", f"{metrics['macro_f1']:.3f}"),
                    ("calibration error (ECE)", f"{metrics['ece']:.3f}"),
                    ("examples", str(metrics.get("n_examples", "")))])]
    per_class = metrics.get("per_class", {})
    rows = [[name, per_class[name]["precision"], per_class[name]["recall"], per_class[name]["f1"],
             per_class[name]["support"]] for name in class_names if name in per_class]
    figures = [f"<img alt='confusion matrix' src='{confusion_matrix_plot(metrics['confusion_matrix'], class_names)}'>"]
    if "reliability" in metrics:
        diagram = reliability_plot(metrics["reliability"], metrics["ece"])
        figures.append(f"<img alt='reliability diagram' src='{diagram}'>")
    parts.append(f"<div class='figs'>{''.join(figures)}</div>")
    parts.append(table(["class", "precision", "recall", "F1", "support"], rows))
    return "".join(parts)


def fit_report(model: TransferModel, splits: DataSplits | None = None) -> str:
    """The HTML report of a ``fit`` run: data, backbone, strategy, results, training curves."""
    from headstart.plots import history_plot

    m = model.metrics
    data = m.get("data", {})
    subtitle = (f"{model.strategy} transfer from {model.backbone.ref} to {data.get('source', 'data')} "
                f"({len(model.class_names)} classes)")
    sizes = [[name, data[f"n_{name}"]] for name in ("train", "val", "test") if f"n_{name}" in data]
    sections = [cards([(f"{name} examples", str(n)) for name, n in sizes]
                      + [("seconds", f"{m.get('seconds', 0):.1f}")])]
    if data.get("skipped"):
        sections.append(f"<p class='warn'>{len(data['skipped'])} unreadable images were skipped: "
                        f"{html.escape(', '.join(data['skipped'][:10]))}</p>")
    sections.extend(f"<p class='warn'>Warning: {html.escape(w)}</p>" for w in m.get("warnings", []))
    if "backbone_ranking" in m:
        sections.append(ranking_section("Backbone choice (--backbone auto)", m["backbone_ranking"]))
    if "calibration" in m:
        sections.append(calibration_section(m["calibration"]))
    for name in ("test", "val"):
        if name in m:
            sections.append(evaluation_section(f"Results on the {name} split", m[name], model.class_names))
    history = m.get("train", {}).get("history")
    if history:
        sections.append(f"<h2>Training</h2><img alt='training curves' src='{history_plot(history)}'>")
    settings = [[k, v] for k, v in model.strategy_config.items()]
    sections.append("<h2>Settings</h2>" + table(["setting", "value"], settings))
    return page("headstart fit report", subtitle, sections)


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


def ranking_rows(ranking: dict[str, Any]) -> tuple[list[str], list[str], list[list[Any]]]:
    """Score names, table header and rows (rank, backbone, scores, seconds) of a ``rank.json`` dict."""
    rows = ranking["backbones"]
    names = list(dict.fromkeys(k for row in rows for k in row["scores"]))
    names.sort(key=lambda n: n != ranking["sort_by"])
    header = ["backbone", "rank", "dim", *names, "seconds"]
    body = [[row["backbone"], i + 1, row["feature_dim"], *[row["scores"].get(n) for n in names], row["seconds"]]
            for i, row in enumerate(rows)]
    return names, header, body


def ranking_section(title: str, ranking: dict[str, Any]) -> str:
    """A backbone ranking: which won and why, the score table and bar charts."""
    from headstart.plots import score_bars_plot

    names, header, body = ranking_rows(ranking)
    chart = score_bars_plot([row["backbone"] for row in ranking["backbones"]],
                            {n: [row["scores"].get(n) for row in ranking["backbones"]] for n in names},
                            ranking["sort_by"])
    return (f"<h2>{html.escape(title)}</h2><p>Chosen: <b>{html.escape(ranking['best'])}</b> — "
            f"{html.escape(ranking['explanation'])}. Every score is higher-is-better.</p>"
            + table(header, body) + f"<p><img alt='transferability scores' src='{chart}'></p>")


SCORE_MEANINGS = {
    "logme": "log evidence of a Bayesian linear model on the features (You et al. 2021)",
    "hscore": "class separation relative to feature spread, shrinkage-regularised (Bao et al. 2019)",
    "knn": "cross-validated k-nearest-neighbour accuracy",
    "linear_probe": "cross-validated logistic-regression accuracy",
    "leep": "log expected empirical prediction of the pre-training classifier (Nguyen et al. 2020)",
    "nce": "negative conditional entropy of labels given the pre-training class (Tran et al. 2019)",
}


def rank_report(result: RankResult) -> str:
    """The HTML report of ``headstart rank``."""
    ranking = result.to_dict()
    plural = "s" if len(result.rows) > 1 else ""
    subtitle = (f"{len(result.rows)} {result.modality} backbone{plural} scored on {result.n_examples} "
                f"training examples of {result.n_classes} classes from {result.source}, frozen features, no training")
    meanings = "<ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(SCORE_MEANINGS.get(n, ''))}</li>"
                                for n in result.score_names) + "</ul>"
    sections = [cards([("best backbone", result.best), ("ranked by", result.sort_by),
                       ("examples", str(result.n_examples))]),
                ranking_section("Ranking", ranking), "<h2>The scores</h2>" + meanings,
                "<p class='sub'>Scores rank backbones for one data set; their values are not comparable across "
                "data sets. LEEP and NCE need the backbone's pre-training classifier.</p>"]
    return page("headstart rank report", subtitle, sections)


def compare_report(result: CompareResult) -> str:
    """The HTML report of ``headstart compare``: learning curves, verdicts, savings, tables."""
    from headstart.comparison import SIZE_LABEL
    from headstart.plots import learning_curve_plot

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
    if result.summary:
        curves: dict[str, dict[str, list[Any]]] = {}
        for row in result.summary:
            curve = curves.setdefault(row.strategy, {"size": [], "mean": [], "std": [], "points": []})
            curve["size"].append(row.size)
            curve["mean"].append(row.mean)
            curve["std"].append(row.std or 0.0)
        for record in result.records:
            curves[record.strategy]["points"].append((record.size, record.accuracy))
        sections.append(f"<h2>Learning curves</h2><img alt='learning curves' "
                        f"src='{learning_curve_plot(curves, SIZE_LABEL)}'>")
        sections.append("<h2>Test accuracy per size</h2>" + table(
            ["strategy", SIZE_LABEL, "seeds", "mean", "std", "95% CI"],
            [[r.strategy, f"{r.size:g}", r.n_seeds, r.mean, r.std,
              "–" if r.ci_low is None else f"{r.ci_low:.3f} – {r.ci_high:.3f}"] for r in result.summary]))
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
    sections.append("<h2>Every run</h2>" + table(
        ["strategy", SIZE_LABEL, "seed", "training examples", "accuracy", "balanced accuracy", "ECE", "seconds"],
        [[r.strategy, f"{r.size:g}", r.seed, r.n_train, r.accuracy, r.metrics.get("balanced_accuracy"),
          r.metrics.get("ece"), r.seconds] for r in result.records]))
    return page("headstart compare report", subtitle, sections)


def write_rank_report(folder: str | Path, result: RankResult) -> Path:
    """Write the rank ``report.html`` into ``folder`` atomically; returns its path."""
    path = Path(folder) / "report.html"
    write_bytes(path, rank_report(result).encode("utf-8"))
    return path


def write_compare_report(folder: str | Path, result: CompareResult) -> Path:
    """Write the compare ``report.html`` into ``folder`` atomically; returns its path."""
    path = Path(folder) / "report.html"
    write_bytes(path, compare_report(result).encode("utf-8"))
    return path


def write_fit_report(folder: str | Path, model: TransferModel, splits: DataSplits | None = None) -> Path:
    """Write ``report.html`` into ``folder`` atomically; returns its path."""
    path = Path(folder) / "report.html"
    write_bytes(path, fit_report(model, splits).encode("utf-8"))
    return path
