"""Fixtures of the pipeline tests: a tiny glyphs cache, one thread, a CLI runner in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest (and identically in every process) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def glyph_root(tmp_path_factory) -> Path:
    """A reduced glyphs cache (5 classes per script, 12 images of 16x16 per class) for both domains."""
    from metahyper.data.sources.glyphs import build_glyphs

    root = tmp_path_factory.mktemp("glyphs")
    build_glyphs(root, image_size=16, images_per_class=12, max_per_script=5, workers=1)
    return root


@pytest.fixture(scope="session")
def pretrained(glyph_root, tmp_path_factory) -> dict[str, Path]:
    """One-epoch pretrain runs of a hyper (variant 1) and a plain WRN-10-1 on 8x8 glyphs-a."""
    from metahyper.config import PretrainConfig
    from metahyper.train.pretrain import pretrain

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pre")
    runs = {}
    for name in ("hyper-wrn-10-1", "wrn-10-1"):
        cfg = PretrainConfig(
            dataset="glyphs-a",
            out=str(out / name),
            model=name,
            image_size=8,
            epochs=1,
            batch_size=64,
            milestones=[],
            data_root=str(glyph_root),
            device="cpu",
            progress=False,
        )
        pretrain(cfg)
        runs[name] = out / name
    torch.set_num_threads(threads)
    return runs


KILLED_RUN = Path(__file__).resolve().parents[1] / "faults" / "killed_run.py"


def _run(cmd: list[str], what: str, env: dict | None, check: bool) -> subprocess.CompletedProcess:
    """``cmd`` in a fresh process on one thread per process."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m metahyper ARGS`` in a fresh process on one thread."""
    return _run([sys.executable, "-m", "metahyper", *args], f"metahyper {' '.join(args)}", env, check)


def run_killed(run_dir: Path, out: Path, step: int, processes: int = 1) -> subprocess.CompletedProcess:
    """Repeat the run of ``run_dir`` (its ``config.json``) into ``out`` in a fresh process
    (``processes`` > 1: that many under torchrun), SIGKILLed just before epoch / iteration ``step``
    (``tests/faults/killed_run.py``). Returns the finished process; no exit status is checked."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = [*launcher, str(KILLED_RUN), str(Path(run_dir) / "config.json"), str(out), str(step)]
    return _run(cmd, f"killed run of {run_dir}", None, check=False)


@pytest.fixture
def cli():
    """:func:`run_cli` as a fixture."""
    return run_cli


@pytest.fixture
def killed():
    """:func:`run_killed` as a fixture."""
    return run_killed
