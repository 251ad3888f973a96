"""How one class's images are stored in an HDF5 cache, and how they become uint8 (n, H, W, 3).

torchmeta's caches use three storages, all read as they are:

* ``rgb``: decoded images, a uint8 dataset (n, H, W, 3) (MiniImageNet, CIFAR, and every cache
  ``metahyper prepare`` writes for RGB datasets);
* ``gray``: decoded grayscale images, a uint8 dataset (n, H, W) (torchmeta's Omniglot, and ours);
  read as three equal channels;
* ``encoded``: one variable-length uint8 array per image holding the file bytes (torchmeta's CUB:
  the original JPEGs; torchmeta's tieredImageNet: the release's PNGs), decoded at read time with
  PIL and fitted to one size with :func:`fit_image`.

Public API: :func:`storage_kind`, :func:`to_rgb`, :func:`decode`, :func:`fit_image`, :func:`to_8bit`,
:func:`encoded_dtype`, :func:`write_encoded_split`; the other writers are in :mod:`metahyper.data.writing`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from metahyper.data.writing import write_splits
from metahyper.errors import UserError

MAX_IMAGE_PIXELS = 50_000_000  # per image, source or cache; ImageNet's largest are about 20 MP


def check_image_size(width: int, height: int, what: str) -> None:
    """A :class:`UserError` (without the fix) when an image declares no pixels or more than
    :data:`MAX_IMAGE_PIXELS`: checked from the declared size, before any pixel is read."""
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        why = "no pixels" if width < 1 or height < 1 else f"more than the {MAX_IMAGE_PIXELS:,} allowed"
        raise UserError(f"{what} declares {width}x{height} pixels, {why}")


def encoded_dtype() -> np.dtype:
    """The HDF5 variable-length uint8 type torchmeta stores encoded images with."""
    return h5py.vlen_dtype(np.uint8)


def storage_kind(ds: h5py.Dataset) -> str | None:
    """``'rgb'``, ``'gray'`` or ``'encoded'`` for a class dataset; None for anything else."""
    if ds.dtype == np.uint8:
        if ds.ndim == 4 and ds.shape[-1] == 3:
            return "rgb"
        if ds.ndim == 3:
            return "gray"
        return None
    if ds.ndim == 1 and h5py.check_vlen_dtype(ds.dtype) == np.uint8:
        return "encoded"
    return None


def to_8bit(image: Image.Image) -> Image.Image:
    """``image`` with 8-bit channels, ready for ``convert("RGB")`` / ``convert("L")`` (which clip
    wider values to 255): 16-bit grayscale (PIL modes ``I;16*``, and ``I`` holding 0..65535, as
    16-bit PNG, TIFF and PGM files open) scaled by 255/65535 to mode ``L``; other integer ranges and
    floating-point images raise a ValueError naming the range (the callers name the file)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(f"32-bit values {low}..{high}, outside 16 bits; convert it to 8 or 16 bits")
        return Image.fromarray(((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8), "L")
    if image.mode == "F":
        raise ValueError("floating-point pixels (mode F) have no fixed range; convert it to 8 or 16 bits")
    return image


def fit_image(image: Image.Image, size: int, crop: float = 1.0) -> np.ndarray:
    """An image as uint8 (size, size, 3): brought to 8 bits (:func:`to_8bit`), resized (PIL
    LANCZOS) to a square of side ``int(size * crop)``, then its central ``size`` x ``size`` kept.
    ``crop=1.15`` is the evaluation transform of Chen et al. 2019 (``Resize([int(1.15 S)] * 2)``,
    ``CenterCrop(S)``)."""
    image = to_8bit(image).convert("RGB")
    side = int(size * crop)
    if image.size != (side, side):
        image = image.resize((side, side), Image.LANCZOS)
    if side != size:
        top = (side - size) // 2
        image = image.crop((top, top, top + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def decode(blob: np.ndarray | bytes, size: int | None, crop: float, what: str) -> np.ndarray:
    """One encoded image (JPEG, PNG, ... bytes) as uint8 (H, W, 3), fitted by :func:`fit_image`
    when ``size`` is given; a :class:`UserError` naming ``what`` when PIL cannot decode it, or when
    its header declares a size :func:`check_image_size` refuses (checked before decoding)."""
    try:
        with Image.open(io.BytesIO(blob)) as image:
            check_image_size(*image.size, what)
            image.load()
            if size is None:
                return np.asarray(to_8bit(image).convert("RGB"), dtype=np.uint8)
            return fit_image(image, size, crop)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise UserError(f"{what} cannot be decoded ({type(err).__name__}: {err})") from None


def to_rgb(
    kind: str, raw: np.ndarray, size: int | None, crop: float, what: str, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Raw rows (image ``indices``, for messages) of a class dataset of storage ``kind`` as uint8
    (n, H, W, 3)."""
    if kind == "rgb":
        return raw
    if kind == "gray":
        return np.repeat(raw[..., None], 3, axis=-1)
    names = range(len(raw)) if indices is None else indices
    images = [decode(blob, size, crop, f"{what}, image {int(i)}") for i, blob in zip(names, raw)]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserError(f"{what}: encoded images have different sizes {sorted(shapes)}; give the layout a decode size")
    return np.stack(images) if images else np.empty((0, size or 0, size or 0, 3), np.uint8)


def create_encoded(group: h5py.Group, key: str, blobs: Sequence[bytes | np.ndarray]) -> h5py.Dataset:
    """A torchmeta-style encoded class dataset: one variable-length uint8 row per image."""
    ds = group.create_dataset(key, (len(blobs),), dtype=encoded_dtype())
    for i, blob in enumerate(blobs):
        ds[i] = np.frombuffer(blob, dtype=np.uint8) if isinstance(blob, (bytes, bytearray)) else blob
    return ds


def write_encoded_split(
    root: Path, folder: str, split: str, classes: Mapping[str, Sequence[bytes]], labels: Iterable[str]
) -> None:
    """Write one split as torchmeta writes CUB and tieredImageNet (``datasets/<class>`` holding
    the encoded file bytes, ``{split}_labels.json``), atomically (:func:`~metahyper.data.writing.write_splits`)."""
    labels = list(labels)
    write_splits(root, {(folder, split): (classes, labels)})
