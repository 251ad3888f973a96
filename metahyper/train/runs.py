"""Run directories: creating them, writing results atomically, RNG state for exact --resume.

Every file that matters is written through :func:`metahyper.train.checkpoint.atomic_path` (temp
file, fsync, rename), by the main process only (``is_main``), so a killed run never leaves a
half-written JSON, CSV or PNG.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from metahyper.config import check_resume_compatible, save_config
from metahyper.errors import UserError
from metahyper.train.checkpoint import CHECKPOINT_NAMES, atomic_path

# Fault injection for the resume tests: SIGKILL the process just before the given
# iteration/epoch (after everything up to it has been written). Never set in normal use.
KILL_ENV = "METAHYPER_TEST_SIGKILL_AT"


def check_run_dir(out: str | Path, cfg: Any) -> Path:
    """Check ``out`` before a run starts (nothing is written): ``cfg.resume`` requires the same
    options and a ``last.pt`` there; a fresh run refuses to overwrite an existing run."""
    out = Path(out)
    if cfg.resume:
        if not (out / "last.pt").is_file():
            raise UserError(f"--resume: {out} holds no last.pt to resume from; drop --resume to start a new run")
        check_resume_compatible(out, cfg)
    elif any((out / n).exists() for n in CHECKPOINT_NAMES):
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return out


def start_run(out: Path, cfg: Any, is_main: bool = True) -> None:
    """Create the run directory and write its ``config.json`` (main process only); call it once the
    run's inputs (data, checkpoints, options) have been checked, so a failed start writes nothing."""
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(out, cfg)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
    return Path(path)


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], fields: list[str] | None = None) -> Path:
    """Write dict rows as CSV atomically (columns: ``fields`` or the union of keys in order)."""
    rows = list(rows)
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(path)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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


def fault_injection(step: int) -> None:
    """SIGKILL this process before ``step`` when the test hook ``METAHYPER_TEST_SIGKILL_AT`` asks."""
    at = os.environ.get(KILL_ENV)
    if at is not None and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)
