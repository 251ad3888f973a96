"""``metahyper report``: eval JSONs gathered into the paper's table layout.

Rows are models (the eval JSON's ``model`` label, with the input size when one model was scored
at several; ``, pretrain only (linear head)`` appended for ``--method linear`` results), columns
are ``dataset x ways x shots`` (and the split when it is not ``test``). A cell holds every eval
JSON of its row and column, one per training run:

* one run: its ``mean +- ci95`` exactly as the eval JSON holds them (the 95% CI over episodes);
* several runs (seeds): the mean of the runs' means, the standard deviation of the runs' means
  (``ddof=1``, the spread over seeds) and, over all their episodes pooled, ``mean +- 1.96 std /
  sqrt(n)``; the JSON and CSV also list every run's own mean and CI.

A column whose runs were scored on different episodes (fingerprints differ) is flagged. A model
scored from checkpoints kept by different rules (``best.pt`` of ``--select-on target`` and the
``last.pt`` of the same runs, Table 8) gets a row per rule (``, last iterate``, ``, selected on
<dataset> val``). Output: a printed table, markdown, CSV (one line per run and one per aggregate)
and JSON, each replacing only an earlier report output of its format (:func:`check_report_outputs`).

Results of ``eval --benchmark`` (:func:`collect_benchmarks`) are compared instead in Meta-Dataset's
layout: a row per source, a column per learner (its runs merged as above: mean +- sd over seeds,
:func:`merge_runs`), the average over sources and the average rank (:func:`benchmark_comparison`).

:func:`budget_to_match` is section 5.2's "with 70% training budget": for a pair of pretrain runs,
the first epoch at which the hyper run reaches the plain run's final validation accuracy, as a
fraction of the hyper run's epochs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metahyper.errors import UserError
from metahyper.io import check_fields, file_error, read_json, write_csv, write_json, write_text
from metahyper.models import ModelConfig
from metahyper.train.evaluate import mean_ci
from metahyper.train.outputs import CSV_FIELDS, check_outputs, file_kind, looks_like_eval, with_marker

_FIELDS = {
    "model": str,
    "method": str,
    "dataset": str,
    "split": str,
    "ways": int,
    "shots": int,
    "episodes": int,
    "mean": (int, float),
    "ci95": (int, float),
    "accuracies": list,
    "fingerprint": str,
}
_FIX = "repair or delete it, or re-run `metahyper eval` to rewrite it"


def _check_eval(data: dict, where: str, fix: str) -> None:
    """The types of the fields the report uses (one-line :class:`UserError` otherwise)."""
    check_fields(data, _FIELDS, where, fix)
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in data["accuracies"]):
        raise file_error(where + ":", "'accuracies' must be a list of numbers", fix)
    if not isinstance(data.get("settings", {}), dict):
        raise file_error(where + ":", "'settings' must be an object", fix)


def _read_found(file: Path) -> dict | None:
    """A JSON file found in a searched directory: its eval result, None when it is another JSON
    (a run's config, logs); a :class:`UserError` without a fix when it is damaged."""
    data = read_json(file, "", "")
    if not looks_like_eval(data):
        return None
    _check_eval(data, str(file), "")
    return data


def collect(paths: Iterable[str | Path]) -> list[dict]:
    """The eval results in ``paths``: eval JSON files, or directories searched recursively for
    them (JSON files that are not eval results are skipped). Each result gains ``path``. A
    :class:`UserError` when a given file is not an eval JSON, when any JSON file found is damaged
    (every one named: it may have been a result), or when nothing is found."""
    results: list[dict] = []
    damaged: list[str] = []
    for given in map(Path, paths):
        if given.is_file():
            data = read_json(given, "eval JSON", _FIX)
            if not looks_like_eval(data):
                raise UserError(f"{given} is not an eval JSON (written by `metahyper eval`)")
            _check_eval(data, f"eval JSON {given}", _FIX)
            results.append({**data, "path": str(given)})
            continue
        if not given.is_dir():
            raise UserError(f"{given}: no such file or directory; pass eval JSONs or run directories")
        for file in sorted(given.rglob("*.json")):
            try:
                data = _read_found(file)
            except UserError as err:
                damaged.append(str(err).strip())
                continue
            if data is not None:
                results.append({**data, "path": str(file)})
    if damaged:
        raise UserError(
            f"{len(damaged)} damaged JSON file{'s' * (len(damaged) > 1)} among the results: {'; '.join(damaged)}; "
            "repair or delete them, or pass the intact eval JSONs one by one"
        )
    if not results:
        raise UserError(f"no eval JSONs in {', '.join(map(str, paths))}; run `metahyper eval` first")
    return results


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
        data = read_json(file, "benchmark JSON", _FIX, expect=dict, fields=_BENCHMARK_FIELDS)
        for row in data["results"]:
            check_fields(row, _SOURCE_FIELDS, where + ": a source", _FIX)
        results.append(data)
    if len({r["benchmark"] for r in results}) > 1:
        raise UserError("these results are of different benchmarks; compare results of one benchmark at a time")
    return results


def merge_runs(results: Sequence[dict]) -> list[dict]:
    """Benchmark results that read the same (:func:`~metahyper.train.benchmark.result_label`: model,
    method, algorithm, head) are runs (seeds) of one learner, as a cell of :func:`build_report`
    holds every run of its row: one result each, in order of first appearance, whose sources are
    those every run scored, each with the mean of the runs' means and their ``sd`` (ddof=1), and
    whose ``fingerprint`` joins the runs' (equal between learners run on the same seeds). A label
    of one run keeps its result as it is."""
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


def selection_label(result: dict) -> str:
    """How the scored checkpoint was kept, for a row label: ``last iterate`` (``last.pt`` or
    ``--select-on last``), ``selected on <dataset> val`` (source / target), else the recorded rule."""
    selection = result.get("selection") or {}
    rule = selection.get("rule")
    if rule in ("last", "final"):
        return "last iterate"
    if rule in ("source", "target"):
        return f"selected on {selection.get('dataset')} val"
    return str(rule)


def row_label(result: dict, with_size: bool = False, with_selection: bool = False) -> str:
    """The model label; ``with_size``: and its input size (``32 px``); ``with_selection``: and how
    its checkpoint was kept (:func:`selection_label`); meta-learners other than plain MAML with the
    learned head: and their ``--algorithm`` / ``--head``."""
    settings = result.get("settings", {})
    label = result["model"]
    if with_size:
        label += f" ({settings.get('image_size')} px)"
    if with_selection:
        label += f", {selection_label(result)}"
    if result["method"] == "linear":
        return f"{label}, pretrain only (linear head)"
    if settings.get("algorithm", "maml") != "maml":
        label += f", {settings['algorithm']}"
    return label + (", zero head" if settings.get("head") == "zero" else "")


def column_key(result: dict) -> tuple:
    return result["dataset"], result["split"], int(result["ways"]), int(result["shots"])


def column_label(key: tuple) -> str:
    dataset, split, ways, shots = key
    return f"{dataset}{'' if split == 'test' else ' ' + split} {ways}-way {shots}-shot"


@dataclass
class Cell:
    """The runs of one model on one column, and their aggregate."""

    runs: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.runs)

    def summary(self) -> dict:
        """``mean`` / ``ci95`` (one run: its own numbers), and for several runs ``sd`` (over the
        runs' means, ddof=1) and ``pooled_ci95`` (over all episodes)."""
        if self.n == 1:
            r = self.runs[0]
            return {"runs": 1, "mean": r["mean"], "ci95": r["ci95"]}
        means = np.array([r["mean"] for r in self.runs], dtype=np.float64)
        pooled_mean, pooled_ci = mean_ci([a for r in self.runs for a in r["accuracies"]])
        return {
            "runs": self.n,
            "mean": float(means.mean()),
            "sd": float(means.std(ddof=1)),
            "pooled_mean": pooled_mean,
            "pooled_ci95": pooled_ci,
        }

    def text(self, pm: str = "+-") -> str:
        s = self.summary()
        if self.n == 1:
            return f"{100 * s['mean']:.2f} {pm} {100 * s['ci95']:.2f}"
        return f"{100 * s['mean']:.2f} {pm} {100 * s['sd']:.2f} sd ({self.n} runs)"


@dataclass
class Report:
    """Rows x columns of :class:`Cell`, in order of first appearance."""

    rows: list[str]
    columns: list[tuple]
    cells: dict[tuple[str, tuple], Cell]
    title: str = ""

    def cell(self, row: str, column: tuple) -> Cell | None:
        return self.cells.get((row, column))

    def mixed_episodes(self, column: tuple) -> bool:
        """Whether the column's runs were scored on different episodes."""
        prints = {r["fingerprint"] for row in self.rows if (c := self.cell(row, column)) for r in c.runs}
        return len(prints) > 1

    def _grid(self, pm: str) -> list[list[str]]:
        head = ["model", *[column_label(c) + (" *" if self.mixed_episodes(c) else "") for c in self.columns]]
        body = [
            [row, *[(c.text(pm) if (c := self.cell(row, col)) else "-") for col in self.columns]] for row in self.rows
        ]
        return [head, *body]

    def _notes(self) -> list[str]:
        notes = [
            "accuracy (%): one run: mean +- 95% CI over episodes; "
            "several runs: mean over runs +- their standard deviation"
        ]
        if any(self.mixed_episodes(c) for c in self.columns):
            notes.append(
                "* the runs of this column were scored on different episodes (eval seed, queries or data differ)"
            )
        return notes

    def text(self) -> str:
        grid = self._grid("+-")
        widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
        lines = [
            "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in grid
        ]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(([self.title] if self.title else []) + lines + self._notes())

    def markdown(self) -> str:
        grid = self._grid("±")
        out = [f"**{self.title}**", ""] if self.title else []
        out += ["| " + " | ".join(grid[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(grid[0]) - 1)) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in grid[1:]]
        return with_marker("report.md", "\n".join(out + [""] + self._notes()) + "\n")

    def csv_rows(self) -> list[dict]:
        """One line per run (``kind`` run) and, for cells with several runs, one aggregate line."""
        out = []
        for row in self.rows:
            for col in self.columns:
                cell = self.cell(row, col)
                if cell is None:
                    continue
                dataset, split, ways, shots = col
                base = {"model": row, "dataset": dataset, "split": split, "ways": ways, "shots": shots}
                for r in cell.runs:
                    out.append(
                        {
                            **base,
                            "kind": "run",
                            "train_seed": r.get("settings", {}).get("train_seed"),
                            "mean": r["mean"],
                            "ci95": r["ci95"],
                            "episodes": r["episodes"],
                            "source": r["path"],
                        }
                    )
                if cell.n > 1:
                    s = cell.summary()
                    out.append(
                        {
                            **base,
                            "kind": "aggregate",
                            "runs": cell.n,
                            "mean": s["mean"],
                            "sd": s["sd"],
                            "pooled_mean": s["pooled_mean"],
                            "pooled_ci95": s["pooled_ci95"],
                        }
                    )
        return out

    def to_dict(self) -> dict:
        cells = []
        for (row, col), cell in self.cells.items():
            dataset, split, ways, shots = col
            cells.append(
                {
                    "model": row,
                    "dataset": dataset,
                    "split": split,
                    "ways": ways,
                    "shots": shots,
                    "text": cell.text(),
                    **cell.summary(),
                    "mixed_episodes": self.mixed_episodes(col),
                    "runs_detail": [
                        {
                            "train_seed": r.get("settings", {}).get("train_seed"),
                            "mean": r["mean"],
                            "ci95": r["ci95"],
                            "episodes": r["episodes"],
                            "checkpoint": r.get("checkpoint"),
                            "selection": r.get("selection"),
                            "source": r["path"],
                        }
                        for r in cell.runs
                    ],
                }
            )
        return {
            "title": self.title,
            "rows": self.rows,
            "columns": [column_label(c) for c in self.columns],
            "cells": cells,
        }


def build_report(results: Sequence[dict], title: str = "") -> Report:
    """Group eval results (:func:`collect`) into a :class:`Report`. The same file given twice counts once."""
    rows: list[str] = []
    columns: list[tuple] = []
    cells: dict[tuple[str, tuple], Cell] = {}
    seen: set[str] = set()
    sizes: dict[str, set] = {}
    rules: dict[tuple[str, str], set] = {}
    for r in results:
        sizes.setdefault(r["model"], set()).add(r.get("settings", {}).get("image_size"))
        rules.setdefault((r["model"], r["method"]), set()).add(selection_label(r))
    for r in results:
        key = str(Path(r["path"]).resolve())
        if key in seen:
            continue
        seen.add(key)
        row, col = row_label(r, len(sizes[r["model"]]) > 1, len(rules[r["model"], r["method"]]) > 1), column_key(r)
        if row not in rows:
            rows.append(row)
        if col not in columns:
            columns.append(col)
        cells.setdefault((row, col), Cell()).runs.append(r)
    columns.sort(key=lambda c: (c[0], c[1], c[2], c[3]))
    return Report(rows, columns, cells, title)


def check_report_outputs(
    markdown: str | Path | None = None, csv: str | Path | None = None, json_path: str | Path | None = None
) -> list[tuple[Path, str]]:
    """The requested ``(path, kind)`` outputs, each checked (:func:`~metahyper.train.outputs.check_outputs`:
    an existing file is replaced only by the same format of report, no two options name one file);
    call it before collecting the inputs."""
    given = [(markdown, "report.md", "--markdown"), (csv, "report.csv", "--csv"), (json_path, "report.json", "--json")]
    given = [(path, kind, option) for path, kind, option in given if path]
    return list(zip(check_outputs(given), [kind for _, kind, _ in given]))


def write_report(
    report: Report,
    markdown: str | Path | None = None,
    csv: str | Path | None = None,
    json_path: str | Path | None = None,
) -> list[Path]:
    """Write the requested formats, all checked first (:func:`check_report_outputs`); returns the
    paths written."""
    written = []
    for path, kind in check_report_outputs(markdown, csv, json_path):
        if kind == "report.md":
            written.append(write_text(path, report.markdown()))
        elif kind == "report.csv":
            written.append(write_csv(path, report.csv_rows(), CSV_FIELDS[kind]))
        else:
            written.append(write_json(path, report.to_dict()))
    return written


def _history(run: Path) -> tuple[str, list[float], int]:
    """``(model label, validation accuracy per epoch, planned epochs)`` of a pretrain run directory."""
    fix = "pass pretrain run directories trained with a validation split"
    if not ((run / "config.json").is_file() and (run / "history.json").is_file()):
        raise UserError(f"{run} is not a pretrain run with a validation accuracy per epoch (no config.json and "
                        f"history.json); {fix}")  # fmt: skip
    config = read_json(run / "config.json", "run config", fix, expect=dict)
    history = read_json(run / "history.json", "history", fix, expect=list)
    try:
        accs = [float(h["val_acc"]) for h in history]
        label = ModelConfig(config["model"], config.get("variant", 1)).label()
        epochs = int(config.get("epochs", len(accs)))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{run} is not a pretrain run with a validation accuracy per epoch ({type(err).__name__}: {err}); "
            "pass pretrain run directories trained with a validation split"
        ) from None
    if not accs:
        raise UserError(f"{run} has no finished epoch; train it first")
    return label, accs, epochs


def budget_to_match(plain_run: str | Path, hyper_run: str | Path) -> dict:
    """The first epoch at which ``hyper_run`` reaches ``plain_run``'s final validation accuracy,
    and that epoch as a fraction of the hyper run's planned epochs (section 5.2: "with 70 %
    training budget hyperresnet-34 achieves the similar performance to resnet-34"). ``epoch`` and
    ``fraction`` are None when it never does; ``finished`` says whether both runs ran every epoch."""
    plain_label, plain, plain_epochs = _history(Path(plain_run))
    hyper_label, hyper, hyper_epochs = _history(Path(hyper_run))
    target = plain[-1]
    epoch = next((i + 1 for i, acc in enumerate(hyper) if acc >= target), None)
    return {
        "plain": plain_label,
        "hyper": hyper_label,
        "plain_final_acc": target,
        "epoch": epoch,
        "epochs": hyper_epochs,
        "fraction": epoch / hyper_epochs if epoch is not None else None,
        "finished": len(plain) >= plain_epochs and len(hyper) >= hyper_epochs,
    }


def budget_text(match: dict) -> str:
    """:func:`budget_to_match` in one line."""
    head = f"{match['hyper']} vs {match['plain']} (final {100 * match['plain_final_acc']:.2f} %): "
    tail = "" if match["finished"] else " (a run is unfinished)"
    if match["epoch"] is None:
        return head + f"not reached in {match['epochs']} epochs" + tail
    return (
        head
        + f"reached at epoch {match['epoch']} of {match['epochs']} ({100 * match['fraction']:.0f} % of the budget)"
        + tail
    )
