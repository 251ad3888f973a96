"""``metahyper report`` on eval JSONs: the paper's table layout.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metahyper.errors import UserError
from metahyper.io import check_fields, file_error, read_json, write_csv, write_json, write_text
from metahyper.train.evaluate import mean_ci
from metahyper.train.outputs import CSV_FIELDS, check_outputs, looks_like_eval, with_marker

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
FIX = "repair or delete it, or re-run `metahyper eval` to rewrite it"


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
            data = read_json(given, "eval JSON", FIX)
            if not looks_like_eval(data):
                raise UserError(f"{given} is not an eval JSON (written by `metahyper eval`)")
            _check_eval(data, f"eval JSON {given}", FIX)
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
