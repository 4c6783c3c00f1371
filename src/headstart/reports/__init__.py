"""HTML reports (self-contained, plots embedded) for fit, rank and compare."""

from headstart.reports.fit import write_fit_report
from headstart.reports.ranking import ranking_rows, write_rank_report
from headstart.reports.study import write_compare_report

__all__ = ["ranking_rows", "write_compare_report", "write_fit_report", "write_rank_report"]
