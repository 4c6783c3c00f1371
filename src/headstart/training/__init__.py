"""The training loop shared by fine-tuning strategies: stages, schedules, early stopping, checkpoints."""

from headstart.training.checkpoint import CheckpointMismatchError
from headstart.training.config import HeadFirstConfig, StrategyConfig, TrainingConfig
from headstart.training.context import FitContext
from headstart.training.loop import Classifier, Stage, TrainResult, train

__all__ = ["CheckpointMismatchError", "Classifier", "FitContext", "HeadFirstConfig", "Stage", "StrategyConfig",
           "TrainResult", "TrainingConfig", "train"]
