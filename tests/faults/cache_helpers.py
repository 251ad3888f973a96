"""Test-only: tiny caches written through the real writer, a look at what a folder holds, and a file
that fills up like a full disk."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np

from metahyper.data.layouts import SPLITS
from metahyper.data.writing import split_paths, write_splits


def write_tiny(
    root: Path, value: int, size: int = 4, folders: tuple[str, ...] = ("miniimagenet",), classes: int = 3
) -> list[Path]:
    """Every split of ``folders`` in one build: ``classes`` classes of 2 images filled with ``value``."""
    names = [f"n{c:08d}" for c in range(classes)]
    splits = {
        (f, s): ({n: np.full((2, size, size, 3), value, np.uint8) for n in names}, names)
        for f in folders
        for s in SPLITS
    }
    return write_splits(root, splits)


def cache_files(root: Path, folders: tuple[str, ...] = ("miniimagenet",)) -> list[Path]:
    return [p for f in folders for s in SPLITS for p in split_paths(root, f, s)]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden temporaries included) -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


class Quota(io.FileIO):
    """A file that fails with ENOSPC once the shared byte budget is spent (what a full disk does)."""

    budget = 0

    def write(self, data) -> int:
        if len(data) > Quota.budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        Quota.budget -= len(data)
        return super().write(data)
