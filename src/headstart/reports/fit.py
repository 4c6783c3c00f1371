"""The report of one trained model: headline metrics, confusion matrix, calibration, training curves."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from headstart.data import DataSplits
from headstart.model import TransferModel
from headstart.reports.html import (
    calibration_section,
    cards,
    evaluation_section,
    figure,
    forgetting_section,
    page,
    table,
    write_report,
)
from headstart.reports.plots import history_plot
from headstart.reports.ranking import ranking_section
from headstart.training.outcome import stop_message


def fit_report(model: TransferModel, splits: DataSplits | None = None) -> str:
    """The HTML report of a ``fit`` run: data, backbone, strategy, results, training curves."""
    return page("headstart fit report", model_subtitle(model), model_sections(model))


def model_subtitle(model: TransferModel) -> str:
    """One line saying what was transferred from where to what."""
    source = model.metrics.get("data", {}).get("source", "data")
    return f"{model.strategy} transfer from {model.backbone.ref} to {source} ({len(model.class_names)} classes)"


def model_sections(model: TransferModel) -> list[str]:
    """The report sections of a trained model: data, warnings, results, training curves, settings."""
    m = model.metrics
    data = m.get("data", {})
    sizes = [[name, data[f"n_{name}"]] for name in ("train", "val", "test") if f"n_{name}" in data]
    sections = [cards([(f"{name} examples", str(n)) for name, n in sizes]
                      + [("seconds", f"{m.get('seconds', 0):.1f}")])]
    if data.get("skipped"):
        sections.append(f"<p class='warn'>{len(data['skipped'])} unusable files were skipped: "
                        f"{html.escape(', '.join(data['skipped'][:10]))}</p>")
    sections.extend(f"<p class='warn'>Warning: {html.escape(w)}</p>" for w in m.get("warnings", []))
    sections.extend(f"<p class='warn'>Small data: {html.escape(note)}</p>" for note in m.get("held_out", []))
    # What the backbone said about the inputs (e.g. how long audio clips were cut).
    sections.extend(f"<p>{html.escape(entry['note'])}</p>" for entry in data.values()
                    if isinstance(entry, dict) and "note" in entry)
    if "backbone_ranking" in m:
        sections.append(ranking_section("Backbone choice (--backbone auto)", m["backbone_ranking"]))
    if "auto" in m.get("train", {}):
        sections.append(auto_section(m["train"]["auto"]))
    if "calibration" in m:
        sections.append(calibration_section(m["calibration"]))
    for name in ("test", "val"):
        if name in m:
            sections.append(evaluation_section(f"Results on the {name} split", m[name], model.class_names))
    if "target" in m:
        sections.append(target_section(m["target"], model.class_names))
    if m.get("cross_validation"):
        sections.append(evaluation_section(f"Results by {m['cross_validation']['method']}", m["cross_validation"],
                                           model.class_names))
    if "forgetting" in m:
        sections.append(forgetting_section(m["forgetting"]))
    stopped = stop_message(m.get("train", {}), backbone_trained=model.backbone_trained)
    if stopped:
        sections.append(f"<p class='warn'>Training {html.escape(stopped)}.</p>")
    history = m.get("train", {}).get("history")
    if history:
        sections.append("<h2>Training</h2>" + figure("training curves", history_plot, history, stopped))
    settings = [[k, v] for k, v in model.strategy_config.items()]
    sections.append("<h2>Settings</h2>" + table(["setting", "value"], settings))
    return sections


def auto_section(record: dict[str, Any]) -> str:
    """What ``--strategy auto`` tried, what it cost and why the winner won."""
    rows = [[name, f"{scores['cv_accuracy']:.1%}", f"{scores['cv_log_loss']:.3f}",
             ", ".join(f"{key} {scores[key]:.3g}" for key in ("C", "weight") if key in scores)]
            for name, scores in record.get("tried", {}).items() if scores]
    parts = [f"<h2>What auto tried</h2><p>Winner: <b>{html.escape(record['winner'])}</b>: "
             f"{html.escape(record.get('why', ''))}.</p>"]
    if rows:
        parts.append(table(["frozen-feature candidate", "cross-validated accuracy", "log loss", "setting"], rows))
    planned = record.get("finetune_settings")
    planned = f" (planned: {', '.join(f'{k} {v}' for k, v in planned.items())})" if planned else ""
    parts.append(f"<p>Fine-tuning: {html.escape(record.get('finetune', ''))}{html.escape(planned)}.</p>")
    result = record.get("finetune_result")
    if result:
        parts.append(f"<p>{html.escape(result['strategy'])} reached {result['held_out_accuracy']:.1%} on "
                     f"{result['n_held_out']} held-out training examples against the probe's "
                     f"{result['probe_held_out_accuracy']:.1%} ({result['seconds']:.0f} s).</p>")
    cost = f"<p>Cost: {record.get('probe_cpu_seconds', 0):.1f} CPU s for the frozen-feature candidates (feature " \
           f"extraction {record.get('extraction_cpu_seconds', 0):.1f} of them), {record.get('seconds', 0):.1f} s " \
           "wall in all"
    if record.get("remembered"):
        tuned = bool(result) and record.get("winner") == result["strategy"]
        again = "fine-tuned again as planned then" if tuned else "loaded it from the feature cache"
        cost += f" (when the choice was made; this run {again})"
    return "".join(parts) + cost + ".</p>"


def target_section(target: dict, class_names: list[str]) -> str:
    """The target domain: how far it is from the source (proxy A-distance) and the results on its labeled data."""
    parts = [f"<h2>Target domain</h2><p>{target.get('n_unlabeled', 0)} unlabeled target examples from "
             f"{html.escape(str(target.get('source', '')))}.</p>"]
    if "shift" in target:
        parts.append(f"<p>{html.escape(target['shift']['summary'])}. Readings: PAD below 0.5 is a little shift, "
                     "below 1.5 a moderate one, above that a large one.</p>")
    if "test" in target:
        parts.append(evaluation_section(f"Results on the target test data ({target['test']['source']})",
                                        target["test"], class_names))
    return "".join(parts)


def write_fit_report(folder: str | Path, model: TransferModel, splits: DataSplits | None = None) -> Path:
    """Write the fit ``report.html`` into ``folder`` atomically; returns its path."""
    return write_report(folder, "headstart fit report", lambda: fit_report(model, splits))
