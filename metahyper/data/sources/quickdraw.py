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

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from metahyper.data.layouts import SPLITS
from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import MD_SPLITS, check_spec_counts, md_splits
from metahyper.data.writing import check_writable, estimate_size, stamp_build, write_chunked_hdf5
from metahyper.errors import UserError
from metahyper.io import atomic_files, write_json
from metahyper.progress import progress_bar

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


def _chosen(files: dict[str, Path], source: Path, strict: bool) -> dict[str, list[str]]:
    """The classes of each cache split (val: Meta-Dataset's ``valid``) that get built: all of the
    split file (``strict``), else those with a file, at least one per split; a file of no split
    is an error."""
    wanted = md_splits("quickdraw")
    listed = {c for classes in wanted.values() for c in classes}
    stray = sorted(set(files) - listed)
    if stray:
        raise UserError(f"{files[stray[0]]}: class {stray[0]!r} is in no Meta-Dataset QuickDraw split; {FIX}")
    missing = [c for c in listed if c not in files]
    if strict and missing:
        raise UserError(f"{source} has no {missing[0]}.npy (QuickDraw class {missing[0]!r}); {FIX}")
    chosen = {split: [c for c in wanted[md] if c in files] for split, md in zip(SPLITS, MD_SPLITS)}
    empty = [split for split, classes in chosen.items() if not classes]
    if empty:
        raise UserError(f"{source} holds no .npy file of a QuickDraw {empty[0]} class; {FIX}")
    return chosen


def _resized(drawings: np.ndarray, count: int, image_size: int, chunk: int) -> Iterator[np.ndarray]:
    """The first ``count`` drawings as uint8 (n, S, S), ``chunk`` at a time."""
    for start in range(0, count, chunk):
        rows = np.asarray(drawings[start : min(start + chunk, count)])
        rows = rows.astype(np.uint8) * 255 if rows.dtype == np.bool_ else rows
        out = np.empty((len(rows), image_size, image_size), dtype=np.uint8)
        for j, row in enumerate(rows):
            image = Image.fromarray(row.reshape(SIDE, SIDE), "L")
            out[j] = np.asarray(image if image_size == SIDE else image.resize((image_size,) * 2, Image.LANCZOS))
        yield out


def build_md_quickdraw(
    root: Path,
    source: str | Path,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
    max_per_class: int | None = None,
    chunk: int = 4096,
) -> list[Path]:
    """Build the three QuickDraw splits (module docstring). ``strict``: all 345 classes with
    Meta-Dataset's counts; otherwise the files present must belong to a split (tiny test sources).
    Every check runs on the headers before the first drawing is read; nothing is replaced unless
    every split succeeds."""
    if image_size < 1:
        raise UserError(f"--image-size must be a positive number of pixels, got {image_size}")
    if max_per_class is not None and max_per_class < 1:
        raise UserError(f"--max-per-class must be >= 1, got {max_per_class}")
    outputs = [root / NAME / f"{s}_{x}" for s in SPLITS for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, NAME)
    source = resolve_source(source, FIX)
    files = _files(source)
    chosen = _chosen(files, source, strict)
    drawings = {c: _open(files[c]) for classes in chosen.values() for c in classes}
    if strict:
        check_spec_counts(NAME, "quickdraw", {c: len(d) for c, d in drawings.items()})
    kept = {c: len(d) if max_per_class is None else min(len(d), max_per_class) for c, d in drawings.items()}
    size = estimate_size(len(chosen), len(kept), sum(kept.values()) * image_size**2)
    with atomic_files(outputs, size=size) as tmps:  # the free space is checked before the first drawing
        for i, (split, classes) in enumerate(chosen.items()):
            items = (
                (f"datasets/{c}", (kept[c], image_size, image_size), _resized(drawings[c], kept[c], image_size, chunk))
                for c in classes
            )
            with progress_bar(total=sum(kept[c] for c in classes), desc=f"{NAME} {split}", unit="img") as bar:
                write_chunked_hdf5(tmps[2 * i], items, bar)
            write_json(tmps[2 * i + 1], classes)
        stamp_build(dict(zip(outputs, tmps)))
    return outputs
