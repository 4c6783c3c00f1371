"""The Python API: the same features as the CLI, as functions.

Each function loads what it is given, calls one room of the package and publishes the result; the logic
lives in those rooms (:mod:`headstart.fitting`, :mod:`headstart.transferability`, :mod:`headstart.studies`,
:mod:`headstart.tuning`).
"""

from headstart.api.models import evaluate, fit, forgetting, load, predict
from headstart.api.studies import DEFAULT_FRACTIONS, compare, rank, tune

__all__ = ["DEFAULT_FRACTIONS", "compare", "evaluate", "fit", "forgetting", "load", "predict", "rank", "tune"]
