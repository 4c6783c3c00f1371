"""Proving transfer: learning curves of strategies over training-set sizes and seeds, and their statistics
(gains over scratch, negative-transfer verdicts, data savings)."""

from headstart.studies.backbones import compare_backbones, contender
from headstart.studies.records import SIZE_LABEL, CompareResult, RunRecord, SkippedRun
from headstart.studies.runner import compare_strategies, strategy_settings

__all__ = ["SIZE_LABEL", "CompareResult", "RunRecord", "SkippedRun", "compare_backbones", "compare_strategies",
           "contender", "strategy_settings"]
