"""The generated report: figures, claim verdicts and run metadata, from stored results only."""

from normtheory.report.render import build_report, find_runs

__all__ = ["build_report", "find_runs"]
