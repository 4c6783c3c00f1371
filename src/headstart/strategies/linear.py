"""The linear probe: frozen backbone, features extracted once (cached), a logistic-regression head."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits
from torch import nn

from headstart.backbones import Backbone, extract_features
from headstart.data import Dataset
from headstart.model import TransferModel
from headstart.progress import status
from headstart.strategies.base import Strategy, register_strategy
from headstart.training import FitContext, StrategyConfig
from headstart.training.search_space import Dimension, FloatRange


class LinearConfig(StrategyConfig):
    """Hyperparameters of the linear probe."""

    # Tuning C on validation data replaces the cross-validation over the same range.
    search_space: ClassVar[dict[str, Dimension]] = {"c": FloatRange(1e-4, 1e2, log=True)}

    c_values: int = Field(12, ge=1, description="How many inverse-regularization strengths C, log-spaced "
                                                "over 1e-4..1e2, cross-validation chooses among.")
    c: float | None = Field(None, gt=0, description="Use this C and skip cross-validation.")
    folds: int = Field(5, ge=2, description="Cross-validation folds (capped by the smallest class).")
    max_iter: int = Field(1000, ge=10, description="Iterations of the L-BFGS solver.")
    class_weight: Literal[None, "balanced"] = Field(None, description="'balanced' weights each class by the "
                                                    "inverse of its frequency, so rare classes count as much as "
                                                    "common ones (for imbalanced data); None weights every "
                                                    "example equally.")


def head_fit_status(c: float | None, c_values: int, folds: int) -> str:
    """What the progress display says while :func:`fit_linear_head` runs (it has no steps to count)."""
    if c is not None:
        return f"fitting the linear head (C={c:g})"
    return f"fitting the linear head ({folds}-fold cross-validation over {c_values} values of C)"


def fit_linear_head(features: np.ndarray, labels: np.ndarray, n_classes: int, *, c: float | None = None,
                    c_values: int = 12, folds: int = 5, max_iter: int = 1000, seed: int = 0,
                    class_weight: Literal[None, "balanced"] = None
                    ) -> tuple[nn.Linear, dict[str, float]]:
    """Fit a multinomial logistic regression on standardized features and fold the standardization into an
    ``nn.Linear`` acting on raw features, so the saved model needs no separate scaler.

    Args:
        features: ``[N, D]`` frozen features.
        labels: ``[N]`` integer labels in ``range(n_classes)``.
        n_classes: Number of classes (the head has this many outputs even if a class is absent).
        c: Inverse regularization strength; ``None`` chooses it by stratified cross-validation.
        c_values: Candidates for cross-validation, log-spaced over ``1e-4..1e2``.
        folds: Cross-validation folds, capped by the smallest class count.
        max_iter: Solver iterations.
        seed: Seed for the fold assignment.
        class_weight: ``"balanced"`` weights classes by inverse frequency (scikit-learn's ``class_weight``).

    Returns:
        The head and ``{"C": chosen C, "cv_accuracy": its mean cross-validated accuracy (if CV ran)}``; with
        ``class_weight="balanced"`` C is chosen by, and ``cv_accuracy`` is, balanced accuracy.
    """
    mean = features.mean(axis=0)
    std = features.std(axis=0) + 1e-6
    clf, info = _fit_logistic((features - mean) / std, labels, c=c, c_values=c_values, folds=folds,
                              max_iter=max_iter, seed=seed, class_weight=class_weight)
    return _folded_head(clf, mean, std, n_classes), info


def _fit_logistic(z: np.ndarray, labels: np.ndarray, *, c: float | None, c_values: int, folds: int,
                  max_iter: int, seed: int, class_weight: Literal[None, "balanced"]
                  ) -> tuple[LogisticRegression, dict[str, float]]:
    """The logistic regression on standardized features ``z``, with C chosen by cross-validation if not given."""
    info: dict[str, float] = {}
    # One BLAS thread: these problems are small, and multi-threaded OpenBLAS inside L-BFGS was measured 60x
    # slower on a 2-core machine under load (threads spin while waiting for each other).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        smallest = int(np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0
        n_folds = min(folds, smallest)
        if c is None and n_folds >= 2:
            cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            # Balanced weights aim at every class equally, so C is chosen by balanced accuracy then.
            scoring = "balanced_accuracy" if class_weight == "balanced" else "accuracy"
            clf = LogisticRegressionCV(Cs=np.logspace(-4, 2, c_values), l1_ratios=(0.0,), cv=cv,
                                       max_iter=max_iter, scoring=scoring, random_state=seed, n_jobs=1,
                                       use_legacy_attributes=False, class_weight=class_weight)
            clf.fit(z, labels)
            info["C"] = float(clf.C_)
            info["cv_accuracy"] = float(clf.scores_.mean(axis=0).max())
        else:
            info["C"] = float(c if c is not None else 1.0)
            clf = LogisticRegression(C=info["C"], max_iter=max_iter, random_state=seed, class_weight=class_weight)
            clf.fit(z, labels)
    return clf, info


def _folded_head(clf: LogisticRegression, mean: np.ndarray, std: np.ndarray, n_classes: int) -> nn.Linear:
    """An ``nn.Linear`` on raw features equal to ``clf`` on features standardized with ``mean`` and ``std``."""
    weight = np.zeros((n_classes, len(mean)))
    bias = np.zeros(n_classes)
    present = clf.classes_
    if len(present) == 2:  # sklearn stores one row for binary problems: logits (-w, +w) give the same softmax
        coef = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        intercept = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        coef, intercept = clf.coef_, clf.intercept_
    # Absent classes get a very low bias so they are never predicted.
    bias[:] = -1e4
    weight[present] = coef / std
    bias[present] = intercept - (coef / std) @ mean
    head = nn.Linear(len(mean), n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return head


@register_strategy("linear")
class LinearProbe(Strategy):
    """Frozen backbone + logistic regression chosen by cross-validation. Fast, hard to overfit, and the
    baseline every other strategy must beat."""

    config_class = LinearConfig

    def adapt(self, backbone: Backbone, train: Dataset, context: FitContext
              ) -> tuple[Backbone, np.ndarray, dict[str, Any]]:
        """The backbone the model keeps, the training features the head is fitted on, and settings to record;
        here the caller's backbone and its frozen (cached) features. Adaptation strategies change them."""
        return backbone, extract_features(backbone, train, cache=context.cache, batch_size=self.config.batch_size,
                                          progress=context.progress, label="train"), {}

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        cfg = self.config
        kept, features, recorded = self.adapt(backbone, train, context)
        with status(head_fit_status(cfg.c, cfg.c_values, cfg.folds), enabled=context.progress):
            head, info = fit_linear_head(features, train.labels, len(train.class_names), c=cfg.c,
                                         c_values=cfg.c_values, folds=cfg.folds, max_iter=cfg.max_iter,
                                         seed=context.seed, class_weight=cfg.class_weight)
        return TransferModel(kept, head, train.class_names, strategy=self.name,
                             strategy_config={**cfg.model_dump(), "seed": context.seed, "chosen_C": info["C"],
                                              **recorded},
                             backbone_trained=kept is not backbone,
                             metrics={"train": {"cv_accuracy": info.get("cv_accuracy")}})
