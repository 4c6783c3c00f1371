"""Proving transfer: learning curves of strategies over training-set sizes and seeds, and their statistics
(gains over scratch, negative-transfer verdicts, data savings)."""

from headstart.studies.runner import SIZE_LABEL, CompareResult, SkippedRun, compare_strategies, strategy_settings
from headstart.studies.statistics import RunRecord

__all__ = ["SIZE_LABEL", "CompareResult", "RunRecord", "SkippedRun", "compare_strategies", "strategy_settings"]
