"""One log for a training run, whatever its stage: :class:`RunLogger`.

* ``<out>/log.jsonl``: one JSON object per logged row (``{"step": n, "tag/name": value, ...}``),
  appended as the run goes; on ``--resume`` the rows after the resumed step are dropped first, so
  a resumed run's log equals an uninterrupted run's.
* ``<out>/tensorboard/``: the same scalars as TensorBoard events with ``--tensorboard``
  (:class:`~metahyper.train.tensorboard.ScalarLog`).
* Messages: one line per epoch or validation through ``tqdm.write`` (they do not break a progress
  bar), on the main process and only with progress on.

Only the main process writes; on the others every call does nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from metahyper.errors import UserError
from metahyper.io import parse_json, write_text
from metahyper.train.tensorboard import ScalarLog

LOG_FILE = "log.jsonl"


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class RunLogger:
    """The log of the run in ``run_dir``; ``tensorboard`` without the package is a one-line
    :class:`~metahyper.errors.UserError` at construction (before anything is written)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool, progress: bool, is_main: bool = True) -> None:
        self.path = Path(run_dir) / LOG_FILE
        self.board = ScalarLog(run_dir, tensorboard, is_main)
        self.progress, self.is_main = progress, is_main

    def open(self, resumed_at: int | None = None) -> None:
        """Start logging (the run directory exists): a fresh log, or with ``resumed_at`` the rows
        up to that step of the existing one."""
        if not self.is_main:
            return
        kept = []
        if resumed_at is not None and self.path.is_file():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    row = parse_json(line, "log line", "")
                except UserError:  # a line cut by a kill
                    continue
                if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= resumed_at:
                    kept.append(line + "\n")
        write_text(self.path, "".join(kept))
        self.board.open()

    def scalars(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """Log the finite numbers of ``values`` at ``step`` under ``prefix + name``."""
        if not self.is_main:
            return
        row = {prefix + k: v for k, v in _finite(values).items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **row}) + "\n")
        self.board.scalars(step, values, prefix)

    def message(self, text: str) -> None:
        """A line for the person watching (main process, progress on)."""
        if self.is_main and self.progress:
            tqdm.write(text)

    def close(self) -> None:
        self.board.close()
