"""Strategies: a registry of ways to transfer a backbone to a task (``linear``, ``finetune``, ...)."""

from __future__ import annotations

from typing import Any

from headstart.registry import Registry
from headstart.strategies.base import FitContext, Strategy, StrategyConfig

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def get_strategy(name: str, **overrides: Any) -> Strategy:
    """An instance of the strategy ``name`` with hyperparameters ``overrides`` (validated)."""
    _load_builtin()
    return STRATEGIES.get(name)(**overrides)


def list_strategies() -> list[tuple[str, type[Strategy]]]:
    """``(name, class)`` of every registered strategy."""
    _load_builtin()
    return STRATEGIES.items()


def _load_builtin() -> None:
    # Importing runs each module's @STRATEGIES.register; a strategy is one new module listed here.
    import importlib

    for module in _BUILTIN:
        importlib.import_module(f"headstart.strategies.{module}")


_BUILTIN = ["linear", "finetune", "gradual", "lpft", "lora", "scratch"]

__all__ = ["STRATEGIES", "FitContext", "Strategy", "StrategyConfig", "get_strategy", "list_strategies"]
