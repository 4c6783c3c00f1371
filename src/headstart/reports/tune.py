"""The report of a tuning study: the best settings against the defaults, optimisation history, parameter
importances, every trial, then the refit best model's own report."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from headstart.model import TransferModel
from headstart.reports.fit import model_sections
from headstart.reports.html import cards, figure, page, table, write_report
from headstart.reports.plots import importance_plot, optimisation_history_plot


def tune_report(study: dict[str, Any], model: TransferModel | None) -> str:
    """The HTML report of ``headstart tune`` from its ``study.json`` content and the refit model."""
    states = [t["state"] for t in study["trials"]]
    best, defaults = study.get("best"), study.get("defaults")
    headline = [("trials complete", str(states.count("COMPLETE"))), ("pruned", str(states.count("PRUNED"))),
                ("failed", str(states.count("FAIL")))]
    if best:
        headline.append((f"best {study['objective']}", f"{best['value']:.1%}"))
    if defaults:
        headline.append((f"defaults' {study['objective']}", f"{defaults['value']:.1%}"))
    chosen = study.get("chosen") or best
    if "test" in study and chosen:
        which = "defaults'" if study.get("selection", {}).get("kept_defaults") else "best settings'"
        headline.append((f"{which} test accuracy (trial {chosen['number']})", f"{study['test']['accuracy']:.1%}"))
    sections = [cards(headline),
                f"<p>Study <b>{study['study']}</b> in <code>{study['storage']}</code>: trials are scored on the "
                "validation split only; the test split is used once, by the refit of the chosen trial: "
                f"{html.escape(study.get('selection', {}).get('why', 'the best one'))}.</p>"]
    if best:
        names = sorted(set(best["params"]) | set((defaults or {}).get("params", {})))
        rows = [[n, best["params"].get(n), (defaults or {}).get("params", {}).get(n)] for n in names]
        sections.append("<h2>Best settings</h2>" + table(["setting", f"best (trial {best['number']})", "defaults"],
                                                         rows))
    if any(s == "COMPLETE" for s in states):
        sections.append("<h2>Optimisation history</h2>" + figure("optimisation history", optimisation_history_plot,
                                                                  study["trials"], study["objective"]))
    if study.get("importances"):
        sections.append("<h2>Parameter importances</h2>" + figure("parameter importances", importance_plot,
                                                                   study["importances"]))
    space = [[n, d["kind"], d.get("values") or f"{d['low']:g} .. {d['high']:g}" + (" (log)" if d["log"] else "")]
             for n, d in study["space"].items()]
    sections.append("<h2>Search space</h2>" + table(["setting", "kind", "range"], space))
    params = list(study["space"])
    rows = [[t["number"], t["state"], t["value"], t["seconds"], *[t["params"].get(p) for p in params]]
            for t in study["trials"]]
    sections.append("<h2>Trials</h2>" + table(["trial", "state", study["objective"], "seconds", *params], rows))
    if model is not None:
        sections.append("<h1>The best settings, refit</h1>")
        sections.extend(model_sections(model))
    return page("headstart tune report", f"{study['strategy']} on {study['backbone']}, seed {study['seed']}",
                sections)


def write_tune_report(folder: str | Path, study: dict[str, Any], model: TransferModel | None) -> Path:
    """Write the tune ``report.html`` into ``folder`` atomically; returns its path."""
    return write_report(folder, "headstart tune report", lambda: tune_report(study, model))
