"""A run directory and its one owner, :class:`Run`: checked before start, config, checkpoints, logs.

Layout written by a training run (main process only)::

    <out>/config.json     the full options (``stage`` + every field of the config dataclass)
    <out>/last.pt         resumable checkpoint: model, training ``state`` (optimiser, schedules, RNG)
    <out>/best.pt         the selected model
    <out>/*.json, *.csv   logs and summaries
    <out>/run.lock        held (``fcntl.flock``) by the process writing the run; holds its PID

Every file goes through :mod:`metahyper.io` (temp file, fsync, rename), so a killed run never
leaves a half-written file. The states of a directory and what each command does there:

=================================== ========================= ======================================
``out`` holds                       a fresh run               ``--resume``
=================================== ========================= ======================================
nothing (or no directory)           starts                    refused: nothing to resume
``config.json``, no ``last.pt``     refused: pass --resume    starts again from scratch (says so)
``last.pt``                         refused: pass --resume    continues from ``last.pt``
=================================== ========================= ======================================

``--resume`` continues with the RNG states ``last.pt`` holds (:func:`rng_state`) and must repeat
the original options except those in :data:`RESUME_FREE`; paths are compared resolved, and the
run's own ``--out`` not at all (a moved or copied run directory resumes). While a run writes,
its directory is locked: a second run there fails at once, naming the holder's PID.
"""

from __future__ import annotations

import fcntl
import functools
import math
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from metahyper.errors import UserError
from metahyper.io import read_json, write_csv, write_json, write_text
from metahyper.train.checkpoint import CHECKPOINT_NAMES, Checkpoint, load_checkpoint, nonfinite_tensors, save_checkpoint

CONFIG_FILE = "config.json"
LAST = "last.pt"
BEST = "best.pt"
T = TypeVar("T")
LOCK_FILE = "run.lock"
# Options that may differ between a run and its --resume without changing the results.
RESUME_FREE = frozenset({"resume", "out", "device", "num_workers", "in_memory", "progress", "data_root", "tensorboard"})
_HELD: dict[tuple[int, int], int] = {}  # run directory (device, inode) -> descriptor of the lock this process holds


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
    data = read_json(path, "run config", "the run directory is damaged")
    if not isinstance(data, dict) or not isinstance(data.get("stage"), str):
        raise UserError(f'{path} is not a run config (no "stage"); the run directory is damaged')
    return data


def _same(spec_path: bool, saved: Any, now: Any) -> bool:
    if spec_path and isinstance(saved, str) and isinstance(now, str):
        return Path(saved).resolve() == Path(now).resolve()
    return saved == now


def check_resume_compatible(run_dir: str | Path, cfg: Any) -> None:
    """--resume must repeat the original options (except those in :data:`RESUME_FREE`; path
    options compare as resolved paths; an option the stored config lacks, added since, compares
    as its default; renamed options compare under their current names)."""
    from metahyper.options import specs

    saved = type(cfg).upgrade(read_config(run_dir))
    now = config_dict(cfg)
    paths = {s.name for s in specs(type(cfg)) if s.opt.path}
    # an option added since the run was written ran with its default
    defaults = {s.name: s.default for s in specs(type(cfg))}
    diff = [k for k in now if k not in RESUME_FREE and not _same(k in paths, saved.get(k, defaults.get(k)), now[k])]
    if diff:
        shown = ", ".join(f"{k}={saved.get(k)!r} (now {now[k]!r})" for k in diff[:3])
        raise UserError(
            f"--resume of {run_dir} with different options: {shown}; repeat the original options or use a new --out"
        )


def rng_state() -> dict:
    """Every RNG a run may draw from, in a ``torch.load(weights_only=True)``-safe form."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
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


EXPLODED = 100.0  # a loss this many times chance level's cross-entropy, ln(classes), is divergence


def loss_bound(classes: int) -> float:
    """The largest loss a healthy run of a ``classes``-way classifier reaches, with a wide margin:
    :data:`EXPLODED` x ln(classes), 100 times the cross-entropy of guessing (69 for 2 classes,
    161 for 5, 416 for 64). Above it the logits are wrong by margins of hundreds: the run diverged."""
    return EXPLODED * math.log(max(classes, 2))


def check_finite(
    where: str,
    fix: str,
    loss: float | None = None,
    model: nn.Module | None = None,
    bound: float | None = None,
) -> None:
    """Stop a diverged run: a one-line :class:`UserError` naming ``where`` and ``fix`` when ``loss``
    is NaN, infinite or above ``bound`` (:func:`loss_bound`), or any floating tensor of ``model``
    is NaN or infinite. Call it before anything is saved, so the run's checkpoints keep the last
    good state."""
    what = None
    if loss is not None and not math.isfinite(loss):
        what = f"the loss became {loss}"
    elif loss is not None and bound is not None and loss > bound:
        what = f"the loss became {loss:.4g}, above {bound:.4g} ({EXPLODED:g} x ln(classes), chance level's loss)"
    elif model is not None and (bad := nonfinite_tensors(model.state_dict())):
        what = f"{len(bad)} weight tensors became non-finite (e.g. {bad[0]})"
    if what:
        raise UserError(
            f"training diverged at {where}: {what}; nothing of it was saved ({LAST} keeps the last good state); {fix}"
        )


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def check_writable_dir(path: Path, what: str) -> None:
    """Raise a one-line :class:`UserError` unless directory ``path`` exists and is writable, or
    can be created (its nearest existing ancestor is a writable directory)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory; choose another path")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {path} cannot be created: {probe} is a file; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable ({probe} denies it); choose another path")


def _dir_key(path: Path) -> tuple[int, int]:
    st = path.stat()  # a moved directory keeps its identity
    return st.st_dev, st.st_ino


def releases_run_locks(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator of the training functions: every run lock taken during the call is released
    when it returns or raises (a failed run in a long-lived process does not keep its directory)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        before = set(_HELD)
        try:
            return fn(*args, **kwargs)
        finally:
            for key in set(_HELD) - before:
                os.close(_HELD.pop(key))

    return wrapper


def lock_run_dir(path: Path) -> int:
    """Take the lock of run directory ``path`` (which exists) for this process; a one-line
    :class:`UserError` naming the holder's PID when another process holds it. A lock this process
    still holds there (an earlier run that ended without :meth:`Run.close`) is taken over."""
    key = _dir_key(path)
    if key in _HELD:
        os.close(_HELD.pop(key))
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UserError(
            f"{path} is in use by another run (PID {holder}); wait for it to finish or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd
    return fd


class Run:
    """The run directory ``out`` of the run configured by ``cfg`` (a config dataclass with a
    ``stage``; ``cfg.resume``, when it has one, continues the run there).

    Constructing it checks the directory (the table in this module's docstring) and writes
    nothing. :meth:`start` locks it, checks again under the lock, and writes ``config.json``;
    :meth:`close` releases the lock (so does the end of the process, however it ends). Every
    write is done by the main process only (``is_main``; the other ranks of a distributed run
    skip it); reads are done by every process. ``restarted`` is True when ``--resume`` found no
    ``last.pt`` and the run starts again from scratch.
    """

    def __init__(self, out: str | Path, cfg: Any, is_main: bool = True) -> None:
        self.path = Path(out)
        self.cfg = cfg
        self.is_main = is_main
        self.resume = bool(getattr(cfg, "resume", False))
        self.restarted = False
        self._lock: int | None = None
        if is_main:
            check_writable_dir(self.path, "--out")
        self._check()

    def _check(self) -> None:
        has_last, has_config = (self.path / LAST).is_file(), (self.path / CONFIG_FILE).is_file()
        started = has_config or any((self.path / n).exists() for n in CHECKPOINT_NAMES)
        if self.resume:
            if not started:
                raise UserError(f"--resume: {self.path} holds no run to resume; drop --resume to start a new run")
            check_resume_compatible(self.path, self.cfg)
            self.restarted = not has_last
            self.resume = has_last
        elif has_last:
            raise UserError(f"{self.path} already holds a run; pass --resume to continue it or choose another --out")
        elif started:
            raise UserError(
                f"{self.path} holds a run that stopped before its first {LAST}; pass --resume to start it again "
                "from scratch or choose another --out"
            )

    def start(self) -> None:
        """Create and lock the directory, check it again (another run may have written it since
        the check at construction), write ``config.json`` (when resuming: after :meth:`restore`
        accepted ``last.pt``, so a refused resume leaves the run's config as it was); call it once
        the run's inputs (data, checkpoints, options) have been checked, so a run that fails to
        start writes nothing."""
        if self.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = lock_run_dir(self.path)
            self.resume = bool(getattr(self.cfg, "resume", False))
            self._check()
            if not self.resume:
                save_config(self.path, self.cfg)

    def close(self) -> None:
        """Release the directory's lock (idempotent)."""
        if self._lock is not None:
            for key, fd in list(_HELD.items()):
                if fd == self._lock:
                    del _HELD[key]
                    os.close(fd)
            self._lock = None

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

    def restore(self, model: nn.Module, check: Callable[[dict], None] | None = None) -> dict:
        """Resume: load ``last.pt`` into ``model`` (same architecture) and the RNGs; returns the
        checkpoint's ``extra`` (its ``state`` holds what :meth:`save_last` was given). ``check(extra)``
        runs before anything is loaded, to refuse a run whose inputs changed since."""
        last: Checkpoint = load_checkpoint(
            self.path / LAST, expect_name=model.config.name
        )  # CPU: RNG states stay CPU tensors
        if not isinstance(last.extra.get("state"), dict) or "rng" not in last.extra["state"]:
            raise UserError(
                f"{self.path / LAST} holds no training state to resume from (not written by a training run); "
                "choose another --out"
            )
        if check is not None:
            check(last.extra)
        last.load_into(model)
        set_rng_state(last.extra["state"]["rng"])
        if self.is_main:
            save_config(self.path, self.cfg)
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
