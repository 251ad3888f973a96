"""The training loop both stages share: :class:`Trainer` and its typed, resumable :class:`TrainState`.

A stage (:class:`~metahyper.train.pretrain.Pretrainer`, :class:`~metahyper.train.meta_train.MetaTrainer`)
fills in what differs: :meth:`Trainer.setup` (data, model, optimiser; nothing written yet),
:meth:`Trainer.step` (one epoch or iteration: compute, check, log, validate) and
:meth:`Trainer.finish` (the summary). :meth:`Trainer.fit` owns the order of everything else::

    Trainer(cfg)   check options, the run directory (nothing written), seed every RNG
    setup()        inputs checked and loaded, model and optimiser built
    start()        run directory locked, config.json written, log opened;
                   --resume: model, TrainState and RNG states from last.pt
    for each unit from state.done to total:
        on_step(unit); step(unit); state.done += 1
        save()     last.pt every --save-every units and at the end (TrainState + RNG)
    finish()       summary.json; the lock is released

Resuming restores exactly what an uninterrupted run holds at that point (model, optimiser,
schedules, logs, RNG states), so it ends with the same numbers (on CPU).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from metahyper.config import RunOptions
from metahyper.errors import UserError
from metahyper.train.distributed import DistContext, resolve_device
from metahyper.train.logger import RunLogger
from metahyper.train.run import Run, seed_everything


def _head(obj: Any, n: int) -> Any:
    """``obj`` with every tensor cut to its first ``n`` rows (one row per unit done), copied."""
    if isinstance(obj, torch.Tensor):
        return obj[:n].clone()
    if isinstance(obj, dict):
        return {k: _head(v, n) for k, v in obj.items()}
    if isinstance(obj, list):
        return list(obj)
    return obj


def _fill(into: Any, saved: Any) -> Any:
    """``into`` with the saved rows of :func:`_head` written back (tensors in place)."""
    if isinstance(into, torch.Tensor):
        into[: len(saved)] = saved
        return into
    if isinstance(into, dict):
        return {k: _fill(v, saved[k]) if k in saved else v for k, v in into.items()}
    return list(saved) if isinstance(into, list) else saved


@dataclass
class TrainState:
    """Everything of a run besides the model that ``--resume`` must restore.

    ``unit``: what a step is (``"epoch"`` or ``"iteration"``; ``last.pt`` stores ``done`` under
    that key); ``done``: units completed; ``best``: best validation score so far (-1: none);
    ``objects``: stateful training objects (optimiser, schedulers, SWA model: anything with
    ``state_dict`` / ``load_state_dict``); ``logs``: the run's curves (lists of rows, or tensors
    with one row per unit, possibly inside one level of dicts).
    """

    unit: str
    objects: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, Any] = field(default_factory=dict)
    done: int = 0
    best: float = -1.0

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint form: ``{unit: done, "best_val": best, **logs (rows done so far),
        "state": {name: object state}}``."""
        return {
            self.unit: self.done,
            "best_val": self.best,
            **_head(self.logs, self.done),
            "state": {k: o.state_dict() for k, o in self.objects.items()},
        }

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (objects, logs, counters)."""
        try:
            for k, obj in self.objects.items():
                obj.load_state_dict(saved["state"][k])
            self.logs = {k: _fill(v, saved[k]) for k, v in self.logs.items()}
            self.done, self.best = int(saved[self.unit]), float(saved["best_val"])
        except KeyError as err:
            raise UserError(f"last.pt lacks the training state {err} to resume from; choose another --out") from None


class Trainer(ABC):
    """One training run of ``cfg`` (a :class:`~metahyper.config.RunOptions` config): a stage
    subclasses it (module docstring). ``on_step(unit)`` is called before each unit (0-based; after
    everything up to it has been written)."""

    stage: str = "base"

    def __init__(
        self, cfg: RunOptions, ctx: DistContext | None = None, on_step: Callable[[int], None] | None = None
    ) -> None:
        cfg.validate()
        self.cfg, self.on_step = cfg, on_step
        self.ctx = ctx or DistContext(device=resolve_device(cfg.device))
        self.device, self.is_main = self.ctx.device, self.ctx.is_main
        self.check()
        self.run = Run(cfg.out, cfg, self.is_main)
        self.log = RunLogger(cfg.out, cfg.tensorboard, cfg.progress, self.is_main)
        seed_everything(cfg.seed)
        self.model: nn.Module
        self.state: TrainState
        self.info: dict[str, Any] = {}  # stored in every checkpoint
        self.total = 0  # units of the run

    # -- what a stage fills in ---------------------------------------------------------------------

    def check(self) -> None:
        """Checks across options and the process group, before the run directory is looked at
        (default: none)."""
        return None

    @abstractmethod
    def setup(self) -> None:
        """Load and check the inputs, build the model, ``state`` and ``total``; write nothing."""

    @abstractmethod
    def step(self, unit: int) -> None:
        """One epoch or iteration, with its checks, logs and validation."""

    @abstractmethod
    def finish(self) -> dict[str, Any]:
        """What is left after the last unit; returns the summary."""

    def save_logs(self) -> None:
        """Rewrite the human-readable logs (CSV, JSON) from ``state``; called with every ``last.pt``
        (default: none)."""
        return None

    # -- the loop ----------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Run (or resume) to the end; returns the summary, also written as ``summary.json``."""
        try:
            self.setup()
            self.start()
            for unit in range(self.state.done, self.total):
                if self.on_step is not None:
                    self.on_step(unit)
                self.step(unit)
                self.state.done = unit + 1
                if self.state.done % self.cfg.save_every == 0 or self.state.done == self.total:
                    self.save()
            self.log.close()
            summary = {**self.finish(), "restarted": self.run.restarted}
            self.run.write_json("summary.json", summary)
            return summary
        finally:
            self.run.close()

    def start(self) -> None:
        """Take the run directory; with ``--resume``, restore ``last.pt``."""
        self.run.start()
        if self.run.resume:
            self.restore(self.run.restore(self.model, self.check_resume))
        self.log.open(self.state.done if self.run.resume else None)

    def check_resume(self, extra: dict[str, Any]) -> None:
        """Refuse to resume from a ``last.pt`` with this ``extra`` when the run's inputs changed
        since it was written (one-line :class:`UserError`; default: no check)."""
        return None

    def restore(self, extra: dict[str, Any]) -> None:
        """Resume from the ``extra`` of ``last.pt`` (the model is loaded already)."""
        self.state.load_state_dict(extra)

    def save(self) -> None:
        """``last.pt`` (model, ``info``, ``state`` and the RNG states) and the logs."""
        if self.is_main:
            saved = self.state.state_dict()
            self.run.save_last(self.model, saved.pop("state"), **self.info, **saved)
            self.save_logs()
