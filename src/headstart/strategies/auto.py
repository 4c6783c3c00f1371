"""``auto``: the cheap frozen-feature candidates first, fine-tuning only where the data says it may pay.

A registered strategy rather than an orchestration above ``fit``: it is then available wherever a strategy is
(``fit``, ``compare``, the scikit-learn estimator, the contract tests) with no new argument, and what it tried
travels in the model's metrics like any strategy's training record.

1. The linear probe, the prototype classifier and blends of the two, on cached features, scored on the same
   cross-validation folds (:func:`~headstart.strategies.blend.choose_probe`): seconds.
2. A cheap learning curve: the probe's cross-validated accuracy on half the data against all of it. When
   features are saturated (the curve is flat) or near-perfect, fine-tuning is unlikely to gain and is skipped.
3. Otherwise, if the time fine-tuning may take (``finetune_cost`` times the probe's, within the budget) holds
   ``min_finetune_epochs`` epochs at the speed of a timed training pass (a few examples, after a warm-up), the
   fine-tuning strategy trains on most of the data and is compared with the probe on the same held-out part; it
   is kept only if it wins there by ``finetune_margin``. For images on a CPU this rarely happens (their
   fine-tuning never beat the probe there); text encoders get twice the allowance, which fine-tuning MiniLM
   repaid on WordNet (``benchmarks/auto_budget.py``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from headstart.backbones import Backbone, extract_features
from headstart.data import Dataset, stratified_split
from headstart.model import TransferModel
from headstart.strategies.base import FROZEN_FEATURES, STRATEGIES, Strategy, register_strategy
from headstart.strategies.blend import ProbeChoice, choose_probe
from headstart.strategies.heads import prototype_head
from headstart.strategies.linear import linear_out_of_fold
from headstart.strategies.probe_memo import head_key, recall_choice, remember_choice, source_hash
from headstart.training import FitContext, StrategyConfig
from headstart.training.search_space import Dimension, FloatRange

#: Fewest held-out examples per class on which fine-tuning and the probe are compared.
MIN_COMPARE_PER_CLASS = 5
#: The part of the training data held out to compare fine-tuning with the probe.
HELD_OUT_FRACTION = 0.2
#: ``finetune_cost`` by the backbone's modality when not set: fine-tuning a text encoder on a CPU costs 5-9x the
#: probe and gained 1.6-3.6 points over it on WordNet at 64 per class (a budget of 5x reached it only on a quiet
#: machine); an image network's fine-tuning never beat the probe on a CPU (``benchmarks/strategies.py``).
FINETUNE_COST = {"text": 10.0}
DEFAULT_FINETUNE_COST = 5.0
#: Examples of the timed training pass (after an untimed one over the same) from which a full batch's cost is scaled.
TIMED_EXAMPLES = 4


class AutoConfig(StrategyConfig):
    """Settings of the ``auto`` strategy."""

    # How readily fine-tuning is tried and kept; the frozen-feature candidates choose themselves by cross-validation.
    search_space: ClassVar[dict[str, Dimension]] = {"min_curve_gain": FloatRange(0.0, 0.1),
                                                    "finetune_margin": FloatRange(0.0, 0.05)}

    folds: int = Field(5, ge=2, description="Cross-validation folds for the frozen-feature candidates.")
    blend_weights: int = Field(5, ge=2, description="Blends of linear probe and prototypes tried (evenly "
                                                    "spaced weights over [0, 1], both ends included).")
    temperature: bool = Field(True, description="Fit a softmax temperature on the winner's cross-validated "
                                                "predictions.")
    finetune: Literal["auto", "never", "always"] = Field("auto", description="Try fine-tuning: 'auto' when the "
                                                         "learning curve still rises and the budget allows.")
    finetune_strategy: str = Field("finetune", description="The strategy tried when fine-tuning is tried.")
    min_curve_gain: float = Field(0.02, ge=0, description="Accuracy the probe must gain from half the data to all "
                                                          "of it (cross-validated) for fine-tuning to be tried.")
    finetune_margin: float = Field(0.01, ge=0, description="Held-out accuracy by which fine-tuning must beat the "
                                                           "probe to be kept.")
    budget: float = Field(300.0, gt=0, description="Seconds for everything auto tries when fit has no max_time.")
    finetune_cost: float | None = Field(None, gt=0, description="Most time fine-tuning may take, as a multiple of "
                                        "the probe's (feature extraction included), within the budget; default 10 "
                                        "for text, 5 for the other modalities.")
    min_finetune_epochs: int = Field(3, ge=1, description="Fine-tuning is not tried when the time it may take "
                                                          "holds fewer epochs than this (estimated from a timed "
                                                          "training pass over a few examples).")


def learning_curve_gain(features: np.ndarray, labels: np.ndarray, c: float, *, folds: int, seed: int,
                        full_accuracy: float | None = None) -> float | None:
    """Cross-validated accuracy of the probe at ``c`` on all examples minus on a stratified half (``None`` when
    the half is too small to cross-validate). ``full_accuracy``: the first term when already known (``auto``'s
    candidates were scored on the same folds at the same ``c``), saving one cross-validation."""
    half = np.sort(np.concatenate([np.random.default_rng(seed).permutation(np.flatnonzero(labels == k))
                                   [: max(1, int(np.sum(labels == k)) // 2)] for k in np.unique(labels)]))
    scores = []
    for x, y in ((features, labels), (features[half], labels[half])):
        if full_accuracy is not None and not scores:
            scores.append(full_accuracy)
            continue
        proba = linear_out_of_fold(x, y, c=c, folds=folds, seed=seed)
        if proba is None:
            return None
        scores.append(float(np.mean(np.unique(y)[proba.argmax(axis=1)] == y)))
    return scores[0] - scores[1]


def training_batch_seconds(backbone: Backbone, items: list[Any], batch_size: int) -> tuple[float, int]:
    """Estimated seconds of one forward and backward pass of ``backbone`` over ``batch_size`` of ``items`` (what a
    fine-tuning step costs, near enough), and how many examples the pass timed.

    Timing a cold full batch would mostly time one-off costs (allocations, kernel selection: 18 s for a cold batch
    of 32 images at 224 px where a warm one took 1.5 s), so ``TIMED_EXAMPLES`` go through once untimed (a pass
    over fewer was measured to leave that shape's pass 1.5x slower) and once timed, scaled per example to the
    batch size. A small batch costs at least as much per example as a full one (1.4x for efficientnet_lite0 on a
    quiet CPU), so the estimate errs high: auto then skips fine-tuning sooner, never later. Normalisation
    statistics are not updated and the gradients are discarded.
    """
    module, was_training = backbone.module, backbone.module.training
    module.eval()
    timed = min(TIMED_EXAMPLES, batch_size, len(items))
    try:
        with torch.enable_grad():
            _training_pass(backbone, items[:timed])
            started = time.perf_counter()
            _training_pass(backbone, items[:timed])
            seconds = time.perf_counter() - started
        return seconds * batch_size / timed, timed
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)


def _training_pass(backbone: Backbone, items: list[Any]) -> None:
    out = backbone.forward(backbone.collate(items))
    if out.requires_grad:
        out.float().square().mean().backward()


#: What makes auto's choice (their source files key a remembered one), captured at import.
_CHOICE_CODE = (choose_probe, prototype_head, linear_out_of_fold, learning_curve_gain, recall_choice)


@register_strategy("auto")
class Auto(Strategy):
    """The best of linear probe, prototypes and their blend by cross-validation (temperature-scaled), and
    fine-tuning only when a learning curve says it may gain and the budget allows; the model's
    ``metrics["train"]["auto"]`` says what was tried, what it cost and why the winner won."""

    config_class = AutoConfig
    preferred_preprocess = FROZEN_FEATURES

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> TransferModel:
        """With a feature cache, a choice of frozen-feature head made before on the same features, labels,
        settings and code is loaded (``metrics["train"]["auto"]["remembered"]``) instead of made again, as the
        linear probe's head is; a fine-tuned winner is not remembered (its weights are the saved model's)."""
        started = time.perf_counter()
        features = extract_features(backbone, train, cache=context.cache, batch_size=self.config.batch_size,
                                    progress=context.progress, label="train")
        path = self._memo_path(backbone, features, train, context)
        # torch's global random state is left as it was found, so a remembered and a fresh choice leave the
        # caller in the same state.
        with torch.random.fork_rng(devices=[]):
            recalled = recall_choice(path) if path is not None else None
            if recalled is not None:
                head, trained = recalled
                model = self._model(backbone, head, train, context, trained["auto"]["winner"])
                model.metrics = {"train": {**trained, "auto": {**trained["auto"], "remembered": True}}}
                return model
            model = self._choose(backbone, features, train, context, started)
        if path is not None and not model.backbone_trained:
            remember_choice(path, model.head, model.metrics["train"])
        return model

    def _memo_path(self, backbone: Backbone, features: np.ndarray, train: Dataset, context: FitContext
                   ) -> Path | None:
        if context.cache is None:
            return None
        settings = {**self.config.model_dump(), "seed": context.seed, "max_time": context.max_time,
                    "trainable": backbone.trainable}
        key = head_key(features, train.labels, len(train.class_names), settings, source_hash(*_CHOICE_CODE))
        return context.cache.root / "heads" / f"auto-{key}.safetensors"

    def _choose(self, backbone: Backbone, features: np.ndarray, train: Dataset, context: FitContext,
                started: float) -> TransferModel:
        cfg = self.config
        choice = choose_probe(features, train.labels, len(train.class_names), folds=cfg.folds, seed=context.seed,
                              weights=cfg.blend_weights, temperature=cfg.temperature)
        record: dict[str, Any] = {"tried": choice.tried, "winner": choice.name, "why": choice.reason,
                                  "temperature": choice.temperature,
                                  "probe_seconds": round(time.perf_counter() - started, 2)}
        model = self._model(backbone, choice.head, train, context, choice.name)
        should, why = self._should_finetune(backbone, features, train.labels, choice, context, started)
        allowed = None
        if should:
            allowed, too_slow = self._finetune_time(backbone, train, context, started, record["probe_seconds"])
            why = too_slow or why
        record["finetune"] = why
        if allowed is not None:
            model = self._try_finetune(backbone, train, context, allowed, started, record) or model
        record["seconds"] = round(time.perf_counter() - started, 2)
        trained = model.metrics.get("train", {}) if model.backbone_trained else {"cv_accuracy": choice.cv_accuracy}
        model.metrics = {"train": {**trained, "auto": record}}
        return model

    def _model(self, backbone: Backbone, head: torch.nn.Linear, train: Dataset, context: FitContext, winner: str
               ) -> TransferModel:
        return TransferModel(backbone, head, train.class_names, strategy=self.name,
                             strategy_config={**self.config.model_dump(), "seed": context.seed, "winner": winner})

    def _budget_left(self, context: FitContext, started: float) -> float:
        budget = context.max_time if context.max_time is not None else self.config.budget
        return budget - (time.perf_counter() - started)

    def _should_finetune(self, backbone: Backbone, features: np.ndarray, labels: np.ndarray, choice: ProbeChoice,
                         context: FitContext, started: float) -> tuple[bool, str]:
        """Whether to try fine-tuning, and why (in words, for the metrics)."""
        cfg = self.config
        if cfg.finetune == "never":
            return False, "not tried: finetune='never'"
        if not backbone.trainable:
            return False, "not tried: the backbone has no trainable weights"
        per_class = np.bincount(labels).min() * HELD_OUT_FRACTION
        if per_class < MIN_COMPARE_PER_CLASS:
            return False, (f"not tried: a comparison split would hold {per_class:.0f} examples of the smallest "
                           f"class, too few to tell fine-tuning from the probe")
        if cfg.finetune == "always":
            return True, "tried: finetune='always'"
        if self._budget_left(context, started) < 0.5 * (context.max_time or cfg.budget):
            return False, "not tried: the probe used over half the time budget"
        if choice.cv_accuracy >= 0.98:
            return False, f"not tried: the probe is already at {choice.cv_accuracy:.1%} (cross-validated)"
        linear = choice.tried["linear"]
        gain = learning_curve_gain(features, labels, linear["C"], folds=cfg.folds, seed=context.seed,
                                   full_accuracy=linear["cv_accuracy"])
        if gain is None or gain < cfg.min_curve_gain:
            shown = "unknown" if gain is None else f"{gain:+.1%}"
            return False, (f"not tried: the probe gained {shown} from half the data to all of it (below "
                           f"{cfg.min_curve_gain:.0%}), so the frozen features look saturated")
        return True, f"tried: the probe still gained {gain:+.1%} from half the data to all of it"

    def _finetune_time(self, backbone: Backbone, train: Dataset, context: FitContext, started: float,
                       probe_seconds: float) -> tuple[float | None, str]:
        """The seconds fine-tuning may take, or ``None`` and why not when they hold fewer than
        ``min_finetune_epochs`` epochs (``finetune='always'``: whatever is left of the budget)."""
        cfg = self.config
        left = self._budget_left(context, started)
        if cfg.finetune == "always":
            return left, ""
        cost = cfg.finetune_cost or FINETUNE_COST.get(backbone.modality, DEFAULT_FINETUNE_COST)
        allowed = min(left, cost * probe_seconds)
        step, timed = training_batch_seconds(backbone, train.items, cfg.batch_size)
        needed = cfg.min_finetune_epochs * step * math.ceil((1 - HELD_OUT_FRACTION) * len(train) / cfg.batch_size)
        if allowed < needed:
            return None, (f"not tried: {cfg.min_finetune_epochs} epochs would take about {needed:.0f} s (a "
                          f"training batch of {cfg.batch_size} about {step:.2f} s, scaled from a second pass over "
                          f"{timed} examples), more than the {allowed:.0f} s it may take "
                          f"({cost:g}x the probe's time, within the budget)")
        return allowed, ""

    def _try_finetune(self, backbone: Backbone, train: Dataset, context: FitContext, allowed: float,
                      started: float, record: dict[str, Any]) -> TransferModel | None:
        """Fine-tune on 80% of ``train`` for at most ``allowed`` seconds and compare it with the probe fitted
        on the same 80% on the other 20%; the fine-tuned model if it wins by the margin, else ``None``."""
        cfg = self.config
        parts = stratified_split(train, val_fraction=HELD_OUT_FRACTION, seed=context.seed)
        held = parts.val
        tuned = STRATEGIES.get(cfg.finetune_strategy)().fit(
            backbone, parts.train, held, dataclasses.replace(context, max_time=allowed))
        fit_features = extract_features(backbone, parts.train, cache=context.cache, batch_size=cfg.batch_size)
        probe = choose_probe(fit_features, parts.train.labels, len(train.class_names), folds=cfg.folds,
                             seed=context.seed, weights=cfg.blend_weights, temperature=cfg.temperature)
        held_features = torch.from_numpy(extract_features(backbone, held, cache=context.cache,
                                                          batch_size=cfg.batch_size))
        with torch.no_grad():
            probe_accuracy = float(np.mean(probe.head(held_features).argmax(1).numpy() == held.labels))
        tuned_accuracy = float(np.mean(tuned.logits(held.items, batch_size=cfg.batch_size).argmax(1) == held.labels))
        record["finetune_result"] = {"strategy": cfg.finetune_strategy, "held_out_accuracy": tuned_accuracy,
                                     "probe_held_out_accuracy": probe_accuracy, "n_held_out": len(held),
                                     "seconds": round(time.perf_counter() - started - record["probe_seconds"], 2)}
        if tuned_accuracy < probe_accuracy + cfg.finetune_margin:
            return None
        record["winner"] = cfg.finetune_strategy
        record["why"] = (f"{cfg.finetune_strategy} beat the probe on {len(held)} held-out examples "
                         f"({tuned_accuracy:.1%} vs {probe_accuracy:.1%})")
        tuned.strategy = self.name
        tuned.strategy_config = {**self.config.model_dump(), "seed": context.seed, "winner": cfg.finetune_strategy,
                                 "winner_config": tuned.strategy_config}
        return tuned
