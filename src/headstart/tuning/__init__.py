"""Hyperparameter search (Optuna) over a strategy's declared search space, resumable and shareable between
workers through the study's storage."""

from headstart.tuning.study import TuneResult, trial_record, tune_strategy

__all__ = ["TuneResult", "trial_record", "tune_strategy"]
