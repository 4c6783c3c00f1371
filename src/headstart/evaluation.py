"""Evaluating a model on labeled data: predictions, then every metric headstart reports."""

from __future__ import annotations

from typing import Any

import numpy as np

from headstart.calibration import reliability_bins
from headstart.data.base import Dataset
from headstart.errors import DataError
from headstart.features import FeatureCache, extract_features
from headstart.metrics import classification_metrics
from headstart.model import TransferModel


def aligned_labels(model: TransferModel, dataset: Dataset) -> np.ndarray:
    """``dataset``'s labels re-indexed to the model's class order (data sets may list classes differently).

    Raises:
        DataError: The data holds a class the model was not trained on.
    """
    unknown = sorted(set(dataset.class_names) - set(model.class_names))
    if unknown:
        raise DataError(f"{dataset.source} has classes the model does not know: {', '.join(unknown)}; "
                        f"the model predicts: {', '.join(model.class_names)}")
    index = np.array([model.class_names.index(name) for name in dataset.class_names], dtype=np.int64)
    return index[dataset.labels]


def dataset_logits(model: TransferModel, dataset: Dataset, *, batch_size: int = 64, progress: bool = False,
                   cache: FeatureCache | None = None) -> np.ndarray:
    """Logits (before temperature) of ``model`` on ``dataset``'s examples.

    Frozen backbones reuse cached features when ``cache`` is given; fine-tuned ones always recompute.
    """
    if cache is not None and not model.backbone_trained:
        features = extract_features(model.backbone, dataset, cache=cache, batch_size=batch_size, progress=progress)
        return model.logits_from_features(features)
    return model.logits(dataset.items, batch_size=batch_size, progress=progress)


def evaluate_dataset(model: TransferModel, dataset: Dataset, *, batch_size: int = 64, progress: bool = False,
                     cache: FeatureCache | None = None) -> dict[str, Any]:
    """Metrics of ``model`` on ``dataset`` (see :func:`headstart.metrics.classification_metrics`), logits
    from :func:`dataset_logits`."""
    labels = aligned_labels(model, dataset)
    logits = dataset_logits(model, dataset, batch_size=batch_size, progress=progress, cache=cache)
    proba = model.proba_from_logits(logits)
    metrics = classification_metrics(labels, proba, model.class_names)
    metrics["reliability"] = reliability_bins(proba, labels, n_bins=10)
    return metrics


def evaluate_model(model: TransferModel, data: Any, *, batch_size: int = 64, progress: bool = False
                   ) -> dict[str, Any]:
    """Metrics on a :class:`Dataset` or on a data path in any format ``fit`` accepts."""
    from headstart.api import evaluate

    return evaluate(model, data, batch_size=batch_size, progress=progress)
