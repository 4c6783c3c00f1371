"""The report of a backbone ranking: scores per backbone, as a table and as bars."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from headstart.reports.html import cards, figure, page, table, write_report
from headstart.reports.plots import score_bars_plot
from headstart.transferability import RankResult


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
    names, header, body = ranking_rows(ranking)
    chart = figure("transferability scores", score_bars_plot, [row["backbone"] for row in ranking["backbones"]],
                   {n: [row["scores"].get(n) for row in ranking["backbones"]] for n in names}, ranking["sort_by"])
    return (f"<h2>{html.escape(title)}</h2><p>Chosen: <b>{html.escape(ranking['best'])}</b> — "
            f"{html.escape(ranking['explanation'])}. Every score is higher-is-better.</p>"
            + table(header, body) + f"<p>{chart}</p>")


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


def write_rank_report(folder: str | Path, result: RankResult) -> Path:
    """Write the rank ``report.html`` into ``folder`` atomically; returns its path."""
    return write_report(folder, "headstart rank report", lambda: rank_report(result))
