"""``auto``: the cheap frozen-feature candidates first, fine-tuning only where the data says it may pay.

A registered strategy rather than an orchestration above ``fit``: it is then available wherever a strategy is
(``fit``, ``compare``, the scikit-learn estimator, the contract tests) with no new argument, and what it tried
travels in the model's metrics like any strategy's training record.

1. The linear probe, the prototype classifier and blends of the two, on cached features, scored on the same
   cross-validation folds (:func:`~headstart.strategies.blend.choose_probe`): seconds.
2. Except for text, a cheap learning curve: the probe's cross-validated accuracy on half the data against all of
   it. When features are saturated (the curve is flat) or near-perfect, fine-tuning is unlikely to gain and is
   skipped. On text it gained even where the curve was flat (``benchmarks/auto_budget.py``), so text is not gated.
3. The CPU time fine-tuning may take is ``finetune_cost`` times the probe's (its features' extraction, as timed
   when they were extracted, cached now or not, plus choosing the head). The epochs that time holds at the cost of
   a timed training pass (a few examples, after a warm-up) are planned, at most the fine-tuning strategy's
   default; with fewer than ``min_finetune_epochs``, or on small data fewer than ``min_finetune_steps`` optimizer
   steps, it is not tried. Otherwise it trains for them on 80% of the
   data and is kept only if it beats the probe on the other 20% by ``finetune_margin``. CPU time, not wall time,
   so that other programs on the machine do not change the decision; the wall-clock budget stays a hard stop. For
   images on a CPU fine-tuning is rarely tried (it never beat the probe there); text encoders get six times the
   allowance, which fine-tuning MiniLM repaid on every text task measured.

With a feature cache the whole decision is remembered (keyed by the features, labels, settings and code), so a
re-run decides the same whatever the machine's load: a frozen-feature winner is loaded, a fine-tuned one is
trained again with the same planned settings (its weights are the saved model's).
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

from headstart.backbones import Backbone, extract_features, timed_features
from headstart.data import Dataset, stratified_split
from headstart.model import TransferModel
from headstart.strategies.auto_gates import TIMED_EXAMPLES, learning_curve_gain, training_batch_seconds
from headstart.strategies.base import FROZEN_FEATURES, STRATEGIES, Strategy, register_strategy
from headstart.strategies.blend import ProbeChoice, choose_probe
from headstart.strategies.heads import prototype_head
from headstart.strategies.linear import linear_out_of_fold
from headstart.strategies.probe_memo import head_key, recall_choice, remember_choice, source_hash
from headstart.training import FitContext, StrategyConfig
from headstart.training.search_space import Dimension, FloatRange

__all__ = ["TIMED_EXAMPLES", "Auto", "AutoConfig", "learning_curve_gain", "training_batch_seconds"]

#: Fewest held-out examples per class on which fine-tuning and the probe are compared.
MIN_COMPARE_PER_CLASS = 5
#: The part of the training data held out to compare fine-tuning with the probe.
HELD_OUT_FRACTION = 0.2
#: ``finetune_cost`` by the backbone's modality when not set. Within 30x the probe's CPU time, fine-tuning MiniLM
#: on a CPU gained over the frozen-feature choice on the three WordNet tasks of ``benchmarks/auto_budget.py`` (+1.1
#: to +3.4 points, mean of 3 seeds, each more than the probe's seed spread); within 20x it planned too few
#: epochs in one `make demo-text` run. On fortunes (long texts) 30x holds too few steps (``min_finetune_steps``)
#: and the probe is kept.
#: An image network's fine-tuning never beat the probe on a CPU (``benchmarks/strategies.py``), so the others get
#: what the defaults issue allows without a proven gain.
FINETUNE_COST = {"text": 30.0}
DEFAULT_FINETUNE_COST = 5.0
#: ``min_curve_gain`` by modality when not set; ``None`` is no learning-curve gate. Fine-tuning MiniLM gained on
#: all four text tasks of ``benchmarks/auto_budget.py``, two of them with a flat probe curve.
MIN_CURVE_GAIN: dict[str, float | None] = {"text": None}
DEFAULT_MIN_CURVE_GAIN = 0.02


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
                                                         "learning curve and the time allowance say it may pay; "
                                                         "'always' with the default epochs, within the budget.")
    finetune_strategy: str = Field("finetune", description="The strategy tried when fine-tuning is tried.")
    min_curve_gain: float | None = Field(None, ge=0, description="Accuracy the probe must gain from half the data "
                                         "to all of it (cross-validated) for fine-tuning to be tried; default 0.02, "
                                         "and no such gate for text.")
    finetune_margin: float = Field(0.01, ge=0, description="Held-out accuracy by which fine-tuning must beat the "
                                                           "probe to be kept.")
    budget: float = Field(300.0, gt=0, description="Seconds for everything auto tries when fit has no max_time.")
    finetune_cost: float | None = Field(None, gt=0, description="Time fine-tuning may take, as a multiple of the "
                                        "probe's (feature extraction included), in CPU seconds; default 30 "
                                        "for text, 5 for the other modalities.")
    min_finetune_epochs: int = Field(3, ge=1, description="Fine-tuning is not tried when the time it may take "
                                                          "holds fewer epochs than this "
                                                          "(estimated from a timed training pass over a few "
                                                          "examples).")
    min_finetune_steps: int = Field(50, ge=0, description="Nor when they hold fewer optimizer steps than this "
                                    "(small data): on fortunes, 30 steps of MiniLM gained +1.1 +- 1.3 points over "
                                    "the probe, on WordNet 64-120 steps +1.2 to +3.6.")


#: What makes auto's choice (their source files key a remembered one), captured at import.
_CHOICE_CODE = (choose_probe, prototype_head, linear_out_of_fold, learning_curve_gain, recall_choice)


@register_strategy("auto")
class Auto(Strategy):
    """The best of linear probe, prototypes and their blend by cross-validation (temperature-scaled), and
    fine-tuning only when the data and the time allowance say it may pay; the model's
    ``metrics["train"]["auto"]`` says what was tried, what it cost and why the winner won."""

    config_class = AutoConfig
    preferred_preprocess = FROZEN_FEATURES

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> TransferModel:
        """With a feature cache, a decision made before on the same features, labels, settings and code is
        replayed (``metrics["train"]["auto"]["remembered"]``) instead of made again: a frozen-feature head is
        loaded, a fine-tuned winner is trained again with the settings planned then."""
        started = time.perf_counter()
        features, extraction = timed_features(backbone, train, cache=context.cache, batch_size=self.config.batch_size,
                                              progress=context.progress, label="train")
        path = self._memo_path(backbone, features, train, context)
        # torch's global random state is left as it was found, so a remembered and a fresh choice leave the
        # caller in the same state.
        with torch.random.fork_rng(devices=[]):
            recalled = recall_choice(path) if path is not None else None
            if recalled is not None:
                return self._replay(backbone, train, context, *recalled, spent=time.perf_counter() - started)
            model, probe_head, trained = self._choose(backbone, features, train, context, extraction, started)
        if path is not None:
            remember_choice(path, probe_head, trained)
        return model

    def _memo_path(self, backbone: Backbone, features: np.ndarray, train: Dataset, context: FitContext
                   ) -> Path | None:
        if context.cache is None:
            return None
        settings = {**self.config.model_dump(), "seed": context.seed, "max_time": context.max_time,
                    "trainable": backbone.trainable}
        key = head_key(features, train.labels, len(train.class_names), settings, source_hash(*_CHOICE_CODE))
        return context.cache.root / "heads" / f"auto-{key}.safetensors"

    def _replay(self, backbone: Backbone, train: Dataset, context: FitContext, head: torch.nn.Linear,
                trained: dict[str, Any], spent: float) -> TransferModel:
        """The model a remembered decision gives: the stored head, or fine-tuning again as planned then."""
        record = {**trained["auto"], "remembered": True}
        if record["winner"] == self.config.finetune_strategy and record.get("finetune_settings") is not None:
            tuned = self._try_finetune(backbone, train, context, record["finetune_settings"], record, spent)
            if tuned is not None:
                return self._with_record(tuned, record)
        model = self._model(backbone, head, train, context, record.get("probe_winner", record["winner"]))
        model.metrics = {"train": {**trained, "auto": record}}
        return model

    def _choose(self, backbone: Backbone, features: np.ndarray, train: Dataset, context: FitContext,
                extraction: float, started: float) -> tuple[TransferModel, torch.nn.Linear, dict[str, Any]]:
        """The model, the frozen-feature head chosen and what to remember of the decision."""
        cfg = self.config
        chosen_at = time.process_time()
        choice = choose_probe(features, train.labels, len(train.class_names), folds=cfg.folds, seed=context.seed,
                              weights=cfg.blend_weights, temperature=cfg.temperature)
        probe_seconds = extraction + time.process_time() - chosen_at
        record: dict[str, Any] = {"tried": choice.tried, "winner": choice.name, "probe_winner": choice.name,
                                  "why": choice.reason, "temperature": choice.temperature,
                                  "extraction_cpu_seconds": round(extraction, 2),
                                  "probe_cpu_seconds": round(probe_seconds, 2)}
        should, why = self._should_finetune(backbone, features, train.labels, choice, context,
                                            time.perf_counter() - started)
        settings = None
        if should:
            settings, too_slow = self._finetune_plan(backbone, train, context, probe_seconds, extraction)
            why = too_slow or why
        record.update(finetune=why, finetune_settings=settings)
        tuned = (self._try_finetune(backbone, train, context, settings, record, time.perf_counter() - started)
                 if settings is not None else None)
        record["seconds"] = round(time.perf_counter() - started, 2)
        trained = {"cv_accuracy": choice.cv_accuracy, "auto": record}
        if tuned is not None:
            return self._with_record(tuned, record), choice.head, trained
        model = self._model(backbone, choice.head, train, context, choice.name)
        model.metrics = {"train": trained}
        return model, choice.head, trained

    @staticmethod
    def _with_record(tuned: TransferModel, record: dict[str, Any]) -> TransferModel:
        """A fine-tuned winner, its training metrics joined by ``auto``'s record."""
        tuned.metrics = {"train": {**tuned.metrics.get("train", {}), "auto": record}}
        return tuned

    def _model(self, backbone: Backbone, head: torch.nn.Linear, train: Dataset, context: FitContext, winner: str
               ) -> TransferModel:
        return TransferModel(backbone, head, train.class_names, strategy=self.name,
                             strategy_config={**self.config.model_dump(), "seed": context.seed, "winner": winner})

    def _budget(self, context: FitContext) -> float:
        return context.max_time if context.max_time is not None else self.config.budget

    def _should_finetune(self, backbone: Backbone, features: np.ndarray, labels: np.ndarray, choice: ProbeChoice,
                         context: FitContext, spent: float) -> tuple[bool, str]:
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
        if spent > 0.5 * self._budget(context):
            return False, "not tried: the probe used over half the time budget"
        if choice.cv_accuracy >= 0.98:
            return False, f"not tried: the probe is already at {choice.cv_accuracy:.1%} (cross-validated)"
        threshold = cfg.min_curve_gain if cfg.min_curve_gain is not None else MIN_CURVE_GAIN.get(
            backbone.modality, DEFAULT_MIN_CURVE_GAIN)
        if threshold is None:
            return True, f"tried: {backbone.modality} is not gated by the probe's learning curve"
        linear = choice.tried["linear"]
        gain = learning_curve_gain(features, labels, linear["C"], folds=cfg.folds, seed=context.seed,
                                   full_accuracy=linear["cv_accuracy"])
        if gain is None or gain < threshold:
            shown = "unknown" if gain is None else f"{gain:+.1%}"
            return False, (f"not tried: the probe gained {shown} from half the data to all of it (below "
                           f"{threshold:.0%}), so the frozen features look saturated")
        return True, f"tried: the probe still gained {gain:+.1%} from half the data to all of it"

    def _finetune_plan(self, backbone: Backbone, train: Dataset, context: FitContext, probe_seconds: float,
                       extraction: float) -> tuple[dict[str, Any] | None, str]:
        """The settings fine-tuning is tried with (the epochs its time allowance holds, at most its default), or
        ``None`` and why not when they are fewer than :meth:`_fewest_epochs` (``finetune='always'``: its
        defaults, within whatever is left of the budget)."""
        cfg = self.config
        if cfg.finetune == "always":
            return {}, ""
        tuner = STRATEGIES.get(cfg.finetune_strategy)()
        n_fit = len(train) - max(1, round(HELD_OUT_FRACTION * len(train)))
        plan = tuner.config.resolve(backbone.modality, n_fit, tuner.name)
        cost = cfg.finetune_cost or FINETUNE_COST.get(backbone.modality, DEFAULT_FINETUNE_COST)
        allowed = cost * probe_seconds
        step, timed = training_batch_seconds(backbone, train.items, cfg.batch_size)
        epoch = step / cfg.batch_size * n_fit
        # Each epoch also validates on the held-out part (a forward pass: about a third of a training step's work);
        # the head-only stage trains on the split's frozen features when unaugmented (one extraction), else runs
        # the backbone forward for each of its epochs.
        per_epoch = epoch * (1 + HELD_OUT_FRACTION / (1 - HELD_OUT_FRACTION) / 3)
        head = extraction if (plan.augment or "off") == "off" else getattr(plan, "head_epochs", 0) * epoch / 3
        fits = math.floor((allowed - head) / per_epoch) if per_epoch > 0 else plan.epochs
        least, steps = self._fewest_epochs(plan, n_fit)
        if fits < least:
            needed = head + least * per_epoch
            return None, (f"not tried: {least} epochs{steps} would take about {needed:.0f} CPU s (a "
                          f"training batch of {cfg.batch_size} about {step:.2f} s, scaled from a second pass over "
                          f"{timed} examples), more than the {allowed:.0f} s it may take "
                          f"({cost:g}x the probe's)")
        return {"epochs": min(plan.epochs, fits)}, ""

    def _fewest_epochs(self, plan: StrategyConfig, n_fit: int) -> tuple[int, str]:
        """The fewest epochs fine-tuning is tried with (``min_finetune_epochs``, or on small data those that
        take ``min_finetune_steps`` optimizer steps; never more than its default epochs), and words that give the
        steps when they decided."""
        cfg, per_epoch = self.config, math.ceil(n_fit / plan.batch_size)
        least = min(plan.epochs, max(cfg.min_finetune_epochs, math.ceil(cfg.min_finetune_steps / per_epoch)))
        if least <= cfg.min_finetune_epochs:
            return cfg.min_finetune_epochs, ""
        return least, f" ({least * per_epoch} steps of {plan.batch_size}, at least {cfg.min_finetune_steps})"

    def _try_finetune(self, backbone: Backbone, train: Dataset, context: FitContext, settings: dict[str, Any],
                      record: dict[str, Any], spent: float) -> TransferModel | None:
        """Fine-tune with ``settings`` on 80% of ``train`` (within what ``spent`` seconds left of the budget) and
        compare it with the probe fitted on the same 80% on the other 20%; the fine-tuned model if it wins by the
        margin, else ``None``."""
        cfg, started = self.config, time.perf_counter()
        parts = stratified_split(train, val_fraction=HELD_OUT_FRACTION, seed=context.seed)
        held = parts.val
        budget = self._budget(context) - spent
        tuned = STRATEGIES.get(cfg.finetune_strategy)(**settings).fit(
            backbone, parts.train, held, dataclasses.replace(context, max_time=budget))
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
                                     "seconds": round(time.perf_counter() - started, 2)}
        if tuned_accuracy < probe_accuracy + cfg.finetune_margin:
            return None
        record["winner"] = cfg.finetune_strategy
        record["why"] = (f"{cfg.finetune_strategy} beat the probe on {len(held)} held-out examples "
                         f"({tuned_accuracy:.1%} vs {probe_accuracy:.1%})")
        tuned.strategy = self.name
        tuned.strategy_config = {**self.config.model_dump(), "seed": context.seed, "winner": cfg.finetune_strategy,
                                 "winner_config": tuned.strategy_config}
        return tuned
