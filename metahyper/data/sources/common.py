"""What the cache builders of :mod:`metahyper.data.sources` share: the restricted unpickler, the
check of a built split, downloads, the resolution of ``--source``/``--download``, and the check of
an archive's members from their headers before any is read.

Only the documented pickle formats are read (CIFAR python pickles, MiniImageNet cache pickles,
tieredImageNet's release pickles): :func:`load_pickle` and :func:`stream_pickled_list` allow nothing
but numpy arrays/dtypes and builtin containers, so a crafted pickle cannot run code, and callers
validate types, shapes and dtypes before use.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from metahyper.data.writing import check_memory
from metahyper.errors import UserError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): dict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol <= 2
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    io.UnsupportedOperation,
)


def load_pickle(fileobj: IO[bytes], what: str, encoding: str = "ASCII") -> object:
    """Unpickle a dataset file allowing only numpy arrays and builtin types; errors name ``what``."""
    try:
        return _RestrictedUnpickler(fileobj, encoding=encoding).load()
    except _PICKLE_ERRORS as err:
        raise UserError(f"{what} is not a valid dataset pickle ({type(err).__name__}: {err}); re-download it") from None


_DROPPED = object()  # memo placeholder of an item handed to the sink


def _large(value: object) -> bool:
    return isinstance(value, np.ndarray) or (isinstance(value, (bytes, bytearray, str)) and len(value) > 256)


class _ListStreamer(pickle._Unpickler):
    """The pure-Python unpickler, restricted like :class:`_RestrictedUnpickler`, that hands the
    items of the pickle's top-level list to ``sink`` batch by batch (pickle's APPENDS opcodes,
    1000 items each) instead of keeping them, and keeps no memo reference to arrays or long
    strings: memory stays at one batch however long the list is. A pickle that refers back to a
    handed-over object fails (KeyError), it is never read wrongly."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, fileobj: IO[bytes], sink: Callable[[list], None], encoding: str) -> None:
        super().__init__(fileobj, encoding=encoding)
        self._sink = sink
        self._top: list | None = None

    find_class = _RestrictedUnpickler.find_class

    def _new_list(self, value: list) -> None:
        if self._top is None and not self.stack and not self.metastack:
            self._top = value
        self.append(value)

    def _empty_list(self) -> None:
        self._new_list([])

    def _list(self) -> None:  # protocol 0 opens a list with MARK LIST
        self._new_list(self.pop_mark())

    def _appends(self) -> None:
        items = self.pop_mark()
        if self.stack[-1] is self._top:
            self._sink(items)
        else:
            self.stack[-1].extend(items)

    def _append(self) -> None:
        value = self.stack.pop()
        if self.stack[-1] is self._top:
            self._sink([value])
        else:
            self.stack[-1].append(value)

    def _put(self, index: int) -> None:
        value = self.stack[-1]
        big = _large(value) or (isinstance(value, tuple) and any(_large(v) for v in value))
        self.memo[index] = _DROPPED if big else value

    def _binput(self) -> None:
        self._put(self.read(1)[0])

    def _long_binput(self) -> None:
        self._put(int.from_bytes(self.read(4), "little"))

    def _text_put(self) -> None:
        self._put(int(self.readline()[:-1]))

    def _memoize(self) -> None:
        self._put(len(self.memo))

    def _get_checked(self, index: int) -> None:
        value = self.memo[index]
        if value is _DROPPED:
            raise pickle.UnpicklingError("the pickle refers back to a streamed item")
        self.append(value)

    dispatch[pickle.EMPTY_LIST[0]] = _empty_list
    dispatch[pickle.LIST[0]] = _list
    dispatch[pickle.APPENDS[0]] = _appends
    dispatch[pickle.APPEND[0]] = _append
    dispatch[pickle.BINPUT[0]] = _binput
    dispatch[pickle.LONG_BINPUT[0]] = _long_binput
    dispatch[pickle.PUT[0]] = _text_put
    dispatch[pickle.MEMOIZE[0]] = _memoize
    dispatch[pickle.BINGET[0]] = lambda self: self._get_checked(self.read(1)[0])
    dispatch[pickle.LONG_BINGET[0]] = lambda self: self._get_checked(int.from_bytes(self.read(4), "little"))
    dispatch[pickle.GET[0]] = lambda self: self._get_checked(int(self.readline()[:-1]))


def stream_pickled_list(fileobj: IO[bytes], what: str, sink: Callable[[list], None], encoding: str = "latin1") -> int:
    """Unpickle a file holding one list, passing its items to ``sink`` in batches (bounded memory,
    for multi-gigabyte pickles such as tieredImageNet's ``train_images_png.pkl``); the same types
    as :func:`load_pickle` are allowed. Returns the number of items; errors name ``what``."""
    count = 0

    def counted(items: list) -> None:
        nonlocal count
        count += len(items)
        sink(items)

    streamer = _ListStreamer(fileobj, counted, encoding)
    try:
        top = streamer.load()
    except _PICKLE_ERRORS as err:
        raise UserError(f"{what} is not a valid dataset pickle ({type(err).__name__}: {err}); re-download it") from None
    if top is not streamer._top:
        raise UserError(f"{what} holds a {type(top).__name__}, not a list of images; is it the right file?")
    return count + len(top)


def validate_classes(
    what: str,
    got: dict[str, np.ndarray],
    expect_classes: Sequence[str] | int | None,
    expect_per_class: int | None,
    expect_hw: tuple[int, int] | None,
    fix: str,
) -> None:
    """Check a built split (class names/count, images per class, shape, dtype); say what differs.
    Images are uint8 (n, H, W, 3), or (n, H, W) for grayscale datasets."""
    problems = []
    if isinstance(expect_classes, int):
        if len(got) != expect_classes:
            problems.append(f"{len(got)} classes instead of {expect_classes}")
    elif expect_classes is not None:
        missing = sorted(set(expect_classes) - set(got))
        extra = sorted(set(got) - set(expect_classes))
        if missing:
            problems.append(f"{len(missing)} classes missing (e.g. {', '.join(missing[:3])})")
        if extra:
            problems.append(f"{len(extra)} unexpected classes (e.g. {', '.join(extra[:3])})")
    for name, arr in got.items():
        rgb = isinstance(arr, np.ndarray) and arr.ndim == 4 and arr.shape[-1] == 3
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or not (rgb or arr.ndim == 3):
            problems.append(
                f"class {name}: {getattr(arr, 'shape', type(arr))} {getattr(arr, 'dtype', '')}, not uint8 (n,H,W[,3])"
            )
            break
        if expect_hw is not None and tuple(arr.shape[1:3]) != tuple(expect_hw):
            problems.append(
                f"class {name}: images {arr.shape[1]}x{arr.shape[2]} instead of {expect_hw[0]}x{expect_hw[1]}"
            )
            break
        if expect_per_class is not None and arr.shape[0] != expect_per_class:
            problems.append(f"class {name}: {arr.shape[0]} images instead of {expect_per_class}")
            break
    if problems:
        raise UserError(f"{what}: {'; '.join(problems)}; {fix}")


def download_failed(url: str, folder: Path, err: BaseException, fallback: str) -> UserError:
    """The one-line error of a failed download (no network, a bad checksum, a full disk)."""
    detail = str(err).splitlines()[0] if str(err) else ""
    return UserError(
        f"downloading {url} into {folder} failed ({type(err).__name__}: {detail}); "
        f"check the network connection and retry, or {fallback}"
    )


def download_file(url: str, folder: Path, filename: str, md5: str | None, fallback: str) -> Path:
    """``folder/filename`` downloaded from ``url`` with torchvision (md5-checked; a good copy
    already there is kept); a :func:`download_failed` error naming ``fallback`` otherwise."""
    from torchvision.datasets.utils import download_url

    try:
        download_url(url, str(folder), filename, md5)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        raise download_failed(url, folder, err, fallback) from None
    return folder / filename


def resolve_source(source: str | Path | None, fix: str, download: Callable[[], Path] | None = None) -> Path:
    """The source a builder reads: ``download()``'s result when given, else ``source`` (``~``
    expanded), which must exist; a one-line :class:`UserError` ending in ``fix`` otherwise."""
    if download is not None:
        return download()
    if source is None:
        raise UserError(f"no --source given; {fix}")
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"source {path} does not exist; {fix}")
    return path


MAX_FILE_BYTES = 64 * 2**20  # one image or text file of a release (CUB's largest JPEG is under 1 MB)


def member_path(archive: Path, name: str, fix: str) -> PurePosixPath:
    """Archive member ``name`` as a path relative to the archive's top (``./`` dropped); a one-line
    :class:`UserError` when it is absolute or climbs out with ``..`` (no release holds such a
    member; nothing is extracted, so nothing could be written there)."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise UserError(f"{archive} holds member {name!r}, outside the archive's folder; {fix}")
    return path


def tar_files(tar: tarfile.TarFile, archive: Path, fix: str) -> dict[PurePosixPath, tarfile.TarInfo]:
    """The regular files of ``tar`` by :func:`member_path`, from the headers only (no member is
    read; tar's own errors are the caller's); a one-line :class:`UserError` for a member outside
    the archive's folder or a path stored twice."""
    files: dict[PurePosixPath, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        path = member_path(archive, member.name, fix)
        if member.isfile():
            if path in files:
                raise UserError(f"{archive} holds {path} more than once; {fix}")
            files[path] = member
    return files


BROKEN_ARCHIVE = (tarfile.TarError, EOFError, zlib.error, OSError)  # what a cut or damaged .tar.gz raises


def broken_archive(archive: Path, err: BaseException, fix: str) -> UserError:
    """The one-line error of a tar ``archive`` that ``err`` (one of :data:`BROKEN_ARCHIVE`) cut short."""
    detail = str(err).splitlines()[0].rstrip(":") if str(err) else ""
    return UserError(f"{archive} is truncated or not a tar archive ({type(err).__name__}: {detail}); {fix}")


def tar_listing(archive: Path, top: str, fix: str, used: Callable[[PurePosixPath], bool]) -> dict[PurePosixPath, int]:
    """``{path: size}`` of the regular files of the tar ``archive`` (any compression) for which
    ``used(path)`` holds, from one pass over its headers (no member is read or extracted;
    :func:`tar_files` refuses members outside the archive's folder, and a file in a folder other
    than the release's ``top`` is refused as :func:`outside_layout`); the compressed stream is read
    to its end, so that its checksum refuses a cut or damaged archive here, before any image is
    decoded. Every used member is read whole later, so the largest must fit
    :data:`MAX_FILE_BYTES` (:func:`check_read_sizes`). A one-line :class:`UserError` ending in
    ``fix`` for a truncated or corrupt archive."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            listed = tar_files(tar, archive, fix)
            stray = next((path for path in listed if len(path.parts) > 1 and path.parts[0] != top), None)
            if stray is not None:
                raise outside_layout(archive, stray, f"{top}/... and top-level files", fix)
            files = {path: info.size for path, info in listed.items() if used(path)}
            while tar.fileobj.read(2**20):  # the padding after the last member, and gzip's or xz's trailer
                pass
    except BROKEN_ARCHIVE as err:
        raise broken_archive(archive, err, fix) from None
    if files:
        largest = max(files, key=files.__getitem__)
        check_read_sizes(archive, {str(largest): files[largest]}, MAX_FILE_BYTES, fix)
    return files


def tar_members(archive: Path, wanted: Collection[PurePosixPath], fix: str) -> Iterator[tuple[PurePosixPath, bytes]]:
    """``(path, bytes)`` of each regular file of the tar ``archive`` whose :func:`member_path` is in
    ``wanted``, in the archive's order, from one streamed pass: memory holds one member. A one-line
    :class:`UserError` ending in ``fix`` for a truncated or corrupt archive, or when a wanted member
    is not there (the archive changed since :func:`tar_listing`)."""
    left = set(wanted)
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                path = member_path(archive, member.name, fix)
                if member.isfile() and path in left:
                    left.discard(path)
                    yield path, tar.extractfile(member).read()
    except BROKEN_ARCHIVE as err:
        raise broken_archive(archive, err, fix) from None
    if left:
        raise UserError(f"{archive} no longer holds {min(left)}; it changed while being read, {fix}")


def outside_layout(archive: Path, path: PurePosixPath, layout: str, fix: str) -> UserError:
    """The one-line error of an archive member outside the release's documented ``layout``."""
    return UserError(f"{archive} holds {path}, outside the release's layout ({layout}); {fix}")


def check_read_sizes(archive: Path, sizes: Mapping[str, int], limit: int, fix: str) -> None:
    """Members read whole into memory, ``{name: size from its header}``: their sum must be at most
    ``limit`` bytes (what the documented format holds, with a margin) and twice it (the bytes and
    what is decoded from them) must fit the memory available; a one-line :class:`UserError`
    naming the largest member otherwise. Call it before any member is read."""
    total = sum(sizes.values())
    if not sizes:
        return
    name, size = max(sizes.items(), key=lambda item: item[1])
    if total > limit:
        raise UserError(
            f"{archive}: member {name} is {size / 2**20:,.1f} MB ({total / 2**20:,.1f} MB to read in all), more "
            f"than the {limit / 2**20:,.1f} MB its format holds; {fix}"
        )
    check_memory(2 * total, f"reading {name} ({size / 2**20:,.1f} MB) of {archive}", fix)
