"""The cross-domain evaluation matrix: one checkpoint scored on several datasets (rows) at several
shot counts (columns), each cell exactly the single evaluation of that dataset and shot count
(:func:`~metahyper.train.evaluate.evaluate_one`, its own JSON), the table as JSON, CSV and Markdown.
The paper's cross-domain protocol (section 5.4, Tables 7 and 8: train on one dataset, test on
others) in one command: ``metahyper eval --dataset miniimagenet,fc100,birds --shots 1,5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metahyper.config import EvalConfig
from metahyper.io import write_csv, write_json, write_text
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.distributed import DistContext, resolve_device
from metahyper.train.evaluate import (
    EvalResult,
    check_episode_memory,
    default_output,
    evaluate_one,
    resolve_method,
    run_identity,
)
from metahyper.train.outputs import CSV_FIELDS, check_outputs, with_marker
from metahyper.train.run import config_dict


@dataclass
class EvalMatrix:
    """Cross-domain matrix: one checkpoint scored on each dataset (rows) at each shot count
    (columns); every cell is an :class:`EvalResult` equal to that single evaluation's."""

    datasets: list[str]
    shots: list[int]
    cells: dict[tuple[str, int], EvalResult]
    files: list[str]

    def rows(self) -> list[dict]:
        """One row per cell: dataset, shots, mean, ci95 and what identifies the cell."""
        return [
            {
                "dataset": d,
                "shots": k,
                "mean": c.mean,
                "ci95": c.ci95,
                "episodes": c.episodes,
                "fingerprint": c.fingerprint,
                "json": c.settings.get("output", ""),
            }
            for (d, k), c in self.cells.items()
        ]

    def _grid(self) -> list[list[str]]:
        head = ["dataset", *(f"{k}-shot" for k in self.shots)]
        body = [
            [d, *(f"{100 * self.cells[d, k].mean:.2f} +- {100 * self.cells[d, k].ci95:.2f}" for k in self.shots)]
            for d in self.datasets
        ]
        return [head, *body]

    def line(self) -> str:
        """The table as aligned text, under a line saying what was evaluated."""
        first = next(iter(self.cells.values()))
        grid = self._grid()
        widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
        text = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in grid
        ]
        return "\n".join(
            [
                f"{first.model} [{first.method}], {first.split} split, {first.ways}-way, {first.episodes} episodes, "
                "accuracy % (mean +- 95% CI):",
                *text,
            ]
        )

    def markdown(self) -> str:
        head, *body = self._grid()
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]
        return with_marker("eval-table.md", "\n".join(lines) + "\n")

    def to_dict(self) -> dict:
        first = next(iter(self.cells.values()))
        keep = ("model", "checkpoint", "method", "split", "ways", "queries", "episodes", "seed")
        return {
            **{k: getattr(first, k) for k in keep},
            "datasets": self.datasets,
            "shots": self.shots,
            "results": self.rows(),
        }


def evaluate_matrix(cfg: EvalConfig, ctx: DistContext | None = None, write: bool = True) -> EvalMatrix:
    """:func:`~metahyper.train.evaluate.evaluate_one` for every dataset of ``cfg.dataset`` and shot
    count of ``cfg.shots`` (each cell writes its own JSON beside the table, named as a single
    evaluation's). The table is written as ``.json`` (``"config"``: ``eval --config FILE`` repeats
    it), ``.csv`` (a row per cell) and ``.md`` at ``cfg.output`` (default
    :func:`~metahyper.train.evaluate.default_output`) on the main process. Every input (the
    checkpoint, each dataset's cache, the memory of the largest episodes and, ``--in-memory yes``,
    of each dataset loaded) and every output is checked before the first episode is scored or any
    file written (:func:`check_matrix`). One dataset is in memory at a time."""
    cfg.validate()
    table, outputs, splits, loaded = check_matrix(cfg, ctx, write)
    cells: dict[tuple[str, int], EvalResult] = {}
    for dataset in cfg.dataset:
        data = splits.pop(dataset)  # the previous dataset is freed
        if loaded[dataset]:
            data.load_into_memory()
        for shots in cfg.shots:
            cells[dataset, shots] = evaluate_one(cfg, dataset, shots, ctx, outputs[dataset, shots], write, data=data)
    matrix = EvalMatrix(list(cfg.dataset), list(cfg.shots), cells, [])
    if write and (ctx is None or ctx.is_main):
        files = [table.with_suffix(".json"), table.with_suffix(".csv"), table.with_suffix(".md")]
        write_json(files[0], {**matrix.to_dict(), "config": config_dict(cfg)})
        write_csv(files[1], matrix.rows(), CSV_FIELDS["eval-table.csv"])
        write_text(files[2], matrix.markdown())
        matrix.files = [str(f) for f in files]
    return matrix


def check_matrix(cfg: EvalConfig, ctx: DistContext | None, write: bool) -> tuple[Path, dict, dict, dict]:
    """``(table path, {(dataset, shots): cell JSON path}, {dataset: opened split, not yet in
    memory}, {dataset: whether to load it})`` of :func:`evaluate_matrix`, after checking the
    checkpoint (it loads), the memory of the largest episodes, every dataset's cache, whether each
    is to be loaded (:func:`~metahyper.data.cache.keep_in_memory`) and, when writing, every output
    file (:func:`~metahyper.train.outputs.check_outputs`)."""
    from metahyper.data.cache import keep_in_memory, open_split

    device = ctx.device if ctx is not None else resolve_device(cfg.device)
    ckpt = load_checkpoint(cfg.checkpoint)
    resolve_method(cfg, ckpt.extra)  # before any dataset is opened
    run_identity(ckpt.path)
    check_episode_memory(cfg, ckpt, cfg.ways * max(cfg.shots), cfg.ways * cfg.queries, device)
    table = Path(cfg.output) if cfg.output else default_output(ckpt.path, cfg, cfg.dataset, cfg.shots)
    outputs = {
        (d, k): table.with_name(default_output(ckpt.path, cfg, [d], [k]).name) for d in cfg.dataset for k in cfg.shots
    }
    splits = {d: open_split(d, cfg.split, root=cfg.data_root) for d in cfg.dataset}
    processes = ctx.world_size if ctx is not None else 1
    loaded = {d: keep_in_memory([split], cfg.in_memory, processes) for d, split in splits.items()}
    if write and (ctx is None or ctx.is_main):
        tables = [(table.with_suffix(ext), f"eval-table{ext}", "-o") for ext in (".json", ".csv", ".md")]
        check_outputs([*((out, "eval", "-o") for out in outputs.values()), *tables])
    return table, outputs, splits, loaded
