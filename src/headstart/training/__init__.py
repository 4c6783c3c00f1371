"""The training loop shared by fine-tuning strategies: stages, callbacks (schedule, early stopping, time
budget, progress, DDP buffer sync), checkpoints."""

from headstart.training.checkpoint import CheckpointDamagedError, CheckpointMismatchError
from headstart.training.config import HeadFirstConfig, StrategyConfig, TrainingConfig
from headstart.training.context import FitContext
from headstart.training.loop import train
from headstart.training.network import Classifier
from headstart.training.outcome import TrainResult
from headstart.training.stages import Stage

__all__ = ["CheckpointDamagedError", "CheckpointMismatchError", "Classifier", "FitContext", "HeadFirstConfig",
           "Stage", "StrategyConfig", "TrainResult", "TrainingConfig", "train"]
