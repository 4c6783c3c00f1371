"""The linear probe: frozen backbone, features extracted once (cached), a logistic-regression head."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from headstart.backbones import Backbone, extract_features
from headstart.data import Dataset
from headstart.errors import ConfigError
from headstart.model import TransferModel
from headstart.progress import status
from headstart.strategies.base import FROZEN_FEATURES, Strategy, register_strategy
from headstart.strategies.probe_memo import remembered_head
from headstart.training import FitContext, StrategyConfig
from headstart.training.search_space import Dimension, FloatRange

if TYPE_CHECKING:
    from sklearn.model_selection import StratifiedKFold

Scaling = Literal["global", "per_feature"]
SelectBy = Literal["calibrated_log_loss", "log_loss", "accuracy"]
Final = Literal["refit", "crossfit"]


def feature_scaling(features: np.ndarray, scaling: Scaling = "global") -> tuple[np.ndarray, np.ndarray]:
    """The mean and per-feature divisor the probe standardizes ``features`` with: ``"global"`` one scale for all
    (the root mean square of the centred features), ``"per_feature"`` each feature's standard deviation."""
    mean = features.mean(axis=0)
    if scaling == "per_feature":
        return mean, features.std(axis=0) + 1e-6
    return mean, np.full(features.shape[1], np.sqrt(np.mean((features - mean) ** 2)) + 1e-6)


class LinearConfig(StrategyConfig):
    """Hyperparameters of the linear probe."""

    # Tuning C on validation data replaces the cross-validation over the same range.
    search_space: ClassVar[dict[str, Dimension]] = {"c": FloatRange(1e-4, 1e2, log=True)}

    c_values: int = Field(12, ge=1, description="How many inverse-regularization strengths C, log-spaced "
                                                "over 1e-4..1e2, cross-validation chooses among.")
    c: float | None = Field(None, gt=0, description="Use this C and skip cross-validation.")
    select_by: SelectBy = Field("calibrated_log_loss", description="What cross-validation chooses C by: "
                                "'calibrated_log_loss' (the log loss of each C's out-of-fold predictions after "
                                "a softmax temperature fitted on them, which is then folded into the head: C "
                                "is judged on what it separates, the temperature sets the confidence; on "
                                "benchmarks/suite.py +0.9 points over 'log_loss' on average, level with a plain "
                                "LogisticRegression()), 'log_loss' (no temperature: it tends to regularize "
                                "too much on text) or 'accuracy' (ties are common on small data, and it often "
                                "lands on a tiny C whose probabilities are far less confident than the model "
                                "is accurate).")
    folds: int = Field(5, ge=2, description="Cross-validation folds (capped by the smallest class).")
    final: Final = Field("refit", description="The head cross-validation ends with: 'refit' fits one model on all "
                         "examples at the chosen C (it sees k/(k-1) times the fold models' examples, so it is more "
                         "confident than the models the temperature was fitted on); 'crossfit' averages the k "
                         "fold models' logits at that C (a linear model too) divided by the temperature fitted on "
                         "exactly their out-of-fold predictions (on benchmarks/probe_calibration.py: median ECE "
                         "0.047 against 0.051, mean 0.048 against 0.046, under-confident on text). Both refit when "
                         "a class has a single example.")
    max_iter: int = Field(1000, ge=10, description="Iterations of the L-BFGS solver.")
    scaling: Scaling = Field("global", description="How features are scaled before the regression: 'global' "
                             "centres them and divides all by one scale, keeping the backbone's relative scales "
                             "(better on most tasks of benchmarks/suite.py: digits +6.8 points at 10 per class, "
                             "Fashion-MNIST mini -1.2 at 50); 'per_feature' standardises each one, which "
                             "inflates near-constant features.")
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
                    class_weight: Literal[None, "balanced"] = None,
                    select_by: SelectBy = "calibrated_log_loss", scaling: Scaling = "global",
                    final: Final = "refit") -> tuple[nn.Linear, dict[str, float]]:
    """Fit a multinomial logistic regression on scaled features and fold the scaling into an
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
        select_by: ``"calibrated_log_loss"`` chooses C by cross-validated log loss after a temperature fitted
            on each C's out-of-fold predictions, and folds that temperature into the head; ``"log_loss"`` by
            the log loss as it is; ``"accuracy"`` by accuracy (balanced accuracy with
            ``class_weight="balanced"``).
        scaling: ``"global"`` or ``"per_feature"`` (:func:`feature_scaling`).
        final: ``"refit"`` fits the head on all examples at the chosen C; ``"crossfit"`` averages the logits of
            the cross-validation's fold models at that C (fitted at ``c`` when it is given).

    Returns:
        The head and ``{"C": chosen C, "temperature": its temperature (1 without one)}``, plus, when
        cross-validation ran, the out-of-fold scores at that C and temperature: ``cv_accuracy`` and
        ``cv_log_loss``.
    """
    if final not in ("refit", "crossfit"):
        raise ConfigError(f"Unknown final={final!r} for the linear head: use 'refit' or 'crossfit'.")
    mean, std = feature_scaling(features, scaling)
    (coef, intercept), info = _fit_logistic((features - mean) / std, labels, c=c, c_values=c_values, folds=folds,
                                            max_iter=max_iter, seed=seed, class_weight=class_weight,
                                            select_by=select_by, final=final)
    return _folded_head(coef, intercept, np.unique(labels), mean, std, n_classes, info["temperature"]), info


def _fit_logistic(z: np.ndarray, labels: np.ndarray, *, c: float | None, c_values: int, folds: int,
                  max_iter: int, seed: int, class_weight: Literal[None, "balanced"], select_by: SelectBy,
                  final: Final) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, float]]:
    """The logistic regression on scaled features ``z`` as scikit-learn's ``(coef_, intercept_)``, with C (and,
    for ``calibrated_log_loss``, a softmax temperature) chosen by cross-validation if C is not given: refitted
    on all of ``z``, or for ``final="crossfit"`` the mean of the fold models."""
    from scipy.special import log_softmax
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    info: dict[str, float] = {"C": float(c if c is not None else 1.0), "temperature": 1.0}
    # One BLAS thread: these problems are small, and multi-threaded OpenBLAS inside L-BFGS was measured 60x
    # slower on a 2-core machine under load (threads spin while waiting for each other).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = cross_validation_folds(labels, folds, seed)
        choose = c is None and cv is not None
        # A mean of fold models needs folds; without them (a class with a single example) the head is refitted.
        crossfit = final == "crossfit" and cv is not None
        best = 0
        if choose or crossfit:
            cs = np.logspace(-4, 2, c_values) if choose else np.array([info["C"]])
            path, (coefs, intercepts) = _out_of_fold_path(z, labels, cv, cs, max_iter=max_iter, seed=seed,
                                                          class_weight=class_weight)
        if choose:
            best, temperature = _choose_c(path, labels, select_by, class_weight)
            info |= {"C": float(cs[best]), "temperature": temperature}
            info |= out_of_fold_scores(np.exp(log_softmax(path[best] / temperature, axis=1)), labels)
        if crossfit:
            return (coefs[best], intercepts[best]), info
        clf = LogisticRegression(C=info["C"], max_iter=max_iter, random_state=seed, class_weight=class_weight)
        clf.fit(z, labels)
    return (clf.coef_, clf.intercept_), info


def _out_of_fold_path(z: np.ndarray, labels: np.ndarray, cv: StratifiedKFold, cs: np.ndarray, *, max_iter: int,
                      seed: int, class_weight: Literal[None, "balanced"]
                      ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Out-of-fold log probabilities at every C of ``cs`` (ascending): ``[len(cs), N, classes present]``, and the
    fold models' mean ``coef_`` and ``intercept_`` at every C (the mean of linear models' logits is the logits of
    their mean). Each fold's model is warm-started along the path, as scikit-learn's ``LogisticRegressionCV``
    does."""
    from sklearn.linear_model import LogisticRegression

    path = np.zeros((len(cs), len(labels), len(np.unique(labels))))
    coef_sums: list[np.ndarray] = []
    intercept_sums: list[np.ndarray] = []
    for fit_index, held_index in cv.split(z, labels):
        clf = LogisticRegression(max_iter=max_iter, random_state=seed, class_weight=class_weight, warm_start=True)
        for i, c in enumerate(cs):
            clf.set_params(C=c).fit(z[fit_index], labels[fit_index])
            path[i, held_index] = clf.predict_log_proba(z[held_index])
            if len(coef_sums) <= i:
                coef_sums.append(np.zeros_like(clf.coef_))
                intercept_sums.append(np.zeros_like(clf.intercept_))
            coef_sums[i] += clf.coef_
            intercept_sums[i] += clf.intercept_
    n_folds = cv.get_n_splits()
    return path, (np.stack(coef_sums) / n_folds, np.stack(intercept_sums) / n_folds)


def _choose_c(path: np.ndarray, labels: np.ndarray, select_by: SelectBy, class_weight: Literal[None, "balanced"]
              ) -> tuple[int, float]:
    """The index in ``path`` (:func:`_out_of_fold_path`) of the C ``select_by`` prefers, and its temperature
    (1 unless ``calibrated_log_loss``). Ties go to the smallest C (the most regularized)."""
    from scipy.special import log_softmax
    from sklearn.metrics import accuracy_score
    from sklearn.utils.class_weight import compute_sample_weight

    index = np.searchsorted(np.unique(labels), labels)
    if select_by == "accuracy":
        weights = compute_sample_weight(class_weight, index) if class_weight == "balanced" else None
        scores = [-accuracy_score(index, log_p.argmax(axis=1), sample_weight=weights) for log_p in path]
        return int(np.argmin(scores)), 1.0
    temperatures = ([softmax_temperature(log_p, index) for log_p in path] if select_by == "calibrated_log_loss"
                    else [1.0] * len(path))
    losses = [-np.mean(log_softmax(log_p / t, axis=1)[np.arange(len(index)), index])
              for log_p, t in zip(path, temperatures, strict=True)]
    best = int(np.argmin(losses))
    return best, float(temperatures[best])


def softmax_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T`` minimizing the log loss of ``softmax(logits / T)`` on ``labels`` (column indices),
    searched over ``e^-3..e^3``."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t: float) -> float:
        return -float(np.mean(log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(labels)), labels]))

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def cross_validation_folds(labels: np.ndarray, folds: int, seed: int) -> StratifiedKFold | None:
    """Stratified folds, as many as ``folds`` but no more than the smallest class has examples; ``None`` when a
    class has a single example (nothing to cross-validate)."""
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0
    n_folds = min(folds, smallest)
    return StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed) if n_folds >= 2 else None


def linear_out_of_fold(features: np.ndarray, labels: np.ndarray, *, c: float, folds: int = 5, max_iter: int = 1000,
                       seed: int = 0, class_weight: Literal[None, "balanced"] = None, scaling: Scaling = "global"
                       ) -> np.ndarray | None:
    """Out-of-fold probabilities of the probe at ``c`` on the folds of :func:`cross_validation_folds`: each
    example predicted by a head that did not see it (columns: the classes present, sorted); ``None`` when a
    class has a single example."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from threadpoolctl import threadpool_limits

    cv = cross_validation_folds(labels, folds, seed)
    if cv is None:
        return None
    mean, std = feature_scaling(features, scaling)
    z = (features - mean) / std
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed, class_weight=class_weight)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_predict(clf, z, labels, cv=cv, method="predict_proba")


def out_of_fold_scores(proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and log loss of out-of-fold probabilities (columns: the classes present, sorted)."""
    from sklearn.metrics import log_loss

    present = np.unique(labels)
    index = np.searchsorted(present, labels)
    return {"cv_accuracy": float(np.mean(present[proba.argmax(axis=1)] == labels)),
            "cv_log_loss": float(log_loss(index, proba, labels=np.arange(len(present))))}


def _folded_head(coef: np.ndarray, intercept: np.ndarray, present: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 n_classes: int, temperature: float = 1.0) -> nn.Linear:
    """An ``nn.Linear`` on raw features equal to the logits of a logistic regression (scikit-learn's ``coef_``
    and ``intercept_``, over the classes ``present``) divided by ``temperature``, on features standardized with
    ``mean`` and ``std``."""
    weight = np.zeros((n_classes, len(mean)))
    bias = np.zeros(n_classes)
    if len(present) == 2:  # sklearn stores one row for binary problems: logits (-w, +w) give the same softmax
        coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    # Absent classes get a very low bias so they are never predicted.
    bias[:] = -1e4
    weight[present] = coef / std / temperature
    bias[present] = (intercept - (coef / std) @ mean) / temperature
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
    preferred_preprocess = FROZEN_FEATURES

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
        settings = {"c": cfg.c, "c_values": cfg.c_values, "folds": cfg.folds, "max_iter": cfg.max_iter,
                    "seed": context.seed, "class_weight": cfg.class_weight, "select_by": cfg.select_by,
                    "scaling": cfg.scaling, "final": cfg.final}
        n_classes = len(train.class_names)
        with status(head_fit_status(cfg.c, cfg.c_values, cfg.folds), enabled=context.progress):
            # With a cache, a fit done before on the same features and settings is loaded (probe_memo).
            head, info = remembered_head(context.cache.root if context.cache is not None else None,
                                         lambda: fit_linear_head(features, train.labels, n_classes, **settings),
                                         features, train.labels, n_classes, settings)
        return TransferModel(kept, head, train.class_names, strategy=self.name,
                             strategy_config={**cfg.model_dump(), "seed": context.seed, "chosen_C": info["C"],
                                              **recorded},
                             backbone_trained=kept is not backbone,
                             metrics={"train": {key: value for key, value in info.items() if key != "C"}})
