"""Optional TensorBoard copy of a run's logged scalars (``--tensorboard``; extra ``[tensorboard]``).

:class:`ScalarLog` writes the numbers a training loop already logs to CSV / JSON as TensorBoard
scalars in ``<out>/tensorboard`` through :class:`torch.utils.tensorboard.SummaryWriter`. Disabled,
or on a process other than the main one, every call does nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from metahyper.errors import UserError

LOG_DIR = "tensorboard"


class ScalarLog:
    """Scalars of one run; ``enabled`` without the tensorboard package raises a one-line
    :class:`UserError` (so a run fails before it writes anything)."""

    def __init__(self, run_dir: str | Path, enabled: bool, is_main: bool = True) -> None:
        self.writer = None
        self.path = Path(run_dir) / LOG_DIR
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "--tensorboard needs the tensorboard package: pip install 'metahyper[tensorboard]'"
            ) from None
        self._writer_cls = SummaryWriter
        self.is_main = is_main

    def open(self) -> None:
        """Create the writer (call once the run directory exists)."""
        if getattr(self, "_writer_cls", None) is not None and self.is_main and self.writer is None:
            self.writer = self._writer_cls(str(self.path))

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """Add every finite number of ``values`` at ``step`` under ``prefix + name``."""
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(prefix + name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
