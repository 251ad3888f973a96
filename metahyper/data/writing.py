"""Writing dataset caches: as one unit, with content hashes, after checking disk and memory.

A cache build (every HDF5 and JSON file of a dataset, all splits) goes through one
:func:`metahyper.io.atomic_files` block (:func:`write_cache`): the files are written to temporary
names and renamed only when all are complete, so a failed or interrupted build (full disk, Ctrl-C,
a kill) leaves the previous cache as it was, never a mix of two builds. The free space the build
needs is checked before the first byte is written. HDF5 files are written through a Python file
object, so an I/O error (``ENOSPC``) surfaces as a Python exception rather than inside libhdf5.

Every HDF5 file records, as attributes of its root group (ignored by torchmeta):

* ``metahyper_sha256``: a hash of its class datasets (names, shapes, bytes), see :func:`content_sha256`;
* ``metahyper_files``: JSON ``{relative path: sha256}`` of the build's JSON files under its folder;
* ``metahyper_build``: an id shared by the HDF5 files of one build, when it writes several.

Every builder, whether it writes through :func:`write_cache` or streams its HDF5 files itself,
records the last two with :func:`stamp_build` before its files are renamed. :func:`check_build`
compares them cheaply (attributes and the small JSON files only) whenever a split is opened, so a
build killed between its final renames is refused by every command; :func:`verify_file` also
recomputes the content hash (``metahyper datasets --deep``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from metahyper.errors import UserError
from metahyper.io import atomic_files, parse_json
from metahyper.limits import ENV, GB, available_memory, memory_override

HASH_ATTR = "metahyper_sha256"
FILES_ATTR = "metahyper_files"
BUILD_ATTR = "metahyper_build"
_DATASET_OVERHEAD = 1024  # object header and links of one dataset (measured: about 500 bytes)
_FILE_OVERHEAD = 16384  # superblock, root group, attributes, last block (measured: about 7 KB)


def _class_digest(key: str, array: np.ndarray | Sequence) -> str:
    """Hash of one class: decoded images (a uint8 array), or encoded ones (a sequence of byte rows)."""
    if isinstance(array, np.ndarray) and array.dtype != object:
        h = hashlib.sha256(f"{key}\0{tuple(array.shape)}\0{array.dtype.str}\0".encode())
        h.update(np.ascontiguousarray(array).data)
        return h.hexdigest()
    h = hashlib.sha256(f"{key}\0encoded\0{len(array)}\0".encode())
    for row in array:
        row = bytes(np.asarray(row, dtype=np.uint8).data) if not isinstance(row, (bytes, bytearray)) else row
        h.update(len(row).to_bytes(8, "little") + row)
    return h.hexdigest()


def _combine(digests: Mapping[str, str]) -> str:
    return hashlib.sha256("".join(f"{k} {digests[k]}\n" for k in sorted(digests)).encode()).hexdigest()


def _dataset_digest(key: str, ds: h5py.Dataset, block_bytes: int = 64 << 20) -> str:
    """:func:`_class_digest` of a stored class, read about ``block_bytes`` at a time (encoded
    classes: 256 images at a time)."""
    encoded = h5py.check_vlen_dtype(ds.dtype) is not None
    if encoded:
        h = hashlib.sha256(f"{key}\0encoded\0{len(ds)}\0".encode())
        step = 256
    else:
        h = hashlib.sha256(f"{key}\0{tuple(ds.shape)}\0{ds.dtype.str}\0".encode())
        step = max(1, block_bytes // max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize))
    for start in range(0, len(ds), step):
        block = ds[start : start + step]
        if not encoded:
            h.update(np.ascontiguousarray(block).data)
            continue
        for row in block:
            row = bytes(np.asarray(row, dtype=np.uint8).data)
            h.update(len(row).to_bytes(8, "little") + row)
    return h.hexdigest()


def content_sha256(f: h5py.File) -> str:
    """The content hash of an HDF5 cache: over its datasets sorted by path (names, shapes, bytes),
    read a block at a time (memory stays bounded whatever the classes declare)."""
    keys: list[str] = []
    f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
    return _combine({k: _dataset_digest(k, f[k]) for k in keys})


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_classes_hdf5(
    path: Path,
    items: Iterable[tuple[str, np.ndarray | Sequence[bytes]]],
    progress=None,
) -> str:
    """Write one dataset per ``(key, images)`` (keys may contain '/': groups) to ``path`` (a
    temporary file of :func:`~metahyper.io.atomic_files`): uint8 (n, H, W, 3) RGB or (n, H, W)
    grayscale arrays, or a sequence of encoded images (bytes: torchmeta's variable-length rows).
    ``items`` may be a generator (streamed writers: one class in memory at a time). Records and
    returns the content hash; the build's identity is recorded after by :func:`stamp_build`."""
    digests = {}
    with open(path, "wb+") as fh, h5py.File(fh, "w") as f:
        for key, array in items:
            if isinstance(array, np.ndarray) and array.dtype != object:
                array = np.ascontiguousarray(array, dtype=np.uint8)
                f.create_dataset(key, data=array)
            else:
                ds = f.create_dataset(key, (len(array),), dtype=h5py.vlen_dtype(np.uint8))
                for i, blob in enumerate(array):
                    ds[i] = np.frombuffer(blob, dtype=np.uint8) if isinstance(blob, (bytes, bytearray)) else blob
            digests[key.strip("/")] = _class_digest(key.strip("/"), array)
            if progress is not None:
                progress.update(1)
        f.attrs[HASH_ATTR] = _combine(digests)
    return _combine(digests)


def write_chunked_hdf5(
    path: Path,
    items: Iterable[tuple[str, tuple[int, ...], Iterable[np.ndarray]]],
    progress=None,
) -> str:
    """Write one uint8 dataset per ``(key, shape, chunks)`` to ``path`` (a temporary file of
    :func:`~metahyper.io.atomic_files`), filled in order from ``chunks`` (arrays of ``shape[1:]``
    rows that together hold exactly ``shape[0]``): at most one chunk in memory, however large the
    class. Records and returns the same content hash as :func:`write_classes_hdf5` would for the
    whole arrays; ``progress`` advances by the rows written."""
    digests = {}
    with open(path, "wb+") as fh, h5py.File(fh, "w") as f:
        for key, shape, chunks in items:
            name = key.strip("/")
            ds = f.create_dataset(key, shape, dtype=np.uint8)
            h = hashlib.sha256(f"{name}\0{tuple(shape)}\0{np.dtype(np.uint8).str}\0".encode())
            filled = 0
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, dtype=np.uint8)
                if chunk.shape[1:] != tuple(shape[1:]) or filled + len(chunk) > shape[0]:
                    raise ValueError(f"{name}: chunk {chunk.shape} does not fit {tuple(shape)} at row {filled}")
                ds[filled : filled + len(chunk)] = chunk
                h.update(chunk.data)
                filled += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
            if filled != shape[0]:
                raise ValueError(f"{name}: {filled} rows written, {shape[0]} declared")
            digests[name] = h.hexdigest()
        f.attrs[HASH_ATTR] = _combine(digests)
    return _combine(digests)


def write_rows_hdf5(
    paths: Sequence[Path],
    shapes: Sequence[Mapping[str, tuple[int, ...]]],
    rows: Iterable[tuple[str, int, np.ndarray]],
    progress=None,
) -> None:
    """Create uint8 dataset ``key`` of ``shapes[i][key]`` in file ``paths[i]`` (temporary files of
    :func:`~metahyper.io.atomic_files`; keys unique over the files), then write each
    ``(key, row, image)`` of ``rows`` into its row, in the order given (a source read once in its
    own order: one image in memory); every row must be written once. Records each file's content
    hash (:func:`content_sha256`, the same as :func:`write_classes_hdf5`'s); ``progress``
    advances by the rows written."""
    with ExitStack() as stack:
        files = [stack.enter_context(h5py.File(stack.enter_context(open(p, "wb+")), "w")) for p in paths]
        sets = {
            key: f.create_dataset(key, shape, np.uint8) for f, keys in zip(files, shapes) for key, shape in keys.items()
        }
        written = dict.fromkeys(sets, 0)
        for key, row, image in rows:
            sets[key][row] = image
            written[key] += 1
            if progress is not None:
                progress.update(1)
        short = next((key for key, n in written.items() if n != len(sets[key])), None)
        if short is not None:
            raise ValueError(f"{short}: {written[short]} rows written, {len(sets[short])} declared")
        for f in files:
            f.attrs[HASH_ATTR] = content_sha256(f)


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def estimate_size(files: int, datasets: int, data_bytes: int) -> int:
    """Disk bytes (rounded up) of ``files`` HDF5 files holding ``datasets`` datasets of ``data_bytes`` in all."""
    return files * _FILE_OVERHEAD + datasets * _DATASET_OVERHEAD + data_bytes


def _nbytes(images: np.ndarray | Sequence) -> int:
    if isinstance(images, np.ndarray) and images.dtype != object:
        return int(images.nbytes)
    return sum(len(row) + 16 for row in images)  # encoded rows: bytes + a heap entry each


def estimate_bytes(data: Mapping[Path, Mapping[str, np.ndarray | Sequence]]) -> int:
    """Disk bytes (rounded up) the HDF5 files of :func:`write_cache` take: uncompressed, contiguous."""
    arrays = [a for classes in data.values() for a in classes.values()]
    return estimate_size(len(data), len(arrays), sum(_nbytes(a) for a in arrays))


def write_cache(
    data: Mapping[Path, Mapping[str, np.ndarray | Sequence]], jsons: Mapping[Path, object], progress=None
) -> list[Path]:
    """Write a whole cache as one unit: ``data`` maps each HDF5 path to ``{dataset key: images}``
    (written in that order; images as :func:`write_classes_hdf5` takes them), ``jsons`` each JSON
    path to its object. Either every file is
    replaced or none is; a :class:`UserError` before writing when the disk lacks the space."""
    blobs = {Path(p): _json_bytes(obj) for p, obj in jsons.items()}
    size = estimate_bytes(data) + sum(len(b) for b in blobs.values())
    paths = [Path(p) for p in data] + list(blobs)
    with atomic_files(paths, size=size) as tmps:
        for classes, tmp in zip(data.values(), tmps):
            write_classes_hdf5(tmp, classes.items(), progress)
        for tmp, blob in zip(tmps[len(data) :], blobs.values()):
            tmp.write_bytes(blob)
        stamp_build(dict(zip(paths, tmps)))
    return paths


def stamp_build(files: Mapping[Path, Path]) -> str:
    """Record one build's identity in its HDF5 files, inside an :func:`~metahyper.io.atomic_files`
    block after every file is written: ``files`` maps each final path to its complete temporary
    file. Each HDF5 file gets the sha256 of every other file of the build under its folder (by path
    relative to it), and, when the build writes several, a new build id shared by all. Returns the build id."""
    build = uuid.uuid4().hex
    others = {Path(p): file_sha256(t) for p, t in files.items() if Path(p).suffix != ".hdf5"}
    for path, tmp in files.items():
        path = Path(path)
        if path.suffix != ".hdf5":
            continue
        companions = {
            p.relative_to(path.parent).as_posix(): d for p, d in others.items() if p.is_relative_to(path.parent)
        }
        with open(tmp, "rb+") as fh, h5py.File(fh, "r+") as f:
            f.attrs[FILES_ATTR] = json.dumps(companions, sort_keys=True)
            if sum(Path(p).suffix == ".hdf5" for p in files) > 1:
                f.attrs[BUILD_ATTR] = build
    return build


def split_paths(root: Path, folder: str, split: str) -> tuple[Path, Path]:
    """``(<root>/<folder>/<split>_data.hdf5, <split>_labels.json)``: the per-split layout."""
    return root / folder / f"{split}_data.hdf5", root / folder / f"{split}_labels.json"


def write_splits(
    root: Path,
    splits: Mapping[tuple[str, str], tuple[Mapping[str, np.ndarray | Sequence], Sequence[str]]],
    progress=None,
) -> list[Path]:
    """Write several splits of the per-split layout as one unit: ``(folder, split) -> (classes,
    labels)`` with ``classes`` ``{name: images}`` (as :func:`write_classes_hdf5` takes them) and
    ``labels`` the names in order."""
    data, jsons = {}, {}
    for (folder, split), (classes, labels) in splits.items():
        data_path, labels_path = split_paths(root, folder, split)
        data[data_path] = {f"datasets/{name}": classes[name] for name in labels}
        jsons[labels_path] = list(labels)
    return write_cache(data, jsons, progress)


def write_split(root: Path, folder: str, split: str, classes: dict[str, np.ndarray], labels: list[str]) -> None:
    """Write one split in the per-split layout (torchmeta's MiniImageNet layout), atomically.
    A builder with several splits uses :func:`write_splits`, so that they are replaced together."""
    write_splits(root, {(folder, split): (classes, labels)})


def check_writable(paths: Iterable[Path], force: bool, what: str) -> None:
    """Refuse to overwrite existing cache files unless ``force``, and refuse paths that cannot be
    written (a file where a folder must be, a read-only folder): checked before any work starts."""
    paths = list(paths)
    for path in paths:
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            why = "is not writable" if parent.is_dir() else "is a file, not a folder"
            raise UserError(f"{parent} {why}; cannot write the {what} cache under it; choose another cache root")
        if path.is_dir():
            raise UserError(f"{path} is a folder where the {what} cache needs a file; move it away")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{what} cache already exists ({existing[0]}{more}); pass --force to rebuild it")


def verify_file(path: Path, raise_: bool = True) -> str | None | UserError:
    """Check an HDF5 cache file against the hashes it records (none recorded: nothing to check).
    Returns its build id, or None; a :class:`UserError` naming what differs (without the fix) is
    raised, or returned when not ``raise_``."""
    try:
        _verify(path)
    except UserError as err:
        if raise_:
            raise
        return err
    with h5py.File(path, "r") as f:
        return f.attrs.get(BUILD_ATTR)


def _verify(path: Path) -> None:
    try:
        with h5py.File(path, "r") as f:
            recorded = f.attrs.get(HASH_ATTR)
            files = parse_json(f.attrs.get(FILES_ATTR, "{}"), f"cache {path}: the file list", "", expect=dict)
            if recorded is not None and content_sha256(f) != recorded:
                raise UserError(f"cache {path} does not match its recorded content hash (corrupt or modified)")
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"cache {path} is truncated or corrupt ({type(err).__name__}: {err})") from None
    _check_companions(path, files)


def _build_attrs(path: Path) -> tuple[str | None, dict[str, str]]:
    """``(build id or None, {companion: sha256})`` recorded in the HDF5 file ``path``."""
    try:
        with h5py.File(path, "r") as f:
            build, files = f.attrs.get(BUILD_ATTR), json.loads(f.attrs.get(FILES_ATTR, "{}"))
    except (OSError, ValueError) as err:
        raise UserError(f"cache {path} is truncated or corrupt ({type(err).__name__}: {err})") from None
    if not isinstance(files, dict):
        raise UserError(f"cache {path} records its build's files wrongly (corrupt or modified)")
    return (build.decode() if isinstance(build, bytes) else build), files


def check_build(path: Path, siblings: Iterable[Path] = ()) -> None:
    """The cheap build-identity check, run whenever a split is opened: the small files of the build
    recorded in ``path`` (labels, manifest) are that build's, and every existing file of
    ``siblings`` (the dataset's other HDF5 files) carries the same build id. A
    :class:`UserError` (without the fix) otherwise; caches recording no build (torchmeta's) pass."""
    build, files = _build_attrs(path)
    _check_companions(path, files)
    for other in siblings:
        if build is None or other == path or not other.is_file():
            continue
        if _build_attrs(other)[0] != build:
            raise UserError(f"cache {path} and {other.name} come from different builds (a rebuild cut short)")


def _check_companions(path: Path, files: Mapping[str, str]) -> None:
    for rel, digest in files.items():
        companion = path.parent / rel
        if not companion.is_file():
            raise UserError(f"cache {path}: its file {companion} is missing")
        if file_sha256(companion) != digest:
            raise UserError(f"cache {path}: {companion} comes from another build or was modified")


class BuildCheck:
    """For ``metahyper datasets``: :func:`verify_file` once per data file (a grouped layout's
    ``data.hdf5`` serves several splits), and that the splits of one dataset share one build id."""

    def __init__(self) -> None:
        self._done: dict[Path, str | None | UserError] = {}
        self._builds: dict[str, dict[str, list]] = {}

    def __call__(self, dataset: str, info, hint: str) -> None:
        """Check ``info.path`` (a :class:`~metahyper.data.listing.CacheInfo`): a :class:`UserError`
        ending in ``hint`` when it fails; sets the ``error`` of every split of ``dataset`` seen so
        far when they come from different builds."""
        if info.path not in self._done:
            self._done[info.path] = verify_file(info.path, raise_=False)
        outcome = self._done[info.path]
        if isinstance(outcome, UserError):
            raise UserError(f"{outcome}; {hint}")
        if outcome is None:
            return
        builds = self._builds.setdefault(dataset, {})
        builds.setdefault(outcome, []).append(info)
        if len(builds) > 1:
            for row in (r for rows in builds.values() for r in rows):
                row.error = f"the splits of {dataset} come from different builds; {hint}"


def check_memory(nbytes: int, what: str, fix: str, limit: int | None = None) -> None:
    """A :class:`UserError` when ``what`` needs more than ``limit`` bytes of memory (an option of
    the command), else than ``$METAHYPER_MAX_MEMORY_GB`` when set (:mod:`metahyper.limits`), else
    than the memory available now; ``fix`` says what to change."""
    kind = "allowed"
    if limit is None:
        limit, kind = memory_override(), f"that ${ENV} allows"
    if limit is None:
        limit, kind = available_memory(), "available"
    if limit is not None and nbytes > limit:
        raise UserError(
            f"{what} needs about {nbytes / GB:.1f} GB of memory, more than the {limit / GB:.1f} GB {kind}; {fix}"
        )
