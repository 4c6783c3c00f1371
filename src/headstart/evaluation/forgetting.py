"""Catastrophic forgetting, measured: how much of the source backbone a transferred backbone kept.

Fine-tuning can overwrite what the pre-trained weights knew. Three measures compare the source backbone
(rebuilt from the model's reference, as it was before transfer) with the transferred one on the same inputs:

* ``feature_cka``: linear centered kernel alignment of the two feature matrices (Kornblith et al. 2019); 1.0
  means the representation is unchanged up to rotation and scale. ``mean_cosine``: the average cosine between
  each input's old and new feature vector.
* ``similarity_spearman``: Spearman correlation between the pairwise cosine similarities of the inputs before
  and after (does the backbone still see the same things as alike?); the natural measure for sentence encoders.
* ``source_agreement`` and ``source_kl``, where the backbone ships its pre-training classifier (the ImageNet
  head of ``efficientnet_lite0``): the share of inputs whose source top-1 class is unchanged when the old head
  reads the new features, and the mean KL divergence between the old and new source distributions.

They are measured on a small bundled *reference set* from the source domain (natural photos, general
sentences; see ``reference/LICENSE.md``), kept apart from the target data so the numbers say what was lost
outside the task, and on (part of) the target's test split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from headstart.backbones import Backbone, FeatureCache, SourceHead, create_backbone, extract_features
from headstart.data import Dataset, DataSplits
from headstart.errors import ConfigError
from headstart.evaluation.calibration import softmax
from headstart.evaluation.source_task import SourceTask, source_accuracy, source_task
from headstart.model import TransferModel
from headstart.registry import Registry

#: Target test examples used at most (the measure needs a sample, not every example).
MAX_TARGET_EXAMPLES = 200


@dataclass(frozen=True)
class ReferenceSet:
    """Inputs from the source domain of a modality's backbones.

    Attributes:
        name: Shown in outputs (``"60 reference photos"``).
        items: Examples the backbones of that modality accept.
    """

    name: str
    items: list[Any]


#: Modality -> builder of its bundled reference set.
REFERENCE_SETS: Registry[Callable[[], ReferenceSet]] = Registry("reference set", ConfigError)


@REFERENCE_SETS.register("image")
def reference_photos() -> ReferenceSet:
    """Seven fixed views (whole, flipped, four corners, centre) of ten bundled natural photos."""
    folder = resources.files("headstart.evaluation") / "reference" / "images"
    views: list[Any] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        with entry.open("rb") as handle, Image.open(handle) as opened:
            photo = opened.convert("RGB")
        w, h = photo.size
        cw, ch = int(w * 0.6), int(h * 0.6)
        corners = [(0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)]
        views += [photo, ImageOps.mirror(photo), *(photo.crop((x, y, x + cw, y + ch)) for x, y in corners)]
    return ReferenceSet(f"{len(views)} reference photos", views)


@REFERENCE_SETS.register("text")
def reference_sentences() -> ReferenceSet:
    """Two hundred bundled WordNet verb and adjective glosses."""
    text = (resources.files("headstart.evaluation") / "reference" / "sentences.txt").read_text(encoding="utf-8")
    sentences = [line for line in text.splitlines() if line.strip()]
    return ReferenceSet(f"{len(sentences)} reference sentences", sentences)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between feature matrices ``[N, D1]`` and ``[N, D2]`` of the same ``N`` inputs, in [0, 1].

    Example:
        >>> x = np.random.default_rng(0).normal(size=(50, 8))
        >>> round(linear_cka(x, 3 * x @ np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))[0]), 6)
        1.0
    """
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def _cosine_matrix(features: np.ndarray) -> np.ndarray:
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def compare_features(old: np.ndarray, new: np.ndarray, head: SourceHead | None = None) -> dict[str, float]:
    """Every forgetting measure between the source features ``old`` and the transferred ``new`` (same inputs).

    Returns:
        ``feature_cka``, ``mean_cosine``, ``similarity_spearman`` and, with the source ``head``,
        ``source_agreement`` and ``source_kl``.
    """
    from scipy.stats import spearmanr

    unit_old = old / np.maximum(np.linalg.norm(old, axis=1, keepdims=True), 1e-12)
    unit_new = new / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)
    upper = np.triu_indices(len(old), k=1)
    result = {"feature_cka": linear_cka(old, new),
              "mean_cosine": float(np.mean(np.sum(unit_old * unit_new, axis=1))),
              "similarity_spearman": float(spearmanr(_cosine_matrix(old)[upper],
                                                     _cosine_matrix(new)[upper]).statistic)}
    if head is not None:
        weight, bias = head.weight.astype(np.float64), head.bias.astype(np.float64)
        p_old = softmax(old.astype(np.float64) @ weight.T + bias)
        p_new = softmax(new.astype(np.float64) @ weight.T + bias)
        result["source_agreement"] = float(np.mean(p_old.argmax(1) == p_new.argmax(1)))
        kl = np.sum(p_old * (np.log(np.maximum(p_old, 1e-12)) - np.log(np.maximum(p_new, 1e-12))), axis=1)
        result["source_kl"] = float(np.mean(kl))
    return result


def source_backbone(model: TransferModel) -> Backbone:
    """The model's backbone as it was before transfer: rebuilt from its reference and saved preprocessing."""
    return create_backbone(model.backbone.ref, preprocess=model.backbone.preprocess.to_dict())


def measure_forgetting(model: TransferModel, *, target: Sequence[Any] | None = None,
                       target_features: np.ndarray | None = None, reference: ReferenceSet | None = None,
                       source: Backbone | None = None,
                       source_data: DataSplits | None = None, cache: FeatureCache | None = None,
                       batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
    """How much of its source a model's backbone kept, on the reference set and on target inputs.

    A frozen backbone reports the unchanged values without computing anything.

    Args:
        model: A trained model.
        target: Target inputs (e.g. the test split's items); at most :data:`MAX_TARGET_EXAMPLES` are used.
        target_features: The model's own features of ``target``, when the caller has them (``fit``: test metrics).
        reference: Source-domain inputs; default the bundled set of the model's modality. Without one (a
            modality with no bundled set, or a backbone that cannot read it) only ``target`` is measured, and
            the result says so.
        source: The source backbone to compare with; default :func:`source_backbone`.
        source_data: Labeled data of the source task: its accuracy before and after transfer, read by one
            source head, goes into ``source_task`` (see :mod:`headstart.evaluation.source_task`); a ``ckpt:``
            backbone trained by headstart brings its own.
        cache: Feature cache for the source backbone's (frozen) features, which repeat across runs.
        batch_size, progress: Examples per forward pass; show progress bars.

    Returns:
        ``backbone_changed``, ``reference`` and ``target`` (``n`` and the measures), ``source_task`` (when
        known), ``notes``, ``seconds``.

    Raises:
        ConfigError: A source backbone of another modality than the model's; source data of another modality,
            or with classes a ``ckpt:`` source head does not know.
    """
    started = time.perf_counter()
    bundled = reference is None
    if bundled and model.modality in REFERENCE_SETS:
        reference = REFERENCE_SETS.get(model.modality)()
    parts = {"reference": reference.items if reference is not None else None,
             "target": list(target)[:MAX_TARGET_EXAMPLES] if target is not None else None}
    parts = {name: items for name, items in parts.items() if items}
    before = model.backbone if not model.backbone_trained else source if source is not None else \
        source_backbone(model)
    if before.modality != model.modality:
        raise ConfigError(f"the source backbone {before.ref!r} is a {before.modality} backbone but the model "
                          f"is a {model.modality} model")
    task = source_task(before, source_data, cache=cache, batch_size=batch_size, progress=progress)
    head = model.backbone.source_head() if model.backbone_trained else None  # a frozen one's network stays unbuilt
    result: dict[str, Any] = {"backbone_changed": model.backbone_trained, "notes": _notes(model, reference, task)}
    for name, items in parts.items():
        measured = _measure_part(model, before, items, head, cache, batch_size, progress, tolerate=bundled and
                                 name == "reference", new=target_features if name == "target" else None)
        if isinstance(measured, str):
            result["notes"].append(measured)
        else:
            result[name] = measured
    if isinstance(task, SourceTask):
        result["source_task"] = source_accuracy(task, before, model.backbone if model.backbone_trained else None,
                                                cache=cache, batch_size=batch_size, progress=progress)
    if "reference" in result:
        result["reference"]["name"] = reference.name
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _notes(model: TransferModel, reference: ReferenceSet | None, task: SourceTask | str | None) -> list[str]:
    """What the result cannot say, and why."""
    notes = [] if reference is not None else [f"no bundled {model.modality} reference set: measured on target "
                                              "inputs only"]
    if not model.backbone.has_source_head():
        notes.append(f"{model.backbone.ref} ships no source classifier: no source agreement")
    if isinstance(task, str):
        notes.append(task)
    return notes + ([] if model.backbone_trained else ["backbone frozen: nothing to forget"])


def _measure_part(model: TransferModel, before: Backbone, items: list[Any], head: SourceHead | None,
                  cache: FeatureCache | None, batch_size: int, progress: bool, *, tolerate: bool,
                  new: np.ndarray | None = None) -> dict[str, Any] | str:
    """The measures on ``items`` (unchanged ones, computing nothing, for a frozen backbone; ``new``: the
    transferred backbone's features when known; a frozen one is never built for it); with ``tolerate``, a backbone
    that cannot read them gives a note instead."""
    if not model.backbone_trained:
        unchanged = {"feature_cka": 1.0, "mean_cosine": 1.0, "similarity_spearman": 1.0,
                     **({"source_agreement": 1.0, "source_kl": 0.0} if model.backbone.has_source_head() else {})}
        return {"n": len(items), **unchanged}
    try:
        unlabeled = Dataset(items, np.full(len(items), -1), [], before.modality)
        old = extract_features(before, unlabeled, cache=cache, batch_size=batch_size, progress=progress)
        new = model.backbone.embed(items, batch_size=batch_size, progress=progress) if new is None \
            else new[:len(items)]
    except Exception as error:  # e.g. a custom backbone that reads only its own input format
        if not tolerate:
            raise
        return f"the bundled reference set could not be embedded ({error}): measured on target inputs only"
    return {"n": len(items), **compare_features(old, new, head)}


def forgetting_summary(forgetting: dict[str, Any]) -> str:
    """One line for the ``fit`` summary, e.g. ``feature CKA 0.912 on 70 reference photos, source top-1 kept 84%``."""
    part, task = forgetting.get("reference") or forgetting.get("target"), forgetting.get("source_task")
    if part is None and task is None:
        return "not measured" + (f" ({forgetting['notes'][0]})" if forgetting.get("notes") else "")
    pieces = []
    if part is not None:
        where = part.get("name", f"{part['n']} target examples")
        pieces.append(f"feature CKA {part['feature_cka']:.3f} on {where}")
        if "source_agreement" in part:
            pieces.append(f"source top-1 kept {part['source_agreement']:.0%}")
    if task is not None:
        pieces.append(f"source-task accuracy {task['accuracy_before']:.1%} -> {task['accuracy_after']:.1%} "
                      f"on {task['name']}")
    line = ", ".join(pieces)
    return line if forgetting["backbone_changed"] else line + " (backbone frozen)"
