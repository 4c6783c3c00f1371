"""The search space of one tuning study: the strategy's declared dimensions (or the user's), made concrete for
the data (relative bounds resolved against the modality's defaults) and turned into Optuna suggestions."""

from __future__ import annotations

from typing import Any

from headstart.errors import ConfigError, option
from headstart.strategies import STRATEGIES
from headstart.training.config import StrategyConfig
from headstart.training.search_space import (
    Choice,
    Dimension,
    FloatRange,
    IntRange,
    applies_to,
    check_search_space,
    check_value,
    parse_dimension,
)


def declared_space(strategy: str, space: dict[str, Dimension | str] | None, fixed: dict[str, Any]
                   ) -> dict[str, Dimension]:
    """The dimensions to search: ``space`` when given (strings are parsed, e.g. ``"log:1e-5:1e-3"``), else the
    strategy's declared ``search_space``; settings fixed in ``fixed`` are not searched.

    Raises:
        ConfigError: An unknown strategy, a setting the strategy lacks, a value it does not allow, a setting
            both fixed and searched, or nothing left to search.
    """
    config_class = STRATEGIES.get(strategy).config_class
    if space is None:
        chosen = {k: v for k, v in config_class.search_space.items() if k not in fixed}
    else:
        chosen = {k: parse_dimension(k, v) if isinstance(v, str) else v for k, v in space.items()}
        both = sorted(set(chosen) & set(fixed))
        if both:
            raise ConfigError(f"{', '.join(both)} is both fixed ({option('settings', cli='--set')}) and searched "
                              f"({option('space')}); drop one of them")
    check_search_space(config_class, chosen, strategy)
    if not chosen:
        raise ConfigError(f"nothing to search for strategy {strategy!r}: give {option('space')} setting=low:high "
                          f"(its settings: {', '.join(config_class.model_fields)})")
    return chosen


def concrete_space(space: dict[str, Dimension], defaults: StrategyConfig, modality: str, strategy: str
                   ) -> dict[str, dict[str, Any]]:
    """Each searched setting as ``{"kind": "float"|"int"|"choice", ...}`` with absolute bounds, for data of
    ``modality`` whose resolved default settings are ``defaults``; dimensions for other modalities are dropped.

    Raises:
        ConfigError: A relative bound around a default that is unset, or bounds the setting does not allow.
    """
    concrete: dict[str, dict[str, Any]] = {}
    for name, dimension in space.items():
        if not applies_to(dimension, modality):
            continue
        if isinstance(dimension, Choice):
            concrete[name] = {"kind": "choice", "values": list(dimension.values)}
            continue
        default = getattr(defaults, name)
        if getattr(dimension, "relative", False) and default is None:
            raise ConfigError(f"search space of {strategy!r}: {name} is relative to its default, which is not set; "
                              f"give absolute bounds with {option('space')}")
        low, high = dimension.bounds(default)
        for value in (low, high):
            check_value(type(defaults), name, value, strategy)
        kind = "int" if isinstance(dimension, IntRange) else "float"
        assert isinstance(dimension, (FloatRange, IntRange))
        concrete[name] = {"kind": kind, "low": low, "high": high, "log": dimension.log}
    if not concrete:
        raise ConfigError(f"nothing to search for strategy {strategy!r} on {modality} data")
    return concrete


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings an Optuna ``trial`` draws from a :func:`concrete_space`."""
    params = {}
    for name, dim in space.items():
        if dim["kind"] == "choice":
            params[name] = trial.suggest_categorical(name, dim["values"])
        elif dim["kind"] == "int":
            params[name] = trial.suggest_int(name, dim["low"], dim["high"], log=dim["log"])
        else:
            params[name] = trial.suggest_float(name, dim["low"], dim["high"], log=dim["log"])
    return params


def default_point(space: dict[str, dict[str, Any]], defaults: StrategyConfig) -> dict[str, Any]:
    """The resolved defaults of the searched settings that lie inside the space (the first trial)."""
    point = {}
    for name, dim in space.items():
        value = getattr(defaults, name)
        inside = (value in dim["values"]) if dim["kind"] == "choice" else (
            value is not None and dim["low"] <= value <= dim["high"])
        if inside:
            point[name] = value
    return point
