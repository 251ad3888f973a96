"""Meta-Dataset's MSCOCO source (``md-mscoco``): object crops of COCO 2017 train, 40 valid and 40
test classes (Meta-Dataset trains on none of them).

Source (``metahyper prepare md-mscoco --source DIR``): the folder where ``train2017.zip``
(``train2017/<12-digit image id>.jpg``) and ``annotations_trainval2017.zip``
(``annotations/instances_train2017.json``; the json may also lie at DIR's top, as Meta-Dataset's
instructions leave it) were extracted.

Every instance annotation becomes one image of its category, by Meta-Dataset's rule
(``MSCOCOConverter``): the box ``[x, y, w, h]`` is enlarged about its centre by ``box_scale``
(default 1.2: ``x -= w (s - 1) / 2``, ``y -= h (s - 1) / 2``, ``w *= s``, ``h *= s``), turned from COCO's
half-integer pixel coordinates to PIL's (``left = max(round(x - 0.5), 0)``, ``top = max(round(y -
0.5), 0)``, ``right = min(round(x + w - 0.5) + 1, width)``, ``bottom = min(round(y + h - 0.5) + 1,
height)``), cropped from the RGB image and resized (PIL LANCZOS) to ``image_size`` square, the
aspect ratio not kept. A crop with no pixel is skipped, as Meta-Dataset skips it. Crowd annotations
are kept, as Meta-Dataset keeps them (its counts are all 860,001 annotations).

The annotations are checked before any image is read: 80 categories named as Meta-Dataset's split
file, the counts against its specification (``strict``), and every annotated image must exist. The
images are read in file-name order, each once, and every crop written straight
into its class's row, so memory holds one image. A class's crops keep the annotations' order.
Writes ``md-mscoco/{val,test}_data.hdf5`` (``datasets/<category>``, uint8 (n, S, S, 3)) and
``{split}_labels.json`` (Meta-Dataset's class order).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import build_md_source, md_splits
from metahyper.data.storage import check_image_size, fit_image
from metahyper.data.writing import check_memory
from metahyper.errors import UserError
from metahyper.io import read_json

NAME = "md-mscoco"
SPLITS = ("val", "test")  # Meta-Dataset's valid and test; its MSCOCO has no train class
ANNOTATIONS = "instances_train2017.json"
MAX_ANNOTATION_BYTES = 2**30  # the 2017 train instances file is 448 MB
FIX = "pass the folder of COCO 2017's train2017/ images and annotations/instances_train2017.json"


def _entries(data: dict, key: str, fields: dict[str, type | tuple[type, ...]], where: Path) -> list[dict]:
    """``data[key]``, each entry an object with ``fields`` of their types; else one line naming the entry."""
    for i, entry in enumerate(data[key]):
        if not isinstance(entry, dict) or any(not isinstance(entry.get(f), t) for f, t in fields.items()):
            raise UserError(f"{where}: {key}[{i}] lacks {', '.join(fields)} of the right types; {FIX}")
    return data[key]


def _annotations(source: Path) -> tuple[dict[int, str], list[dict], dict[int, tuple[int, int]]]:
    """``({category id: name}, annotations, {image id: (width, height)})`` of the instances file,
    every entry checked for the fields the build uses."""
    path = source / ANNOTATIONS
    path = path if path.is_file() else source / "annotations" / ANNOTATIONS
    if not path.is_file():
        raise UserError(f"{source} has no {ANNOTATIONS} (at its top or in annotations/); {FIX}")
    # json holds the 448 MB file as about eight times its size in Python objects
    check_memory(8 * path.stat().st_size, f"reading {path}", "free memory or use a machine with more")
    fields = {"images": list, "annotations": list, "categories": list}
    data = read_json(path, "COCO annotation file", FIX, expect=dict, fields=fields, max_bytes=MAX_ANNOTATION_BYTES)
    names = {c["id"]: c["name"] for c in _entries(data, "categories", {"id": int, "name": str}, path)}
    sizes = {
        im["id"]: (im["width"], im["height"])
        for im in _entries(data, "images", {"id": int, "width": int, "height": int}, path)
    }
    notes = _entries(data, "annotations", {"image_id": int, "category_id": int, "bbox": list}, path)
    for i, note in enumerate(notes):
        box = note["bbox"]
        if note["category_id"] not in names or note["image_id"] not in sizes:
            raise UserError(f"{path}: annotations[{i}] names an image or category that is not listed; {FIX}")
        if len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise UserError(f"{path}: annotations[{i}] has bbox {box!r}, not four numbers; {FIX}")
    return names, notes, sizes


def _chosen(names: dict[int, str], source: Path, strict: bool) -> dict[str, list[str]]:
    """Meta-Dataset's valid / test classes as the cache's val / test: all 80 (``strict``: the
    file must name exactly those), else those among the categories, at least one per split."""
    wanted = md_splits("mscoco")
    chosen = {"val": wanted["valid"], "test": wanted["test"]}
    listed = {c for classes in chosen.values() for c in classes}
    categories = set(names.values())
    extra, missing = sorted(categories - listed), sorted(listed - categories)
    if extra or (strict and missing):
        what = (
            f"category {extra[0]!r} is in no Meta-Dataset MSCOCO split" if extra else f"has no category {missing[0]!r}"
        )
        raise UserError(f"{source}: {ANNOTATIONS} {what}; {FIX}")
    chosen = {split: [c for c in classes if c in categories] for split, classes in chosen.items()}
    empty = [split for split, classes in chosen.items() if not classes]
    if empty:
        raise UserError(f"{source}: no category of the MSCOCO {empty[0]} split; {FIX}")
    return chosen


def crop_box(box: list[float], width: int, height: int, scale: float) -> tuple[int, int, int, int]:
    """PIL's ``(left, top, right, bottom)`` of COCO box ``[x, y, w, h]`` enlarged by ``scale``
    about its centre and clipped to the image, as Meta-Dataset's MSCOCO conversion computes it
    (possibly empty: right <= left or bottom <= top)."""
    x, y, w, h = box
    x, y, w, h = x - 0.5 * w * (scale - 1.0), y - 0.5 * h * (scale - 1.0), w * scale, h * scale
    left, top = max(int(round(x - 0.5)), 0), max(int(round(y - 0.5)), 0)
    right, bottom = min(int(round(x + w - 0.5)) + 1, width), min(int(round(y + h - 0.5)) + 1, height)
    return left, top, right, bottom


Crop = tuple[Path, tuple[int, int, int, int], tuple[int, int]]  # image file, crop box, image (width, height)


def _listing(source: str | Path, strict: bool, scale: float) -> dict[str, list[Crop]]:
    """``{class: crops in annotation order}`` of the split file's categories: every annotation
    with a non-empty crop (by the image sizes the file lists); every image they crop must exist."""
    source = resolve_source(source, FIX)
    names, notes, sizes = _annotations(source)
    _chosen(names, source, strict)
    folder = source / "train2017"
    classes: dict[str, list[Crop]] = {}
    for note in notes:
        image_id, name = note["image_id"], names[note["category_id"]]
        box = crop_box(note["bbox"], *sizes[image_id], scale)
        if box[2] > box[0] and box[3] > box[1]:
            classes.setdefault(name, []).append((folder / f"{image_id:012d}.jpg", box, sizes[image_id]))
    absent = next((path for crops in classes.values() for path, _, _ in crops if not path.is_file()), None)
    if absent is not None:
        raise UserError(f"{source}: image train2017/{absent.name} is annotated but missing; {FIX}")
    return classes


def _rows(classes: Mapping[str, Sequence[Crop]], size: int) -> Iterator[tuple[str, int, np.ndarray]]:
    """``(class, row, crop resized to size)`` of every crop, image after image in file-name order,
    each image opened once for all its crops."""
    by_image: dict[tuple[Path, tuple[int, int]], list] = {}
    for name, crops in classes.items():
        for row, (path, box, dims) in enumerate(crops):
            by_image.setdefault((path, dims), []).append((name, row, box))
    for path, dims in sorted(by_image):
        image = _image(path, dims)
        yield from ((name, row, fit_image(image.crop(box), size)) for name, row, box in by_image[path, dims])


def _image(path: Path, size: tuple[int, int]) -> Image.Image:
    """The RGB image at ``path``, of the ``(width, height)`` the annotations list; a one-line
    :class:`UserError` naming it otherwise."""
    try:
        with Image.open(path) as image:
            check_image_size(*image.size, f"image {path}")
            if image.size != size:
                raise UserError(f"image {path} is {image.size[0]}x{image.size[1]}, {ANNOTATIONS} says {size}; {FIX}")
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise UserError(f"image {path} cannot be read ({type(err).__name__}: {err}); {FIX}") from None


def build_md_mscoco(
    root: Path,
    source: str | Path,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
    box_scale: float = 1.2,
) -> list[Path]:
    """Build the MSCOCO val and test splits (module docstring) with
    :func:`~metahyper.data.sources.meta_dataset.build_md_source`. ``strict``: the 80 categories with
    Meta-Dataset's counts; otherwise the categories present must belong to a split (tiny test
    sources). Every check runs before the first image is read; nothing is replaced unless both
    splits succeed."""
    if not box_scale >= 1.0:
        raise UserError(f"--box-scale must be >= 1 (the box is enlarged, never shrunk), got {box_scale}")
    listing = partial(_listing, source, strict, box_scale)
    return build_md_source(root, NAME, "mscoco", listing, image_size, force, strict, rows=_rows)
