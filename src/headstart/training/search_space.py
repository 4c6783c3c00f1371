"""Search spaces: which of a strategy's settings a tuner may vary, and over which values.

A config class declares its space next to its fields, as a ``search_space`` class attribute mapping setting
names to dimensions (a subclass extends its parent's with ``{**Parent.search_space, ...}``), so a new strategy
brings its own and ``headstart tune`` reads it like the CLI reads the fields' help. Ranges may be ``relative``
to the setting's default for the data's modality (learning rates differ by orders of magnitude between image
and text backbones), and a dimension may apply to some modalities only (augmentation presets do nothing to
texts). Dimensions are plain data: the tuner (:mod:`headstart.tuning`) turns them into Optuna suggestions.

Example:
    >>> class MyConfig(TrainingConfig):
    ...     search_space = {**TrainingConfig.search_space, "dropout": FloatRange(0.0, 0.5)}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from headstart.errors import ConfigError

if TYPE_CHECKING:
    from headstart.training.config import StrategyConfig


@dataclass(frozen=True)
class FloatRange:
    """A real-valued setting drawn from ``[low, high]``.

    Attributes:
        low, high: The bounds, or multiples of the setting's default when ``relative``.
        log: Draw uniformly in log space (for learning rates and regularisation strengths).
        relative: The bounds multiply the setting's resolved default (``lr`` 0.1x..10x the modality's).
        modalities: Search it only on these modalities (``None``: all).
    """

    low: float
    high: float
    log: bool = False
    relative: bool = False
    modalities: tuple[str, ...] | None = None

    def bounds(self, default: Any) -> tuple[float, float]:
        """The absolute bounds, given the setting's resolved default (used when ``relative``)."""
        if not self.relative:
            return self.low, self.high
        return float(default) * self.low, float(default) * self.high


@dataclass(frozen=True)
class IntRange:
    """An integer setting drawn from ``[low, high]`` (see :class:`FloatRange`; relative bounds are rounded
    outward and kept at 1 or more)."""

    low: int | float
    high: int | float
    log: bool = False
    relative: bool = False
    modalities: tuple[str, ...] | None = None

    def bounds(self, default: Any) -> tuple[int, int]:
        """The absolute bounds, given the setting's resolved default (used when ``relative``)."""
        if not self.relative:
            return int(self.low), int(self.high)
        low = max(1, math.floor(int(default) * self.low))
        return low, max(low, math.ceil(int(default) * self.high))


@dataclass(frozen=True)
class Choice:
    """A setting drawn from a few values (``None``, booleans, numbers or strings)."""

    values: tuple[Any, ...]
    modalities: tuple[str, ...] | None = None


Dimension = FloatRange | IntRange | Choice


def applies_to(dimension: Dimension, modality: str) -> bool:
    """Whether ``dimension`` is searched on data of ``modality``."""
    return dimension.modalities is None or modality in dimension.modalities


def check_search_space(config_class: type[StrategyConfig], space: dict[str, Dimension], strategy: str) -> None:
    """Refuse a space that names a setting ``config_class`` lacks, or holds a value it does not allow.

    Absolute bounds and every choice are validated against the field now, so a bad space fails before any
    trial runs; relative bounds are checked once the default is known.

    Raises:
        ConfigError: Names the setting, the strategy and what is allowed.
    """
    fields = config_class.model_fields
    for name, dimension in space.items():
        if name not in fields:
            raise ConfigError(f"search space of {strategy!r}: it has no setting {name!r}; its settings are: "
                              f"{', '.join(fields)} (see `headstart strategies {strategy}`)")
        if isinstance(dimension, Choice):
            if not dimension.values:
                raise ConfigError(f"search space of {strategy!r}: {name} has no values to choose from")
            values = list(dimension.values)
        elif isinstance(dimension, (FloatRange, IntRange)):
            if not dimension.low < dimension.high:
                raise ConfigError(f"search space of {strategy!r}: {name} needs low < high, got "
                                  f"{dimension.low}..{dimension.high}")
            if dimension.log and dimension.low <= 0:
                raise ConfigError(f"search space of {strategy!r}: {name} is searched on a log scale, so its low "
                                  f"bound must be above 0, got {dimension.low}")
            values = [] if dimension.relative else [dimension.low, dimension.high]
        else:
            raise ConfigError(f"search space of {strategy!r}: {name} is {dimension!r}, not a FloatRange, "
                              "IntRange or Choice")
        for value in values:
            check_value(config_class, name, value, strategy)


def check_value(config_class: type[StrategyConfig], name: str, value: Any, strategy: str) -> None:
    """Refuse ``value`` for setting ``name`` when the config does not allow it.

    Raises:
        ConfigError: The setting, the value and the config's complaint.
    """
    try:
        config_class(**{name: value})
    except ValidationError as err:
        problem = "; ".join(e["msg"] for e in err.errors())
        raise ConfigError(f"search space of {strategy!r}: {name}={value!r} is not allowed ({problem})") from None


def parse_dimension(name: str, text: str) -> Dimension:
    """A dimension from its command-line form.

    ``low:high`` is a range (integer when both bounds are integers), ``log:low:high`` a range searched on a
    log scale, ``a,b,c`` a choice (numbers and ``none`` are converted).

    Raises:
        ConfigError: Anything else, with the accepted forms.

    Example:
        >>> parse_dimension("lr", "log:1e-5:1e-3")
        FloatRange(low=1e-05, high=0.001, log=True, relative=False, modalities=None)
    """
    text = text.strip()
    if "," in text:
        return Choice(tuple(_scalar(v.strip()) for v in text.split(",") if v.strip()))
    parts = text.split(":")
    log = parts[0] == "log"
    if log:
        parts = parts[1:]
    if len(parts) == 2:
        low, high = _scalar(parts[0]), _scalar(parts[1])
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return IntRange(low, high, log=log)
        if isinstance(low, (int, float)) and isinstance(high, (int, float)):
            return FloatRange(float(low), float(high), log=log)
    raise ConfigError(f"search space {name}={text}: expected low:high, log:low:high or a comma-separated choice "
                      "such as off,light,strong")


def _scalar(text: str) -> Any:
    if text.lower() == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
