"""Oxford 102 Flowers (Nilsback & Zisserman 2008), Meta-Dataset's VGG Flower with its 71 / 15 / 16
class split (``md-vgg-flower``).

Source (``metahyper prepare md-vgg-flower --source PATH``): a folder holding ``imagelabels.mat``
and ``jpg/`` (the extracted ``102flowers.tgz``: ``jpg/image_00001.jpg`` to ``image_08189.jpg``).
``imagelabels.mat`` is a MATLAB 5 file whose ``labels`` (1 x 8189) give each image's class, 1 to
102; class ``L`` is named ``LLL.<flower>`` as in Meta-Dataset's split file (``001.pink primrose``)
and holds the images labelled ``L`` in file order, as Meta-Dataset's conversion takes them. The
MAT file is read by :func:`read_mat_vector` (no SciPy). Each image is resized to ``image_size``
square (PIL LANCZOS, aspect ratio not kept).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import build_md_source, md_splits, release_folder
from metahyper.errors import UserError

NAME, SOURCE = "md-vgg-flower", "vgg_flower"
URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"  # 102flowers.tgz and imagelabels.mat
MD5 = {"102flowers.tgz": "52808999861908f626f3c1f4e79d11fa", "imagelabels.mat": "e0620be6f572b9609742df49c70aed4d"}
FIX = f"download 102flowers.tgz and imagelabels.mat ({URL}), extract the tgz beside the mat, pass that folder"
MAX_MAT_BYTES = 16 * 2**20  # imagelabels.mat is 502 bytes; its labels 64 KB as doubles
# MATLAB 5 data types (miINT8 ... miUINT64) -> numpy codes, and the element kinds used here
_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED, _COMPLEX_FLAG = 14, 15, 0x800
_NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS ... mxUINT64_CLASS


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


def list_classes(top: Path) -> dict[str, list[tuple[Path, None]]]:
    """``{class: [(image, None), ...]}`` from ``top/imagelabels.mat``: image ``i`` (from 1) is
    ``top/jpg/image_{i:05d}.jpg``."""
    labels = read_mat_vector(top / "imagelabels.mat", "labels", FIX)
    names = {int(n.split(".", 1)[0]): n for split in md_splits(SOURCE).values() for n in split}
    if not np.all(np.isin(labels, list(names))):
        bad = labels[~np.isin(labels, list(names))][0]
        raise UserError(f"{top / 'imagelabels.mat'}: label {bad:g} is not a class 1..{len(names)}; {FIX}")
    classes: dict[str, list[tuple[Path, None]]] = {}
    for i, label in enumerate(labels.astype(int), start=1):
        classes.setdefault(names[int(label)], []).append((top / "jpg" / f"image_{i:05d}.jpg", None))
    return classes


def build_md_vgg_flower(
    root: Path, source: str | Path | None = None, force: bool = False, strict: bool = True, image_size: int = 84
) -> list[Path]:
    """Build ``md-vgg-flower``. ``strict``: the 102 classes and 8,189 images of Meta-Dataset's
    specification; otherwise the classes that the labels name (tiny test sources)."""
    top = release_folder(resolve_source(source, FIX), "imagelabels.mat", "102flowers", FIX)
    return build_md_source(root, NAME, SOURCE, lambda: list_classes(top), image_size, force, strict)
