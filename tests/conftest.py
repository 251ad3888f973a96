"""Shared test settings: small, deterministic, CPU, two threads; a generator of image folders; the
config of a seconds-long meta-training on the offline glyphs."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metahyper.config import MetaTrainConfig


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def read_only_python(tmp_path):
    """``(mnt, run)``: ``run(*args)`` runs ``python ARGS`` (this checkout importable) in a user
    namespace where ``mnt`` is a read-only tmpfs (no root needed); skips where that is impossible."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    shell = ["unshare", "-rm", "sh", "-c"]
    mount = f"mount -t tmpfs -o ro tmpfs {mnt}"
    if shutil.which("unshare") is None or subprocess.run([*shell, mount]).returncode:
        pytest.skip("needs unshare and a tmpfs mount in a user namespace")

    def run(*args: str) -> subprocess.CompletedProcess:
        command = shlex.join([sys.executable, *args])
        return subprocess.run(
            [*shell, f"{mount} && exec {command}"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )

    return mnt, run


def make_image_folder(path: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """``path/<class>/<i>.<ext>``: small images of varied size, mode and format, plus files to ignore."""
    rng = np.random.default_rng(seed)
    for c, n in counts.items():
        (path / c).mkdir(parents=True)
        for i in range(n):
            h, w = rng.integers(6, 14, size=2)
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            kind = i % 3
            if kind == 0:
                image.save(path / c / f"{i}.png")
            elif kind == 1:
                image.convert("L").save(path / c / f"{i}.JPG", quality=95)  # grayscale, upper-case extension
            else:
                image.convert("RGBA").save(path / c / f"{i}.webp")
        (path / c / "notes.txt").write_text("not an image")
        (path / c / ".hidden.png").write_bytes(b"")
    (path / "README").write_text("a file beside the class folders is ignored")
    return path


@pytest.fixture
def image_folder():
    """:func:`make_image_folder` as a fixture."""
    return make_image_folder


def tiny_meta_config(root, init, out, **overrides) -> MetaTrainConfig:
    """Meta-training that runs in seconds on the offline glyphs (``root``) from the pretrain run
    ``init``: 3-way 1-shot, 2 queries, meta-batch 2, 3 iterations of 1 inner step, validated on 2
    episodes of glyphs-a and glyphs-b after every iteration, saved every iteration; ``overrides``
    win."""
    base = dict(
        train="glyphs-a", test="glyphs-b", init=str(init), out=str(out), ways=3, shots=1, queries=2, meta_batch=2,
        iterations=3, inner_steps=1, eval_inner_steps=1, val_every=1, val_episodes=2, save_every=1,
        data_root=str(root), device="cpu", progress=False,
    )  # fmt: skip
    return MetaTrainConfig(**{**base, **overrides})
