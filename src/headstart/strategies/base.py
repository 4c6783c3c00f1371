"""The Strategy interface: how knowledge is carried from a backbone to the user's task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from headstart.errors import ConfigError

if TYPE_CHECKING:
    from headstart.backbones.base import Backbone
    from headstart.data.base import Dataset
    from headstart.features import FeatureCache
    from headstart.model import TransferModel


class StrategyConfig(BaseModel):
    """Hyperparameters every strategy has. Subclasses add theirs, each with a default and help text
    (``Field(description=...)``): the CLI's ``--set key=value``, the saved config and the report read them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="Random seed; the same seed and data give the same model.")
    batch_size: int = Field(64, ge=1, description="Examples per batch (feature extraction and training).")


@dataclass
class FitContext:
    """What a strategy needs from the run around it.

    Attributes:
        work_dir: The run's working folder (checkpoints go here; an interrupted run resumes from it).
        cache: The frozen-feature cache, or ``None`` to always recompute.
        progress: Show progress bars.
        max_time: Wall-clock budget for training in seconds, or ``None``.
    """

    work_dir: Path
    cache: FeatureCache | None = None
    progress: bool = True
    max_time: float | None = None


class Strategy(ABC):
    """A way of training a :class:`~headstart.model.TransferModel` from a backbone and labeled data.

    Args:
        config: A complete config, or ``None`` for defaults.
        **overrides: Individual hyperparameters, validated against ``config_class``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: Whether ``fit`` selects models on validation data (then ``headstart fit`` carves a validation split
    #: from the training data when the data set has none).
    uses_validation: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig | None = None, **overrides: Any) -> None:
        base = (config or self.config_class()).model_dump()
        try:
            self.config = self.config_class(**{**base, **overrides})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"invalid settings for strategy {self.name!r}: {problems}") from None

    @abstractmethod
    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext
            ) -> TransferModel:
        """Train and return a model; ``val`` (if given) is for model selection, never for training."""
