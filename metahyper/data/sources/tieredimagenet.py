"""tieredImageNet cache (Ren et al. 2018) in torchmeta's layout, built with bounded memory.

Source (``metahyper prepare tieredimagenet --source PATH``): the release of Ren et al.
(``tiered-imagenet.tar``, the folder it extracts to, or a folder holding its files)::

    {train,val,test}_images_png.pkl   a list of uint8 arrays, each the bytes of one 84x84 PNG
    {train,val,test}_labels.pkl       {'label_specific': int (N,), 'label_general': int (N,),
                                       'label_specific_str': [wnid, ...], 'label_general_str': [wnid, ...]}

Both are Python 2 pickles, read with the restricted unpickler (:mod:`metahyper.data.sources`); the
image list is streamed (:func:`stream_pickled_list`) and written in chunks, so memory does not grow
with the 779,165 images. Every PNG is decoded (a corrupt one is an error naming it).

Writes ``tieredimagenet/{split}_data.hdf5`` with one dataset per class at ``datasets/<wnid>``
(attributes ``label_specific``, ``label_general`` as torchmeta) and ``{split}_labels.json``
(``label_specific_str`` in label order, as torchmeta). Images are stored decoded, uint8
(n, 84, 84, 3), or with ``encoded=True`` as the release's PNG bytes (torchmeta's own storage);
docs/datasets.md compares the two. Class checks: 351 / 97 / 160 classes in 20 / 6 / 8 categories;
train and val equal the shipped lists ``datasets/splits/tieredimagenet/{train,val}.csv``
and ``test.csv`` (Ren et al.'s ``specific,general`` rows).
"""

from __future__ import annotations

import tarfile
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import h5py
import numpy as np

from metahyper.data.layouts import SPLITS, read_split_file
from metahyper.data.sources.common import (
    MAX_FILE_BYTES,
    check_read_sizes,
    load_pickle,
    outside_layout,
    resolve_source,
    stream_pickled_list,
    tar_files,
)
from metahyper.data.storage import decode, encoded_dtype
from metahyper.data.writing import check_writable, stamp_build
from metahyper.errors import UserError
from metahyper.io import atomic_files, write_json
from metahyper.progress import progress_bar

IMAGE_SIZE = 84
CLASSES = {"train": 351, "val": 97, "test": 160}
CATEGORIES = {"train": 20, "val": 6, "test": 8}
FIX = "pass the tiered-imagenet release (tiered-imagenet.tar or its folder of *_images_png.pkl and *_labels.pkl)"


def shipped_classes(split: str) -> dict[str, str]:
    """Ren et al.'s ``{wnid: category wnid}`` of ``split``."""
    rows = [line.split(",") for line in read_split_file(f"tieredimagenet/{split}.csv")]
    return {specific: general for specific, general in rows}


class _Release:
    """The release's six pickles, from a tar (members matched by file name) or a folder."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.tar: tarfile.TarFile | None = None
        names = [f"{s}_{kind}.pkl" for s in SPLITS for kind in ("images_png", "labels")]
        if source.is_file():
            try:
                self.tar = tarfile.open(source, "r:*")
                files = tar_files(self.tar, source, FIX)
            except (tarfile.TarError, OSError, EOFError) as err:
                raise UserError(f"{source} is truncated or not a tar archive ({err}); {FIX}") from None
            found = {}
            for path, member in files.items():
                if len(path.parts) > 2 or (len(path.parts) == 2 and path.parts[0] != "tiered-imagenet"):
                    raise outside_layout(source, path, "tiered-imagenet/<file> or <file>", FIX)
                if path.name in names and found.setdefault(path.name, member) is not member:
                    raise UserError(f"{source} holds {path.name} more than once; {FIX}")
            labels = {m.name: m.size for n, m in found.items() if n.endswith("_labels.pkl")}
            check_read_sizes(source, labels, 3 * MAX_FILE_BYTES, FIX)  # the image lists are streamed
        else:
            folder = source / "tiered-imagenet" if (source / "tiered-imagenet").is_dir() else source
            found = {n: folder / n for n in names if (folder / n).is_file()}
        missing = [n for n in names if n not in found]
        if missing:
            raise UserError(f"{source} has no {', '.join(missing)}; {FIX}")
        self.found = found

    def open(self, name: str) -> IO[bytes]:
        where = self.found[name]
        if self.tar is not None:
            return self.tar.extractfile(where)
        return open(where, "rb")

    def what(self, name: str) -> str:
        return f"{self.source}:{name}" if self.tar is not None else str(self.found[name])


def _labels(release: _Release, split: str) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Validated labels of ``split``: per-image class index, class wnids, category names per class."""
    name = f"{split}_labels.pkl"
    what = release.what(name)
    with release.open(name) as f:
        obj = load_pickle(f, what, encoding="latin1")
    keys = ("label_specific", "label_general", "label_specific_str", "label_general_str")
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise UserError(f"{what} is not a tieredImageNet labels pickle (expected a dict with {', '.join(keys)}); {FIX}")
    specific, general = np.asarray(obj["label_specific"]), np.asarray(obj["label_general"])
    names, general_names = obj["label_specific_str"], obj["label_general_str"]
    if not (
        specific.ndim == 1
        and specific.dtype.kind in "iu"
        and general.shape == specific.shape
        and general.dtype.kind in "iu"
    ):
        raise UserError(f"{what}: label_specific / label_general are not two integer arrays of one length; {FIX}")
    for key, seq in (("label_specific_str", names), ("label_general_str", general_names)):
        if not isinstance(seq, list) or not all(isinstance(x, str) for x in seq):
            raise UserError(f"{what}: {key} is not a list of names; {FIX}")
    if specific.size and (specific.min() < 0 or specific.max() >= len(names)):
        raise UserError(f"{what}: label_specific outside 0..{len(names) - 1}; {FIX}")
    if general.size and general.min() < 0:
        raise UserError(f"{what}: negative label_general; {FIX}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"{what}: class names collide ({', '.join(dup[:3])} named twice); {FIX}")
    counts = np.bincount(specific, minlength=len(names))
    if np.any(counts == 0):
        raise UserError(f"{what}: class {names[int(np.argmin(counts))]} has no images; {FIX}")
    first = np.array([np.flatnonzero(specific == c)[0] for c in range(len(names))], dtype=np.int64)
    # torchmeta names a category index beyond label_general_str ''; it still counts as its own category
    categories = np.array(
        [general_names[g] if g < len(general_names) else f"#{g}" for g in general[first]], dtype=object
    )
    return specific.astype(np.int64), names, general_names, categories


def _check_split(split: str, names: list[str], categories: np.ndarray, strict: bool, what: str) -> None:
    expected = shipped_classes(split)
    problems = []
    if strict and len(names) != CLASSES[split]:
        problems.append(f"{len(names)} classes instead of {CLASSES[split]}")
    if strict and len(set(categories)) != CATEGORIES[split]:
        problems.append(f"{len(set(categories))} categories instead of {CATEGORIES[split]}")
    if expected:
        extra = sorted(set(names) - set(expected))
        missing = sorted(set(expected) - set(names)) if strict else []
        if extra:
            problems.append(f"{len(extra)} classes not in Ren et al.'s {split} split (e.g. {', '.join(extra[:3])})")
        if missing:
            problems.append(f"{len(missing)} classes missing (e.g. {', '.join(missing[:3])})")
    if problems:
        raise UserError(f"tieredImageNet {split} source {what}: {'; '.join(problems)}; {FIX}")


def _class_datasets(
    f: h5py.File, names: list[str], counts: np.ndarray, categories: list[str], encoded: bool
) -> list[h5py.Dataset]:
    """One dataset per class under ``datasets/``, sized for its images (encoded: PNG bytes, else
    uint8 (n, 84, 84, 3)), with torchmeta's ``label_specific``/``label_general`` attributes."""
    group = f.create_group("datasets")
    datasets = []
    for c, wnid in enumerate(names):
        if encoded:
            ds = group.create_dataset(wnid, (int(counts[c]),), dtype=encoded_dtype())
        else:
            ds = group.create_dataset(wnid, (int(counts[c]), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        ds.attrs["label_specific"] = wnid
        ds.attrs["label_general"] = categories[c]
        datasets.append(ds)
    return datasets


class _ClassWriter:
    """Buffers ``(class, image)`` pairs and writes them into the class datasets ``chunk`` at a time,
    each class's images in the order they came."""

    def __init__(self, datasets: list[h5py.Dataset], encoded: bool, chunk: int, bar) -> None:
        self.datasets, self.encoded, self.chunk, self.bar = datasets, encoded, chunk, bar
        self.positions = np.zeros(len(datasets), dtype=np.int64)
        self.pending: list[tuple[int, np.ndarray]] = []

    def add(self, c: int, image: np.ndarray) -> None:
        self.pending.append((c, image))
        if len(self.pending) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        by_class: dict[int, list[np.ndarray]] = {}
        for c, image in self.pending:
            by_class.setdefault(c, []).append(image)
        for c, images in by_class.items():
            start = int(self.positions[c])
            if self.encoded:
                for j, blob in enumerate(images):
                    self.datasets[c][start + j] = blob
            else:
                self.datasets[c][start : start + len(images)] = np.stack(images)
            self.positions[c] += len(images)
        self.bar.update(len(self.pending))
        self.pending.clear()


def _png(item: object, what: str, index: int, wnid: str) -> tuple[np.ndarray, np.ndarray]:
    """``(bytes as uint8 (n,), decoded uint8 (84, 84, 3))`` of image ``index`` (of class ``wnid``)
    of the pickle ``what``; errors name them."""
    blob = np.asarray(item)
    if blob.dtype != np.uint8 or blob.size == 0:
        raise UserError(f"{what}: image {index} is {blob.dtype} {blob.shape}, not PNG bytes; {FIX}")
    blob = blob.reshape(-1)
    image = decode(blob, None, 1.0, f"{what}: image {index} (class {wnid})")
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise UserError(f"{what}: image {index} is {image.shape[1]}x{image.shape[0]}, not 84x84; {FIX}")
    return blob, image


def _write_split(release: _Release, split: str, labels: tuple, path: Path, encoded: bool, chunk: int) -> None:
    """Stream ``split``'s PNGs into per-class datasets of ``path``, ``chunk`` images at a time."""
    specific, names, _, categories = labels
    name = f"{split}_images_png.pkl"
    what = release.what(name)
    with (
        open(path, "wb+") as fh,
        h5py.File(fh, "w") as f,
        release.open(name) as pkl,
        progress_bar(total=len(specific), desc=f"tieredimagenet {split}", unit="img") as bar,
    ):
        counts = np.bincount(specific, minlength=len(names))
        writer = _ClassWriter(_class_datasets(f, names, counts, categories, encoded), encoded, chunk, bar)
        seen = 0

        def sink(items: list) -> None:
            nonlocal seen
            for item in items:
                if seen >= len(specific):
                    raise UserError(f"{what} holds more images than {split}_labels.pkl labels ({len(specific)}); {FIX}")
                blob, image = _png(item, what, seen, names[specific[seen]])
                writer.add(int(specific[seen]), blob if encoded else image)
                seen += 1

        try:
            stream_pickled_list(pkl, what, sink)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise UserError(f"{what} is truncated or unreadable ({type(err).__name__}: {err}); {FIX}") from None
        writer.flush()
        if seen != len(specific):
            raise UserError(f"{what} holds {seen} images but {split}_labels.pkl labels {len(specific)}; {FIX}")


def build_tieredimagenet(
    root: Path,
    source: str | Path,
    force: bool = False,
    strict: bool = True,
    encoded: bool = False,
    chunk: int = 1000,
) -> list[Path]:
    """Build the three tieredImageNet splits. ``strict``: Ren et al.'s class counts and lists;
    otherwise the classes need only belong to the right split (tiny test sources). Nothing is
    replaced unless all three splits succeed."""
    outputs = [root / "tieredimagenet" / f"{s}_{x}" for s in SPLITS for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, "tieredimagenet")
    release = _Release(resolve_source(source, FIX))
    with ExitStack() as stack:
        if release.tar is not None:
            stack.callback(release.tar.close)
        labels = {}
        for split in SPLITS:  # every labels file is checked before the first image is read
            labels[split] = _labels(release, split)
            _check_split(split, labels[split][1], labels[split][3], strict, release.what(f"{split}_labels.pkl"))
        decoded = None if encoded else sum(len(labels[s][0]) for s in SPLITS) * IMAGE_SIZE * IMAGE_SIZE * 3
        with atomic_files(outputs, size=decoded) as tmps:  # the free space is checked first
            for i, split in enumerate(SPLITS):
                _write_split(release, split, labels[split], tmps[2 * i], encoded, chunk)
                write_json(tmps[2 * i + 1], labels[split][1])
            stamp_build(dict(zip(outputs, tmps)))
    return outputs
