"""``metahyper report``: results gathered into tables, one kind of result per module.

* :mod:`~metahyper.report.tables`: eval JSONs in the paper's table layout (models x datasets x
  shots; seeds merged into mean +- sd over runs), printed and as Markdown, CSV and JSON;
* :mod:`~metahyper.report.benchmarks`: ``eval --benchmark`` results in Meta-Dataset's layout
  (sources x learners, the average and the average rank);
* :mod:`~metahyper.report.budget`: section 5.2's training budget a hyper run needs to match a
  plain run.
"""

from metahyper.report.benchmarks import benchmark_comparison, collect_benchmarks, merge_runs
from metahyper.report.budget import budget_text, budget_to_match
from metahyper.report.tables import Report, build_report, check_report_outputs, collect, write_report

__all__ = [
    "Report",
    "benchmark_comparison",
    "budget_text",
    "budget_to_match",
    "build_report",
    "check_report_outputs",
    "collect",
    "collect_benchmarks",
    "merge_runs",
    "write_report",
]
