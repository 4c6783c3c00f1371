"""Backbone ranking: which pre-trained backbone suits a data set, judged from frozen features alone.

Each candidate embeds the training examples once (features are cached, so a later ``fit --strategy linear``
on the winner is free), then every transferability score of :mod:`headstart.transferability.scores` is computed; LEEP
and NCE also use the backbone's pre-training classifier when it ships one. Ranking takes seconds to
minutes where fine-tuning every candidate would take hours.

Example:
    >>> result = rank_backbones(splits.train, ["efficientnet_lite0", "timm:resnet18"])
    >>> result.best, result.rows[0].scores["logme"]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from headstart.backbones import (
    Backbone,
    FeatureCache,
    create_backbone,
    extract_features,
    list_backbones,
    with_image_size,
)
from headstart.data.base import Dataset
from headstart.display import MAX_ROWS, html_table
from headstart.errors import ConfigError, option
from headstart.evaluation import softmax
from headstart.transferability.scores import SCORES, check_score_names, score_features

DEFAULT_SCORE = "logme"


@dataclass(frozen=True)
class BackboneScores:
    """The transferability of one backbone on one data set.

    Attributes:
        backbone: The backbone's reference.
        feature_dim: Size of its feature vectors.
        scores: Score name -> value (higher is better for every score).
        score_seconds: Score name -> seconds it took.
        feature_seconds: Seconds to embed the examples (near 0 when they came from the cache).
    """

    backbone: str
    feature_dim: int
    scores: dict[str, float]
    score_seconds: dict[str, float]
    feature_seconds: float

    @property
    def seconds(self) -> float:
        """Total time spent on this backbone: features plus every score."""
        return self.feature_seconds + sum(self.score_seconds.values())


@dataclass(frozen=True)
class RankResult:
    """Backbones ranked by one transferability score, best first.

    Attributes:
        source: Where the data came from.
        modality: ``"image"`` or ``"text"``.
        n_examples: Examples the scores were computed on.
        n_classes: Classes in those examples.
        sort_by: The score the ranking uses.
        rows: One entry per backbone, best first (backbones lacking ``sort_by`` last).
    """

    source: str
    modality: str
    n_examples: int
    n_classes: int
    sort_by: str
    rows: list[BackboneScores] = field(default_factory=list)

    @property
    def best(self) -> str:
        """The reference of the top-ranked backbone."""
        return self.rows[0].backbone

    @property
    def score_names(self) -> list[str]:
        """Every score computed for at least one backbone, in :data:`~headstart.transferability.scores.SCORES` order."""
        present = {name for row in self.rows for name in row.scores}
        return [name for name in SCORES if name in present]

    def explanation(self) -> str:
        """One sentence saying which backbone wins and by how much."""
        top = self.rows[0]
        value = top.scores.get(self.sort_by, float("nan"))
        if len(self.rows) == 1:
            return f"{top.backbone} is the only candidate ({self.sort_by} {value:.3f})"
        runner = self.rows[1]
        return (f"{top.backbone} has the highest {self.sort_by} ({value:.3f}, next {runner.backbone} at "
                f"{runner.scores.get(self.sort_by, float('nan')):.3f}) on {self.n_examples} examples of "
                f"{self.n_classes} classes")

    def __repr__(self) -> str:
        return (f"RankResult(best {self.best!r} by {self.sort_by} among {len(self.rows)} backbones, "
                f"{self.n_examples} {self.modality} examples of {self.n_classes} classes)")

    def _repr_html_(self) -> str:
        names = self.score_names
        rows = [[row.backbone, *(row.scores.get(name) for name in names), round(row.seconds, 1)] for row in self.rows]
        return html_table(["backbone", *names, "seconds"], rows, limit=MAX_ROWS,
                          caption=f"Backbones ranked by {self.sort_by}, best first: {self.explanation()}.")

    def to_frame(self) -> Any:
        """The ranking as a pandas DataFrame: one row per backbone, best first, with its feature size, every
        score and the seconds it took.

        Example:
            >>> headstart.rank("examples/wordnet-supersenses", backbones=["minilm", "glove"]).to_frame()
        """
        import pandas as pd

        return pd.DataFrame([{"backbone": row.backbone, "feature_dim": row.feature_dim, **row.scores,
                              "seconds": row.seconds} for row in self.rows],
                            columns=["backbone", "feature_dim", *self.score_names, "seconds"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``rank.json`` holds)."""
        return {"source": self.source, "modality": self.modality, "n_examples": self.n_examples,
                "n_classes": self.n_classes, "sort_by": self.sort_by, "best": self.best,
                "explanation": self.explanation(),
                "backbones": [{**asdict(row), "seconds": round(row.seconds, 3)} for row in self.rows]}


def source_probabilities(backbone: Backbone, features: np.ndarray) -> np.ndarray | None:
    """The backbone's pre-training classifier's softmax on its own features, or ``None`` without one."""
    head = backbone.source_head()
    if head is None:
        return None
    logits = np.asarray(features, dtype=np.float64) @ head.weight.T.astype(np.float64) + head.bias
    return softmax(logits)


def bundled_backbones(modality: str) -> list[str]:
    """The bundled (offline) backbones for ``modality``; what ``backbone="auto"`` chooses among."""
    return [spec.name for spec in list_backbones()
            if spec.bundled and spec.modality == modality]


def _wanted_scores(scores: Sequence[str] | None, sort_by: str) -> list[str] | None:
    """The scores to compute, ``sort_by`` first (``None``: every applicable one); checked before any work."""
    if sort_by not in SCORES:
        raise ConfigError(f"unknown score {sort_by!r} to rank by; choose from: {', '.join(SCORES)}")
    return None if scores is None else check_score_names(dict.fromkeys([sort_by, *scores]))


def _built_backbones(backbones: Sequence[str | Backbone], dataset: Dataset) -> list[Backbone]:
    """Every backbone built and checked against the data's modality."""
    nets = [create_backbone(b) if isinstance(b, str) else b for b in backbones]
    wrong = [f"{net.ref} ({net.modality})" for net in nets if net.modality != dataset.modality]
    if wrong:
        raise ConfigError(f"{dataset.source} holds {dataset.modality} data but these backbones are not "
                          f"{dataset.modality} backbones: {', '.join(wrong)}; see `headstart backbones`")
    return nets


def rank_backbones(dataset: Dataset, backbones: Sequence[str | Backbone], *, scores: Sequence[str] | None = None,
                   sort_by: str = DEFAULT_SCORE, cache: FeatureCache | None = None, batch_size: int = 64,
                   progress: bool = False) -> RankResult:
    """Score every backbone on ``dataset`` and rank them by ``sort_by``.

    Every backbone is built and checked against the data's modality before any features are computed, so a
    wrong name or modality fails in seconds.

    Args:
        dataset: Labeled examples (usually the training split); at least 2 classes, and 2 examples per class
            for the cross-validated scores.
        backbones: References (``headstart backbones`` lists them) or built backbones.
        scores: Score names from :data:`~headstart.transferability.scores.SCORES`; default every applicable one (LEEP
            and NCE only for backbones with a pre-training classifier; backbones without one rank last by
            them). ``sort_by`` is always included.
        sort_by: The score to rank by.
        cache: Feature cache, or ``None`` to always recompute.
        batch_size: Examples per forward pass.
        progress: Show progress bars.

    Returns:
        A :class:`RankResult`, best backbone first.

    Raises:
        ConfigError: No backbones, an unknown score, or a backbone for another modality.
    """
    if not backbones:
        raise ConfigError(f"rank needs at least one backbone, e.g. "
                          f"{option('backbones', ['efficientnet_lite0', 'timm:resnet18'])}")
    wanted = _wanted_scores(scores, sort_by)
    nets = _built_backbones(backbones, dataset)
    rows = []
    for net in nets:
        started = time.perf_counter()
        features = extract_features(net, dataset, cache=cache, batch_size=batch_size, progress=progress,
                                    label="rank")
        feature_seconds = time.perf_counter() - started
        probs = source_probabilities(net, features)
        names = wanted
        if names is not None and probs is None:
            names = [n for n in names if SCORES.get(n).needs == "features"]
        computed = score_features(features, dataset.labels, source_probs=probs, scores=names)
        rows.append(BackboneScores(net.ref, net.feature_dim, {k: v["value"] for k, v in computed.items()},
                                   {k: round(v["seconds"], 4) for k, v in computed.items()},
                                   round(feature_seconds, 3)))
    rows.sort(key=lambda row: -row.scores.get(sort_by, -np.inf))
    return RankResult(dataset.source, dataset.modality, len(dataset), int((dataset.class_counts() > 0).sum()),
                      sort_by, rows)


def rank_bundled(train: Dataset, *, cache: FeatureCache | None = None, progress: bool = False,
                 image_size: int | None = None) -> RankResult:
    """Rank the bundled backbones of ``train``'s modality by LogME (what ``backbone="auto"`` uses), images at
    ``image_size`` pixels when given."""
    candidates: list[str | Backbone] = list(bundled_backbones(train.modality))
    if image_size is not None:
        candidates = [with_image_size(ref, image_size) for ref in candidates]
    return rank_backbones(train, candidates, scores=["logme"], sort_by="logme", cache=cache, progress=progress)
