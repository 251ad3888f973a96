"""Writing caches: the overwrite check and the atomic per-split writer shared by every builder.

Builders (:mod:`metahyper.data.sources`) call :func:`check_writable` before any work, then
:func:`write_split` (or :func:`write_classes_hdf5` inside :func:`metahyper.io.atomic_files` to
stream class by class), so a killed build leaves the old cache or none, never half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from metahyper.errors import UserError
from metahyper.io import atomic_files, write_json


def check_writable(paths: Iterable[Path], force: bool, what: str) -> None:
    """Refuse to overwrite existing cache files unless ``force`` (checked before any work starts)."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{what} cache already exists ({existing[0]}{more}); pass --force to rebuild it")


def write_classes_hdf5(path: Path, items: Iterable[tuple[str, np.ndarray]], progress=None) -> None:
    """Write one uint8 (n, H, W, 3) dataset per ``(key, array)``; keys may contain '/' (groups)."""
    with h5py.File(path, "w") as f:
        for key, array in items:
            f.create_dataset(key, data=np.ascontiguousarray(array, dtype=np.uint8))
            if progress is not None:
                progress.update(1)


def write_split(root: Path, folder: str, split: str, classes: dict[str, np.ndarray], labels: list[str]) -> None:
    """Write one split in the per-split layout (torchmeta's MiniImageNet layout), atomically."""
    data_path = root / folder / f"{split}_data.hdf5"
    labels_path = root / folder / f"{split}_labels.json"
    with atomic_files([data_path, labels_path]) as (tmp_data, tmp_labels):
        write_classes_hdf5(tmp_data, ((f"datasets/{name}", classes[name]) for name in labels))
        write_json(tmp_labels, labels)
