"""HTML reports (self-contained, plots embedded) for fit, rank, compare and tune; the model card of a fit."""

from headstart.reports.card import model_card, write_model_card
from headstart.reports.fit import write_fit_report
from headstart.reports.ranking import ranking_rows, write_rank_report
from headstart.reports.study import write_compare_report
from headstart.reports.tune import write_tune_report

__all__ = ["model_card", "ranking_rows", "write_compare_report", "write_fit_report", "write_model_card",
           "write_rank_report", "write_tune_report"]
