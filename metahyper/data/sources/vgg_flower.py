"""Oxford 102 Flowers (Nilsback & Zisserman 2008), Meta-Dataset's VGG Flower with its 71 / 15 / 16
class split (``md-vgg-flower``).

Source (``metahyper prepare md-vgg-flower --source PATH`` or ``--download``): a folder holding
``imagelabels.mat`` and either ``102flowers.tgz`` (read in place, never extracted) or its extracted
``jpg/`` (``jpg/image_00001.jpg`` to ``image_08189.jpg``; used when both are there).
``imagelabels.mat`` is a MATLAB 5 file whose ``labels`` (1 x 8189) give each image's class, 1 to
102; class ``L`` is named ``LLL.<flower>`` as in Meta-Dataset's split file (``001.pink primrose``)
and holds the images labelled ``L`` in file order, as Meta-Dataset's conversion takes them (from
the tgz the same images, read in one streamed pass: the same cache). The
MAT file is read by :func:`read_mat_vector` (no SciPy). Each image is resized to ``image_size``
square (PIL LANCZOS, aspect ratio not kept).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np

from metahyper.data.sources.common import download_file, resolve_source, tar_listing
from metahyper.data.sources.meta_dataset import build_md_source, md_splits, release_folder, tar_rows
from metahyper.errors import UserError

NAME, SOURCE = "md-vgg-flower", "vgg_flower"
ARCHIVE, LABELS = "102flowers.tgz", "imagelabels.mat"
URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"  # 102flowers.tgz and imagelabels.mat
MD5 = {ARCHIVE: "52808999861908f626f3c1f4e79d11fa", LABELS: "e0620be6f572b9609742df49c70aed4d"}
FIX = f"pass the folder of {ARCHIVE} (or its extracted jpg/) and {LABELS} ({URL}), or use --download"
MAX_MAT_BYTES = 16 * 2**20  # imagelabels.mat is 502 bytes; its labels 64 KB as doubles
# MATLAB 5 data types (miINT8 ... miUINT64) -> numpy codes, and the element kinds used here
_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED, _COMPLEX_FLAG = 14, 15, 0x800
_NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS ... mxUINT64_CLASS
Item = TypeVar("Item", Path, PurePosixPath)  # an image file, or a member path of the archive


def _elements(data: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    """``(data type, payload)`` of each data element of ``data`` (small elements: 4 bytes packed in
    the tag; compressed ones are not padded to 8 bytes)."""
    pos = 0
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from(order + "II", data, pos)
        if kind >> 16:
            yield kind & 0xFFFF, data[pos + 4 : pos + 4 + (kind >> 16)]
            pos += 8
            continue
        if pos + 8 + size > len(data):
            raise ValueError("a data element runs past the end of the file")
        yield kind, data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (0 if kind == _MI_COMPRESSED else -size % 8)


def _matrix(body: bytes, order: str) -> tuple[str, np.ndarray]:
    """``(name, values in column-major order)`` of a numeric miMATRIX element."""
    parts = list(_elements(body, order))
    if len(parts) < 4 or parts[0][0] != 6 or parts[1][0] != 5 or parts[3][0] not in _MI_TYPES:
        raise ValueError("a matrix is not flags, dimensions, name and real numbers")
    flags = struct.unpack_from(order + "I", parts[0][1])[0]
    if flags & 0xFF not in _NUMERIC_CLASSES or flags & _COMPLEX_FLAG:
        return parts[2][1].decode("latin1"), np.empty(0)
    dims = np.frombuffer(parts[1][1], order + "i4")
    values = np.frombuffer(parts[3][1], order + _MI_TYPES[parts[3][0]])
    if values.size != int(np.prod(dims)):
        raise ValueError(f"{values.size} values for dimensions {dims.tolist()}")
    return parts[2][1].decode("latin1"), values


def read_mat_vector(path: Path, name: str, fix: str) -> np.ndarray:
    """Numeric variable ``name`` of the MATLAB 5 (``-v6``/``-v7``) file ``path``, flattened in
    column-major order (a 1 x n vector: its n values); a one-line :class:`UserError` ending in
    ``fix`` when the file is not one, is compressed beyond :data:`MAX_MAT_BYTES`, or lacks ``name``."""
    if not path.is_file() or path.stat().st_size > MAX_MAT_BYTES:
        raise UserError(f"{path} {'is missing' if not path.is_file() else 'is larger than a label file'}; {fix}")
    data = path.read_bytes()
    if not data.startswith(b"MATLAB 5.0 MAT-file") or data[126:128] not in (b"IM", b"MI"):
        raise UserError(f"{path} is not a MATLAB 5 MAT-file (MATLAB 7.3 files are HDF5: save it with -v7); {fix}")
    order = "<" if data[126:128] == b"IM" else ">"
    try:
        for kind, body in _elements(data[128:], order):
            if kind == _MI_COMPRESSED:
                inflater = zlib.decompressobj()
                body = inflater.decompress(body, MAX_MAT_BYTES)
                kind, body = next(_elements(body, order), (0, b""))
            if kind == _MI_MATRIX:
                found, values = _matrix(body, order)
                if found == name and values.size:
                    return values
    except (ValueError, struct.error, zlib.error) as err:
        raise UserError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); {fix}") from None
    raise UserError(f"{path} holds no numeric variable {name!r}; {fix}")


def list_classes(top: Path, image: Callable[[str], Item]) -> dict[str, list[tuple[Item, None]]]:
    """``{class: [(image, None), ...]}`` from ``top/imagelabels.mat``: image ``i`` (from 1) is
    ``image("image_{i:05d}.jpg")``."""
    labels = read_mat_vector(top / LABELS, "labels", FIX)
    names = {int(n.split(".", 1)[0]): n for split in md_splits(SOURCE).values() for n in split}
    if not np.all(np.isin(labels, list(names))):
        bad = labels[~np.isin(labels, list(names))][0]
        raise UserError(f"{top / LABELS}: label {bad:g} is not a class 1..{len(names)}; {FIX}")
    classes: dict[str, list[tuple[Item, None]]] = {}
    for i, label in enumerate(labels.astype(int), start=1):
        classes.setdefault(names[int(label)], []).append((image(f"image_{i:05d}.jpg"), None))
    return classes


def archive_classes(top: Path) -> dict[str, list[tuple[PurePosixPath, None]]]:
    """:func:`list_classes` with the members ``jpg/image_NNNNN.jpg`` of ``top/102flowers.tgz``, from
    its headers; a one-line :class:`UserError` naming the first labelled image it lacks."""
    archive = top / ARCHIVE
    files = tar_listing(archive, "jpg", FIX, lambda path: path.parts[0] == "jpg")
    classes = list_classes(top, lambda name: PurePosixPath("jpg", name))
    missing = next((path for items in classes.values() for path, _ in items if path not in files), None)
    if missing is not None:
        raise UserError(f"{NAME}: image {archive}:{missing} is missing; pass the complete release")
    return classes


def download_release(root: Path) -> Path:
    """``102flowers.tgz`` and ``imagelabels.mat`` in ``<root>/downloads/vgg_flower/``, downloaded
    with torchvision (md5-checked; good copies already there are kept); returns that folder."""
    target = root / "downloads" / "vgg_flower"
    for name in (LABELS, ARCHIVE):
        download_file(URL + name, target, name, MD5[name], f"download {name} by hand and pass --source DIR")
    return target


def build_md_vgg_flower(
    root: Path,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
) -> list[Path]:
    """Build ``md-vgg-flower``: from ``jpg/`` image file by image file when it is there, else from
    ``102flowers.tgz`` in one streamed pass
    (:func:`~metahyper.data.sources.meta_dataset.tar_rows`) after its headers are checked.
    ``strict``: the 102 classes and 8,189 images of Meta-Dataset's specification; otherwise the
    classes that the labels name (tiny test sources)."""
    source = resolve_source(source, FIX, (lambda: download_release(root)) if download else None)
    top = release_folder(source.parent if source.is_file() else source, LABELS, "102flowers", FIX)
    if (top / "jpg").is_dir():
        listing = partial(list_classes, top, lambda name: top / "jpg" / name)
        return build_md_source(root, NAME, SOURCE, listing, image_size, force, strict)
    if not (top / ARCHIVE).is_file():
        raise UserError(f"{top} holds {LABELS} but neither {ARCHIVE} nor jpg/; {FIX}")
    rows = tar_rows(top / ARCHIVE, FIX)
    return build_md_source(root, NAME, SOURCE, partial(archive_classes, top), image_size, force, strict, rows=rows)
