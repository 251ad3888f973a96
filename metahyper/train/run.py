"""A run directory and its one owner, :class:`Run`: checked before start, config, checkpoints, logs.

Layout written by a training run (main process only)::

    <out>/config.json     the full options (``stage`` + every field of the config dataclass)
    <out>/last.pt         resumable checkpoint: model, training ``state`` (optimiser, schedules, RNG)
    <out>/best.pt         the selected model
    <out>/*.json, *.csv   logs and summaries

Every file goes through :mod:`metahyper.io` (temp file, fsync, rename), so a killed run never
leaves a half-written file. ``--resume`` continues from ``last.pt`` with the RNG states it holds
(:func:`rng_state`), and must repeat the original options except those in :data:`RESUME_FREE`.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from metahyper.errors import UserError
from metahyper.io import write_csv, write_json, write_text
from metahyper.train.checkpoint import CHECKPOINT_NAMES, Checkpoint, load_checkpoint, save_checkpoint

CONFIG_FILE = "config.json"
LAST = "last.pt"
BEST = "best.pt"
# Options that may differ between a run and its --resume without changing the results.
RESUME_FREE = frozenset({"resume", "device", "num_workers", "progress", "data_root"})


def config_dict(cfg: Any) -> dict:
    """A config dataclass as a JSON-ready dict, with its ``stage`` name."""
    return {"stage": type(cfg).stage, **asdict(cfg)}


def save_config(run_dir: str | Path, cfg: Any) -> Path:
    """Write ``run_dir/config.json`` atomically."""
    return write_json(Path(run_dir) / CONFIG_FILE, config_dict(cfg))


def read_config(run_dir: str | Path) -> dict:
    """The raw ``config.json`` of a run directory (with its ``stage``), or a :class:`UserError`."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} has no {CONFIG_FILE}; pass a run directory written by metahyper")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg}); the run directory is damaged") from None


def check_resume_compatible(run_dir: str | Path, cfg: Any) -> None:
    """--resume must repeat the original options (except those in :data:`RESUME_FREE`)."""
    saved = read_config(run_dir)
    now = config_dict(cfg)
    diff = [k for k in now if k not in RESUME_FREE and saved.get(k) != now[k]]
    if diff:
        shown = ", ".join(f"{k}={saved.get(k)!r} (now {now[k]!r})" for k in diff[:3])
        raise UserError(f"--resume of {run_dir} with different options: {shown}; repeat the original options or use a new --out")


def rng_state() -> dict:
    """Every RNG a run may draw from, in a ``torch.load(weights_only=True)``-safe form."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class Run:
    """The run directory ``out`` of the run configured by ``cfg`` (a config dataclass with a
    ``stage``; ``cfg.resume``, when it has one, continues the run there).

    Constructing it checks the directory and writes nothing: a fresh run refuses a directory that
    already holds a run, ``--resume`` needs its ``last.pt`` and the same options. :meth:`start`
    creates it and writes ``config.json``. Every write is done by the main process only
    (``is_main``; the other ranks of a distributed run skip it); reads are done by every process.
    """

    def __init__(self, out: str | Path, cfg: Any, is_main: bool = True) -> None:
        self.path = Path(out)
        self.cfg = cfg
        self.is_main = is_main
        self.resume = bool(getattr(cfg, "resume", False))
        if self.resume:
            if not (self.path / LAST).is_file():
                raise UserError(f"--resume: {self.path} holds no {LAST} to resume from; drop --resume to start a new run")
            check_resume_compatible(self.path, cfg)
        elif any((self.path / n).exists() for n in CHECKPOINT_NAMES):
            raise UserError(f"{self.path} already holds a run; pass --resume to continue it or choose another --out")

    def start(self) -> None:
        """Create the directory and write ``config.json``; call it once the run's inputs (data,
        checkpoints, options) have been checked, so a run that fails to start writes nothing."""
        if self.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            save_config(self.path, self.cfg)

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, name: str, model: nn.Module, **extra: Any) -> None:
        """Write checkpoint ``name`` (e.g. ``best.pt``) of ``model`` with ``extra``."""
        if self.is_main:
            save_checkpoint(self.path / name, model, **extra)

    def save_last(self, model: nn.Module, state: Mapping[str, Any], **extra: Any) -> None:
        """Write the resumable ``last.pt``: ``model``, ``extra`` and ``state`` (optimiser,
        schedules, ...) to which the current RNG states are added."""
        if self.is_main:
            save_checkpoint(self.path / LAST, model, **extra, state={**state, "rng": rng_state()})

    def restore(self, model: nn.Module) -> dict:
        """Resume: load ``last.pt`` into ``model`` (same architecture) and the RNGs; returns the
        checkpoint's ``extra`` (its ``state`` holds what :meth:`save_last` was given)."""
        last: Checkpoint = load_checkpoint(self.path / LAST, expect_name=model.config.name)  # CPU: RNG states stay CPU tensors
        model.load_state_dict(last.state_dict)
        set_rng_state(last.extra["state"]["rng"])
        return last.extra

    # -- logs -----------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        if self.is_main:
            write_json(self.path / name, obj)

    def write_csv(self, name: str, rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None) -> None:
        if self.is_main:
            write_csv(self.path / name, rows, fields)

    def write_text(self, name: str, text: str) -> None:
        if self.is_main:
            write_text(self.path / name, text)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, stage={type(self.cfg).stage!r}, resume={self.resume})"
