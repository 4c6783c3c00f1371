"""Strategies: how knowledge is carried from a backbone to the user's task.

Each strategy is one module that registers itself; adding one is a new module plus one import line here.
"""

from headstart.strategies import (  # noqa: F401  (registration)
    adabn,
    auto,
    contrastive,
    coral,
    dann,
    finetune,
    gradual,
    linear,
    lora,
    lpft,
    prototypes,
    scratch,
)
from headstart.strategies.base import (
    STRATEGIES,
    Strategy,
    TrainedStrategy,
    check_settings,
    get_strategy,
    list_strategies,
    register_strategy,
    shared_preprocess,
)

__all__ = ["STRATEGIES", "Strategy", "TrainedStrategy", "check_settings", "get_strategy", "list_strategies",
           "register_strategy", "shared_preprocess"]
