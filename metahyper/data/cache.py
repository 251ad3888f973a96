"""HDF5 dataset caches in torchmeta's layout (:mod:`metahyper.data.layouts`): reading, validating.

A class is stored in one of the forms of :mod:`metahyper.data.storage` (decoded RGB or grayscale,
or encoded file bytes) and always read as uint8 (n, H, W, 3). Public API: :func:`open_split` ->
:class:`SplitData`; :func:`load_splits` (a run's splits into memory, or read in place).
A cache's contents are not trusted: opening a split checks its build identity and what its classes
declare (links, dtypes, image sizes, chunks, labels, the manifest's sizes) before any pixel is read,
and a load into memory is checked against the memory available. Where datasets live is
:mod:`metahyper.data.layouts` (each dataset's layout: :mod:`metahyper.data.registry`); how builders
write is :mod:`metahyper.data.writing`; every cache of a root, validated: :mod:`metahyper.data.listing`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from metahyper.data.layouts import Layout, default_root
from metahyper.data.registry import layout_for
from metahyper.data.storage import check_image_size, storage_kind, to_rgb
from metahyper.data.writing import check_build, check_memory
from metahyper.errors import UserError
from metahyper.io import read_json
from metahyper.limits import available_memory, memory_override

_BLOCK_BYTES = 64 << 20  # images read at a time when a whole class is read
MAX_CHUNK_BYTES = 256 << 20  # HDF5 reads (and decompresses) a stored chunk whole


def rebuild_hint(layout: Layout) -> str:
    return f"rebuild it with `{layout.prepare} --force`"


def _check_declared(ds: h5py.Dataset, kind: str, what: str, hint: str) -> None:
    """A :class:`UserError` ending in ``hint`` when the sizes a class dataset of storage ``kind``
    declares are unusable (images of no pixels or too many, chunks larger than
    :data:`MAX_CHUNK_BYTES`); read from its header, before any pixel."""
    try:
        if kind != "encoded":
            check_image_size(int(ds.shape[2]), int(ds.shape[1]), f"{what} (each image)")
        if ds.chunks is not None:
            nbytes = int(np.prod(ds.chunks, dtype=np.int64)) * ds.dtype.itemsize
            if nbytes > MAX_CHUNK_BYTES:
                raise UserError(
                    f"{what} is stored in chunks of {nbytes / 2**20:,.0f} MB, more than the "
                    f"{MAX_CHUNK_BYTES >> 20} MB allowed"
                )
    except UserError as err:
        raise UserError(f"{err}; {hint}") from None


# --------------------------------------------------------------------------------------------------
# reading


class SplitData:
    """One split of a cached dataset: class names, lazy per-class reads, optional RAM copy.

    ``read(c, indices)`` returns uint8 (n, H, W, 3) whatever the storage (decoded RGB or grayscale,
    or bytes decoded at read time: :mod:`metahyper.data.storage`). HDF5 handles are opened lazily
    and per process (dropped on pickling, reopened after fork), so instances can go to DataLoader
    workers. With ``in_memory=True`` every class is loaded into one contiguous uint8 array.
    Construction raises a one-line :class:`UserError` ending in the rebuild command for a cache
    that is mixed from two builds or declares unusable contents, before any pixel is read.
    """

    def __init__(self, layout: Layout, split: str, root: Path, in_memory: bool = False) -> None:
        self.layout = layout
        self.name = layout.name
        self.split = split
        self.root = root
        self.path = layout.data_file(root, split)
        self.labels_path = layout.labels_file(root, split)
        hint = rebuild_hint(layout)
        if split not in layout.splits:
            raise UserError(f"dataset {self.name} has no split {split!r}; use one of {', '.join(layout.splits)}")
        for path in (self.path, self.labels_path):
            if not path.is_file():
                fix = hint if path.parent.is_dir() else f"build it with `{layout.prepare}`"  # part of a cache: --force
                raise UserError(f"{self.name} {split}: missing cache file {path}; {fix}")
        self._keys, self.classes = self._read_labels(hint)
        try:  # a build cut short between its renames: refused before anything else is read
            check_build(self.path, [layout.data_file(root, s) for s in layout.splits])
        except UserError as err:
            raise UserError(f"{err}; {hint}") from None
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._maps: dict[int, np.ndarray] = {}
        self._ram: np.ndarray | None = None
        try:
            self._validate(hint)
            if in_memory:
                self.load_into_memory()
        except BaseException:
            self.close()  # a refused cache is not held open
            raise

    def _validate(self, hint: str) -> None:
        """Storage, image size and counts from what the classes declare, checked before any pixel
        is read (an encoded cache's size: from its first image, whose header is checked first)."""
        self.storage, self._counts, shapes = self._scan_classes(hint)
        if self.storage == "encoded":
            first = next((c for c, n in enumerate(self._counts) if n), 0)
            shapes.add(tuple(self._decode(first, self._read_h5(self._keys[first], slice(0, 1))).shape[1:3]))
        if len(shapes) != 1:
            raise UserError(f"cache {self.path}: classes have different image sizes {sorted(shapes)}; {hint}")
        self.image_size: tuple[int, int] = shapes.pop()
        self._check_manifest(hint)
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)

    def _scan_classes(self, hint: str) -> tuple[str, list[int], set[tuple[int, int]]]:
        """``(storage, images per class, image sizes of decoded classes)`` from what each class
        dataset declares (link kind, dtype, shape, chunks), before any pixel is read."""
        counts, shapes, kinds = [], set(), set()
        for key in self._keys:
            ds = self._checked_dataset(key, hint)
            kind = storage_kind(ds)
            if kind is None:
                raise UserError(
                    f"cache {self.path}: class {key} has shape {ds.shape} dtype {ds.dtype}, expected uint8 "
                    f"(n, H, W, 3), uint8 (n, H, W) or encoded images (variable-length uint8); {hint}"
                )
            _check_declared(ds, kind, f"cache {self.path}: class {key}", hint)
            kinds.add(kind)
            counts.append(int(ds.shape[0]))
            if kind != "encoded":
                shapes.add(tuple(int(n) for n in ds.shape[1:3]))
        if len(kinds) != 1:
            raise UserError(f"cache {self.path}: classes are stored in different forms {sorted(kinds)}; {hint}")
        return kinds.pop(), counts, shapes

    def _checked_dataset(self, key: str, hint: str) -> h5py.Dataset:
        """The class dataset ``key``, reached through hard links only: a soft or external link
        (which may point anywhere, itself included) is refused, as is a missing name."""
        node: h5py.Group | h5py.Dataset = self._h5()
        for part in key.split("/"):
            link = node.get(part, getlink=True) if part and isinstance(node, h5py.Group) else None
            if link is None:
                break  # a missing name: _dataset says so
            if not isinstance(link, h5py.HardLink):
                raise UserError(
                    f"cache {self.path}: class {key!r} listed in {self.labels_path.name} is a "
                    f"{type(link).__name__}, not a dataset (links may point anywhere, even at themselves); {hint}"
                )
            node = node[part]
        return self._dataset(key)

    def _check_manifest(self, hint: str) -> None:
        """What the manifest of a user dataset declares (image size, classes per split) matches."""
        size, classes = self.layout.image_size, dict(self.layout.class_counts).get(self.split)
        if size is not None and self.image_size != (size, size):
            got = "x".join(map(str, self.image_size))
            raise UserError(f"cache {self.path} holds {got} images, its manifest says {size}x{size}; {hint}")
        if classes is not None and classes != self.num_classes:
            raise UserError(f"cache {self.path} holds {self.num_classes} classes, its manifest says {classes}; {hint}")

    # -- HDF5 access ------------------------------------------------------------------------------
    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:
                raise UserError(
                    f"cache {self.path} is truncated or corrupt (OSError: {err}); {rebuild_hint(self.layout)}"
                ) from None
            self._pid = os.getpid()
        return self._file

    def _dataset(self, key: str) -> h5py.Dataset:
        obj = self._h5().get(key)
        if not isinstance(obj, h5py.Dataset):
            raise UserError(
                f"cache {self.path} has no class dataset {key!r} listed in {self.labels_path.name}; "
                f"{rebuild_hint(self.layout)}"
            )
        return obj

    def _read_h5(self, key: str, sel) -> np.ndarray:
        try:
            return self._dataset(key)[sel]
        except OSError as err:
            raise UserError(
                f"cache {self.path} is truncated or corrupt (OSError reading {key}: {err}); {rebuild_hint(self.layout)}"
            ) from None

    def _decode(self, c: int, raw: np.ndarray, indices: Sequence[int] | None = None) -> np.ndarray:
        what = f"cache {self.path}: class {self._keys[c]}"
        try:
            return to_rgb(self.storage, raw, self.layout.decode_size, self.layout.decode_crop, what, indices)
        except UserError as err:
            raise UserError(f"{err}; {rebuild_hint(self.layout)}") from None

    def _class_array(self, c: int) -> np.ndarray | h5py.Dataset:
        """Class ``c`` as a read-only np.memmap when stored contiguously and uncompressed (h5py's
        default, also torchmeta's), else the h5py dataset. Maps are per process, like handles."""
        if self._pid != os.getpid():
            self._maps = {}
        if c not in self._maps:
            ds = self._dataset(self._keys[c])
            plain = ds.chunks is None and ds.compression is None and self.storage != "encoded"
            offset = ds.id.get_offset() if plain else None
            if offset is None:
                return ds
            try:
                self._maps[c] = np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset, shape=ds.shape)
            except (ValueError, OSError) as err:
                raise UserError(
                    f"cache {self.path} is truncated or corrupt ({type(err).__name__}: {err}); "
                    f"{rebuild_hint(self.layout)}"
                ) from None
        return self._maps[c]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        state["_maps"] = {}
        return state

    def close(self) -> None:
        self._maps = {}
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read_labels(self, hint: str) -> tuple[list[str], list[str]]:
        """``(HDF5 keys, class names)`` from the labels file: a list of names (per-split layout) or
        of name paths (grouped layouts); else a one-line :class:`UserError` ending in ``hint``."""
        labels = read_json(self.labels_path, "labels file", hint)
        if self.layout.grouped:
            ok = isinstance(labels, list) and all(
                isinstance(x, list) and x and all(isinstance(part, str) for part in x) for x in labels
            )
            keys = ["/".join(x) for x in labels] if ok else []
            classes = list(keys)
        else:
            ok = isinstance(labels, list) and all(isinstance(x, str) for x in labels)
            keys = [f"datasets/{x}" for x in labels] if ok else []
            classes = list(labels) if ok else []
        if not ok or not labels:
            raise UserError(f"labels file {self.labels_path} has the wrong layout (expected a non-empty list); {hint}")
        repeated = next(((k, n) for k, n in Counter(keys).items() if n > 1), None)
        if repeated:
            raise UserError(f"labels file {self.labels_path} lists class {repeated[0]!r} {repeated[1]} times; {hint}")
        return keys, classes

    # -- public -----------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_memory(self) -> bool:
        return self._ram is not None

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel ``(mean, std)`` of the dataset (its spec's; a user dataset's from its manifest)."""
        return self.layout.normalization

    def images_per_class(self, c: int) -> int:
        return self._counts[c]

    @property
    def nbytes(self) -> int:
        h, w = self.image_size
        return int(self._offsets[-1]) * h * w * 3

    def load_into_memory(self) -> None:
        """Copy every class, decoded, into one contiguous uint8 (N, H, W, 3) array (MiniImageNet
        train: about 0.8 GB; encoded caches are decoded once here), a block of images at a time;
        a :class:`UserError` before allocating when the declared images exceed the memory available."""
        if self._ram is not None:
            return
        h, w = self.image_size
        total = int(self._offsets[-1])
        check_memory(
            self.nbytes,
            f"cache {self.path}: loading {total:,} images of {h}x{w}",
            f"free memory, or {rebuild_hint(self.layout)} if it should not be this large",
        )
        ram = np.empty((total, h, w, 3), dtype=np.uint8)
        for c, start, block in self._blocks():
            ram[self._offsets[c] + start : self._offsets[c] + start + len(block)] = block
        self._ram = ram
        self.close()

    def _blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(class, first index, decoded images)`` over every image, about 64 MB (encoded: 256
        images) at a time."""
        h, w = self.image_size
        step = 256 if self.storage == "encoded" else max(1, _BLOCK_BYTES // (h * w * 3))
        for c, key in enumerate(self._keys):
            for start in range(0, self._counts[c], step):
                stop = min(start + step, self._counts[c])
                yield c, start, self._decode(c, self._read_h5(key, slice(start, stop)), range(start, stop))

    def check_all(self) -> None:
        """Read and decode every image (``metahyper datasets --deep``), a block at a time: a
        :class:`UserError` at the first that cannot be read."""
        for c, start, block in self._blocks():
            if block.shape[1:3] != self.image_size:
                raise UserError(
                    f"cache {self.path}: class {self._keys[c]} from image {start} decodes to "
                    f"{block.shape[2]}x{block.shape[1]}, not {self.image_size[1]}x{self.image_size[0]}; "
                    f"{rebuild_hint(self.layout)}"
                )

    def check_readable(self) -> None:
        """Read (and decode) the last image of the last class, at the file's end: a
        :class:`UserError` when the file is truncated or corrupt."""
        self._decode(len(self._keys) - 1, self._read_h5(self._keys[-1], slice(-1, None)), [self._counts[-1] - 1])

    def read(self, c: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Images ``indices`` (any order, no repeats needed) of class ``c`` as uint8 (n, H, W, 3)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._counts[c]):
            raise IndexError(f"class {c} of {self.name} {self.split} has {self._counts[c]} images, asked {idx}")
        if self._ram is not None:
            return self._ram[self._offsets[c] + idx]
        array = self._class_array(c)
        if isinstance(array, np.ndarray):
            return self._decode(c, np.asarray(array[idx]), idx)
        order = np.argsort(idx, kind="stable")
        uniq, inverse = np.unique(idx[order], return_inverse=True)
        block = self._decode(c, self._read_h5(self._keys[c], uniq), uniq)  # h5py needs increasing indices
        out = np.empty((idx.size, *block.shape[1:]), dtype=np.uint8)
        out[order] = block[inverse]
        return out

    def read_many(self, classes: Sequence[int], indices: np.ndarray) -> np.ndarray:
        """Images ``indices[i]`` of class ``classes[i]`` for each row i: uint8 (rows, n, H, W, 3)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._ram is not None:
            flat = self._offsets[np.asarray(classes, dtype=np.int64)][:, None] + indices
            return self._ram[flat]
        return np.stack([self.read(c, row) for c, row in zip(classes, indices)])

    def __repr__(self) -> str:
        return (
            f"SplitData({self.name!r}, {self.split!r}, classes={self.num_classes}, "
            f"image_size={self.image_size}, in_memory={self.in_memory})"
        )


def open_split(name: str, split: str, root: str | Path | None = None, in_memory: bool = False) -> SplitData:
    """Open split ``split`` of dataset ``name`` from the cache root (default :func:`default_root`)."""
    root = Path(root) if root is not None else default_root()
    return SplitData(layout_for(name, root), split, root, in_memory=in_memory)


IN_MEMORY = ("auto", "yes", "no")  # the --in-memory choices of load_splits


def keep_in_memory(splits: Sequence[SplitData], mode: str = "auto", processes: int = 1) -> bool:
    """Whether ``splits`` are to be loaded into memory (:func:`load_splits`) or read in place
    (through memory maps and the page cache: the same images, so the same numbers, only the speed
    differs). ``mode``: ``yes`` (a one-line :class:`UserError` when together they do not fit the
    memory), ``no``, or ``auto``: loaded when together they take at most half the memory that each
    of ``processes`` (torchrun's processes on one machine each load their own copy) may use:
    ``$METAHYPER_MAX_MEMORY_GB`` when set, else the memory available (loaded when unknown).
    Meta-Dataset's ILSVRC (18 GiB decoded at 84 px) and QuickDraw are read in place on most machines."""
    if mode not in IN_MEMORY:
        raise UserError(f"unknown --in-memory {mode!r}; choose from {', '.join(IN_MEMORY)}")
    unique = list({id(s): s for s in splits}.values())
    nbytes = processes * sum(s.nbytes for s in unique)
    if mode == "yes":
        names = ", ".join(f"{s.name} {s.split}" for s in unique)
        check_memory(nbytes, f"--in-memory yes: loading {names}", "free memory, or pass --in-memory auto or no")
        return True
    if mode == "no":
        return False
    limit = memory_override()
    limit = available_memory() if limit is None else limit
    return limit is None or 2 * nbytes <= limit


def load_splits(splits: Sequence[SplitData], mode: str = "auto", processes: int = 1) -> bool:
    """Load ``splits`` into memory when :func:`keep_in_memory` says so; returns whether it did."""
    loaded = keep_in_memory(splits, mode, processes)
    if loaded:
        for split in splits:
            split.load_into_memory()  # a split given twice is loaded once
    return loaded
