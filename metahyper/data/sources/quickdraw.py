"""Meta-Dataset's QuickDraw source (``md-quickdraw``): the Quick, Draw! bitmaps with Meta-Dataset's
241 / 52 / 52 class split.

Source (``metahyper prepare md-quickdraw --source DIR``): the folder of the 345 ``<class>.npy``
files of the public release (``gs://quickdraw_dataset/full/numpy_bitmap/``, one file per class,
named by the class, e.g. ``police car.npy``), or a folder holding that folder as ``numpy_bitmap/``.
Each file is a uint8 (or bool) array (n, 784): n 28x28 drawings, strokes bright on 0.

Only the ``.npy`` headers are read before the build: every class of the split file must have its
file, the files must hold Meta-Dataset's image counts (:func:`check_spec_counts`; ``strict``), and
no other ``.npy`` may be there. ``max_per_class`` keeps the first N drawings of each file (default:
all of them, Meta-Dataset's counts: about 50 million, 356 GB at 84 px). Each drawing is resized
(PIL LANCZOS) to ``image_size`` and stored grayscale; the files are memory-mapped and written
``chunk`` drawings at a time, so memory does not grow with the class. Writes
``md-quickdraw/{train,val,test}_data.hdf5`` (``datasets/<class>``, uint8 (n, S, S)) and
``{split}_labels.json`` (the classes in Meta-Dataset's order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from metahyper.data.layouts import SPLITS
from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import MD_SPLITS, build_md_source, md_splits
from metahyper.errors import UserError

NAME = "md-quickdraw"
SIDE = 28  # the release's drawings are 28x28, flattened to 784 values
FIX = "pass the folder of QuickDraw's 345 numpy_bitmap <class>.npy files"


def _files(source: Path) -> dict[str, Path]:
    """``{class: <class>.npy}`` of the source folder (or of its ``numpy_bitmap/``)."""
    folder = source / "numpy_bitmap" if (source / "numpy_bitmap").is_dir() else source
    if not folder.is_dir():
        raise UserError(f"{source} is not a folder; {FIX}")
    return {p.stem: p for p in sorted(folder.glob("*.npy")) if not p.name.startswith(".")}


def _open(path: Path) -> np.ndarray:
    """The drawings of ``path``, memory-mapped (only the header is read); uint8 or bool (n, 784)."""
    try:
        drawings = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"{path} is not a readable .npy file ({type(err).__name__}: {err}); {FIX}") from None
    if drawings.ndim != 2 or drawings.shape[1] != SIDE * SIDE or drawings.dtype not in (np.uint8, np.bool_):
        raise UserError(f"{path} holds {drawings.dtype} {drawings.shape}, not uint8 (n, 784) drawings; {FIX}")
    if len(drawings) == 0:
        raise UserError(f"{path} holds no drawing; {FIX}")
    return drawings


def _listing(source: str | Path, strict: bool) -> dict[str, np.ndarray]:
    """``{class: memory-mapped drawings}`` of the source's files, every one of a split (``strict``:
    every class of the split file, else at least one per split); only the headers are read."""
    source = resolve_source(source, FIX)
    files = _files(source)
    wanted = md_splits("quickdraw")
    listed = {c for classes in wanted.values() for c in classes}
    stray = sorted(set(files) - listed)
    if stray:
        raise UserError(f"{files[stray[0]]}: class {stray[0]!r} is in no Meta-Dataset QuickDraw split; {FIX}")
    missing = [c for c in listed if c not in files]
    if strict and missing:
        raise UserError(f"{source} has no {missing[0]}.npy (QuickDraw class {missing[0]!r}); {FIX}")
    empty = [split for split, md in zip(SPLITS, MD_SPLITS) if not any(c in files for c in wanted[md])]
    if empty:
        raise UserError(f"{source} holds no .npy file of a QuickDraw {empty[0]} class; {FIX}")
    return {c: _open(path) for c, path in files.items()}


def _resized(drawings: np.ndarray, image_size: int) -> np.ndarray:
    """Memory-mapped drawings (k, 784) as uint8 (k, S, S)."""
    rows = np.asarray(drawings)
    rows = rows.astype(np.uint8) * 255 if rows.dtype == np.bool_ else rows
    out = np.empty((len(rows), image_size, image_size), dtype=np.uint8)
    for j, row in enumerate(rows):
        image = Image.fromarray(row.reshape(SIDE, SIDE), "L")
        out[j] = np.asarray(image if image_size == SIDE else image.resize((image_size,) * 2, Image.LANCZOS))
    return out


def build_md_quickdraw(
    root: Path,
    source: str | Path,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
    max_per_class: int | None = None,
    chunk: int = 4096,
) -> list[Path]:
    """Build the three QuickDraw splits (module docstring) with
    :func:`~metahyper.data.sources.meta_dataset.build_md_source`. ``strict``: all 345 classes with
    Meta-Dataset's counts; otherwise the files present must belong to a split (tiny test sources).
    Every check runs on the headers before the first drawing is read; nothing is replaced unless
    every split succeeds."""
    return build_md_source(
        root,
        NAME,
        "quickdraw",
        lambda: _listing(source, strict),
        image_size,
        force,
        strict,
        read=_resized,
        channels=1,
        chunk=chunk,
        max_per_class=max_per_class,
    )
