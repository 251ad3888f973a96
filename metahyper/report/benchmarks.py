"""``metahyper report`` on ``eval --benchmark`` results: Meta-Dataset's layout.

A row per source, a column per learner, the average over sources and the average rank
(:func:`~metahyper.train.benchmark.benchmark_markdown`). Results that read the same (model, method,
algorithm, head) are runs (seeds) of one learner, merged into mean +- sd over the runs as a cell of
:func:`~metahyper.report.tables.build_report` merges them (:func:`merge_runs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metahyper.errors import UserError
from metahyper.io import check_fields, read_json, write_text
from metahyper.report.tables import FIX, check_report_outputs
from metahyper.train.outputs import file_kind

_BENCHMARK_FIELDS = {
    "benchmark": str, "model": str, "method": str, "sources": list, "missing": list, "average": (int, float),
    "results": list,
}  # fmt: skip
_SOURCE_FIELDS = {"source": str, "mean": (int, float), "ci95": (int, float), "fingerprint": str}


def collect_benchmarks(paths: Sequence[str | Path]) -> list[dict] | None:
    """The ``eval --benchmark`` results (JSON files) in ``paths``, to compare side by side
    (:func:`~metahyper.train.benchmark.benchmark_markdown`); None when no path is one. A one-line
    :class:`UserError` when they are mixed with other results, damaged, or of different benchmarks."""
    files = [Path(p) for p in paths]
    found = [p.is_file() and file_kind(p) == "benchmark.json" for p in files]
    if not any(found):
        return None
    if not all(found):
        other = files[found.index(False)]
        raise UserError(f"{other} is not an `eval --benchmark` JSON like the others; report the two kinds separately")
    results = []
    for file in files:
        where = f"benchmark JSON {file}"
        data = read_json(file, "benchmark JSON", FIX, expect=dict, fields=_BENCHMARK_FIELDS)
        for row in data["results"]:
            check_fields(row, _SOURCE_FIELDS, where + ": a source", FIX)
        results.append(data)
    if len({r["benchmark"] for r in results}) > 1:
        raise UserError("these results are of different benchmarks; compare results of one benchmark at a time")
    return results


def merge_runs(results: Sequence[dict]) -> list[dict]:
    """Benchmark results that read the same (:func:`~metahyper.train.benchmark.result_label`: model,
    method, algorithm, head) are runs (seeds) of one learner, as a table's cell holds every run of
    its row (:func:`~metahyper.report.tables.build_report`): one result each, in order of first
    appearance, whose sources are those every run scored, each with the mean of the runs' means
    and their ``sd`` (ddof=1), and whose ``fingerprint`` joins the runs' (equal between learners
    run on the same seeds). A label of one run keeps its result as it is."""
    from metahyper.train.benchmark import result_label

    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(result_label(r), []).append(r)
    merged = []
    for runs in groups.values():
        if len(runs) == 1:
            merged.append(runs[0])
            continue
        by_source = [{x["source"]: x for x in r["results"]} for r in runs]
        sources = [s for s in runs[0]["sources"] if all(s in b for b in by_source)]
        rows = []
        for source in sources:
            means = np.array([b[source]["mean"] for b in by_source], dtype=np.float64)
            prints = "+".join(b[source]["fingerprint"] for b in by_source)
            rows.append({"source": source, "mean": float(means.mean()), "sd": float(means.std(ddof=1)),
                         "fingerprint": prints})  # fmt: skip
        merged.append({**runs[0], "checkpoint": "", "runs": len(runs), "sources": sources, "results": rows,
                       "missing": sorted({m for r in runs for m in r["missing"]}),
                       "average": float(np.mean([x["mean"] for x in rows])) if rows else float("nan")})  # fmt: skip
    return merged


def benchmark_comparison(
    results: Sequence[dict],
    markdown: str | Path | None = None,
    csv: str | Path | None = None,
    json_path: str | Path | None = None,
) -> tuple[str, list[Path]]:
    """``(table text, paths written)`` of :func:`collect_benchmarks`' results side by side with
    their average rank, written as a report's Markdown (``markdown``); ``csv`` and ``json_path``
    are refused in one line (each result's own CSV and JSON hold the numbers)."""
    from metahyper.train.benchmark import benchmark_markdown

    if csv or json_path:
        raise UserError("--csv and --json are not written for `eval --benchmark` results; use --markdown")
    text = benchmark_markdown(merge_runs(results), "report.md")
    written = [write_text(path, text) for path, _ in check_report_outputs(markdown)]
    return text.split("\n", 1)[1], written  # the marker line is for files only
