"""``TransferClassifier``: headstart as a scikit-learn estimator, for Pipelines, cross-validation and grid search.

It fits through the same core as :func:`headstart.fit` (:func:`headstart.fitting.fit_splits`) on raw texts
or images, so a model tuned here behaves as one trained from the command line.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from headstart.backbones import FeatureCache, build_backbone
from headstart.data import Dataset, DataSplits, modality_spec
from headstart.data.files import file_modality
from headstart.data.inputs import as_examples
from headstart.errors import DataError
from headstart.fitting import complete_splits, fit_splits
from headstart.model import TransferModel
from headstart.strategies import get_strategy
from headstart.training import FitContext


def infer_modality(items: list[Any]) -> str:
    """``"image"`` for PIL images and arrays; the modality of an existing file's suffix (image, audio); ``"text"``
    for other strings.

    Raises:
        DataError: A mix of modalities.
    """
    kinds = {(file_modality(x) if Path(x).is_file() else None) or "text" if isinstance(x, str) else "image"
             for x in items}
    if len(kinds) > 1:
        raise DataError(f"X mixes {' and '.join(sorted(kinds))} examples; give one kind per estimator")
    return kinds.pop()


class TransferClassifier(ClassifierMixin, BaseEstimator):
    """Transfer learning as a scikit-learn classifier on raw texts or images.

    ``X`` is a list of texts, a list of image paths, PIL images or ``uint8`` arrays, or a ``uint8`` array
    ``[N, H, W(, C)]``; ``y`` any labels. ``fit`` trains through :func:`headstart.fitting.fit_splits`, the
    core of :func:`headstart.fit`, with no test split held out (cross-validation does that here).

    Args:
        backbone: A backbone reference (``headstart backbones``); ``None``: the modality's default
            (``efficientnet_lite0`` / ``minilm``).
        strategy: How to transfer (``headstart strategies``); ``auto``, as in :func:`headstart.fit`.
        settings: The strategy's settings, e.g. ``{"folds": 3}`` for ``auto``, ``{"c": 1.0}`` for ``linear``.
        seed: Random seed of validation splits and training.
        batch_size: Examples per forward pass at prediction time.
        calibrate: Fit a softmax temperature on a validation split.
        val_fraction: Validation share carved from ``X`` when the strategy selects on validation data or
            ``calibrate`` is set.
        image_size: Input size of an image backbone, instead of its own.
        cache: Reuse frozen features across fits (the default cache folder) — cross-validation folds and grid
            points then extract features once.
        max_time: Training budget per fit, in seconds.

    Attributes:
        model_: The fitted :class:`~headstart.model.TransferModel`.
        classes_: The labels of ``y``, sorted (``predict`` returns them).
        modality_: ``"image"`` or ``"text"``.

    Pickling (``joblib.dump``) stores the model as safetensors bytes and a JSON config; unpickling rebuilds
    the backbone from its reference and reads those tensors, never ``torch.load``.

    scikit-learn's ``check_estimator`` feeds numeric feature matrices, which are not raw texts or images, so
    the estimator declares ``input_tags.two_d_array = False`` and the checks that need fitting on such
    matrices do not apply. The API checks that do apply (cloneable, repr, no attributes set in ``__init__``,
    ``get_params``/``set_params`` invariance, default-constructible parameters, no validation in
    ``__init__``/``set_params``, ``NotFittedError`` before ``fit``, mixin order, tags) pass; the test suite
    runs them, and runs the estimator in ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``.

    Example:
        >>> clf = TransferClassifier(backbone="minilm", strategy="linear", settings={"c": 1.0}).fit(texts, labels)
        >>> clf.predict(["a large wild cat"])
    """

    def __init__(self, backbone: str | None = None, strategy: str = "auto", settings: dict[str, Any] | None = None,
                 seed: int = 0, batch_size: int = 64, calibrate: bool = False, val_fraction: float = 0.15,
                 image_size: int | None = None, cache: bool = True, max_time: float | None = None) -> None:
        self.backbone = backbone
        self.strategy = strategy
        self.settings = settings
        self.seed = seed
        self.batch_size = batch_size
        self.calibrate = calibrate
        self.val_fraction = val_fraction
        self.image_size = image_size
        self.cache = cache
        self.max_time = max_time

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    def fit(self, X: Any, y: Any) -> TransferClassifier:  # noqa: N803 (scikit-learn's argument names)
        """Train on raw examples ``X`` with labels ``y``; returns ``self``.

        Raises:
            DataError: ``X`` and ``y`` differ in length, mix images and texts, or ``y`` has one class.
            ConfigError: Unknown strategy, setting or backbone.
        """
        given = _examples(X)
        items = as_examples(given, "image") if isinstance(given, np.ndarray) else list(given)
        labels = np.asarray(y)
        if len(items) != len(labels):
            raise DataError(f"X has {len(items)} examples but y has {len(labels)} labels")
        if not items:
            raise DataError("X holds no examples")
        modality = infer_modality(items)
        as_examples(items, modality)
        classes, codes = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise DataError(f"y has a single class ({classes[0]!r}); a classifier needs at least two")
        strategy = get_strategy(self.strategy, **dict(self.settings or {}))
        net = build_backbone(self.backbone or modality_spec(modality).default_backbone, image_size=self.image_size,
                             prefer=strategy.preferred_preprocess)
        dataset = Dataset(items, codes, [str(c) for c in classes], modality, "<TransferClassifier.fit>")
        splits = complete_splits(DataSplits(train=dataset, val=None, test=None, source=dataset.source), strategy,
                                 seed=self.seed, val_fraction=self.val_fraction, test_fraction=0.0,
                                 calibrate=self.calibrate)
        with tempfile.TemporaryDirectory(prefix="headstart-sklearn-") as work:
            context = FitContext(work_dir=Path(work), seed=self.seed, cache=FeatureCache() if self.cache else None,
                                 progress=False, max_time=self.max_time)
            self.model_ = fit_splits(splits, net, strategy, context, calibrate=self.calibrate)
        self.classes_ = classes
        self.modality_ = modality
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Class probabilities ``[n_examples, n_classes]``, columns in ``classes_`` order."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(_examples(X), batch_size=self.batch_size)

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Predicted labels (values of ``classes_``)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        if model is not None:
            state["model_"] = {"config": json.dumps(model.config()), "metrics": json.dumps(model.metrics),
                               "tensors": save_tensors(model.state_dict())}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("model_", None)
        self.__dict__.update(state)
        if saved is not None:
            self.model_ = TransferModel.from_state(json.loads(saved["config"]), load_tensors(saved["tensors"]),
                                                   json.loads(saved["metrics"]))


def _examples(X: Any) -> Any:  # noqa: N803
    # A list of PIL images or strings passes through; an object array (from scikit-learn's indexing) is a list.
    if isinstance(X, np.ndarray) and X.dtype == object:
        return list(X)
    if isinstance(X, Image.Image):
        return [X]
    return X
