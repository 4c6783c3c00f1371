"""Evaluating a model on labeled data: predictions, then every metric headstart reports."""

from __future__ import annotations

from typing import Any

import numpy as np

from headstart.backbones.features import FeatureCache, extract_features
from headstart.data.base import Dataset
from headstart.errors import ConfigError, DataError, listing
from headstart.evaluation.calibration import expected_calibration_error, fit_temperature, reliability_bins
from headstart.evaluation.metrics import classification_metrics
from headstart.model import TransferModel


def aligned_labels(model: TransferModel, dataset: Dataset) -> np.ndarray:
    """``dataset``'s labels re-indexed to the model's class order (data sets may list classes differently).

    Raises:
        DataError: The data holds a class the model was not trained on.
    """
    unknown = sorted(set(dataset.class_names) - set(model.class_names))
    if unknown:
        raise DataError(f"{dataset.source} has classes the model does not know: {listing(unknown)}; "
                        f"the model predicts: {listing(model.class_names)}")
    index = np.array([model.class_names.index(name) for name in dataset.class_names], dtype=np.int64)
    return index[dataset.labels]


def dataset_logits(model: TransferModel, dataset: Dataset, *, batch_size: int = 64, progress: bool = False,
                   cache: FeatureCache | None = None, label: str = "") -> np.ndarray:
    """Logits (before temperature) of ``model`` on ``dataset``'s examples.

    Frozen backbones reuse cached features when ``cache`` is given; fine-tuned ones always recompute.
    """
    if cache is not None and not model.backbone_trained:
        features = extract_features(model.backbone, dataset, cache=cache, batch_size=batch_size, progress=progress,
                                    label=label)
        return model.logits_from_features(features)
    return model.logits(dataset.items, batch_size=batch_size, progress=progress, label=label)


def evaluate_dataset(model: TransferModel, dataset: Dataset, *, batch_size: int = 64, progress: bool = False,
                     cache: FeatureCache | None = None, label: str = "", features: np.ndarray | None = None
                     ) -> dict[str, Any]:
    """Metrics of ``model`` on ``dataset`` (see :func:`headstart.evaluation.metrics.classification_metrics`), logits
    from :func:`dataset_logits` (``label`` names the split in the progress display), or from the model's backbone
    ``features`` of ``dataset`` when the caller has them.

    Raises:
        DataError: ``dataset`` is of another modality than the model (a text model would read image paths as
            texts), or holds classes the model does not know.
    """
    if dataset.modality != model.modality:
        raise DataError(f"{dataset.source} holds {dataset.modality} data, but the model was trained on "
                        f"{model.modality} data (backbone {model.backbone.ref}); evaluate it on {model.modality} data")
    labels = aligned_labels(model, dataset)
    logits = model.logits_from_features(features) if features is not None else \
        dataset_logits(model, dataset, batch_size=batch_size, progress=progress, cache=cache, label=label)
    proba = model.proba_from_logits(logits)
    metrics = classification_metrics(labels, proba, model.class_names)
    metrics["reliability"] = reliability_bins(proba, labels, n_bins=10)
    return metrics


def calibrate_model(model: TransferModel, val: Dataset, test: Dataset | None, *, cache: FeatureCache | None = None,
                    batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
    """Fit ``model.temperature`` on ``val`` (in place) so confidences match accuracy.

    Returns:
        ``temperature``, what it was fitted on, and the ECE of ``val`` (and ``test``) before and after.

    Raises:
        ConfigError: ``val`` is empty.
    """
    if len(val) == 0:
        raise ConfigError("calibration needs validation data: give a val split or a val_fraction above 0")
    parts = {name: part for name, part in (("val", val), ("test", test)) if part is not None}
    logits = {name: (dataset_logits(model, part, batch_size=batch_size, progress=progress, cache=cache,
                                    label=name),
                     aligned_labels(model, part)) for name, part in parts.items()}

    def ece() -> dict[str, float]:
        return {name: expected_calibration_error(model.proba_from_logits(z), y) for name, (z, y) in logits.items()}

    before = ece()
    model.temperature = fit_temperature(*logits["val"])
    return {"temperature": model.temperature, "fitted_on": f"val split ({len(val)} examples)",
            "ece_before": before, "ece_after": ece()}
