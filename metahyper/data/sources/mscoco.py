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
images are read in the order of their first annotation, each once, and every crop written straight
into its class's row, so memory holds one image. A class's crops keep the annotations' order.
Writes ``md-mscoco/{val,test}_data.hdf5`` (``datasets/<category>``, uint8 (n, S, S, 3)) and
``{split}_labels.json`` (Meta-Dataset's class order).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import check_spec_counts, md_splits
from metahyper.data.storage import check_image_size, fit_image
from metahyper.data.writing import HASH_ATTR, check_memory, check_writable, content_sha256, estimate_size, stamp_build
from metahyper.errors import UserError
from metahyper.io import atomic_files, read_json, write_json
from metahyper.progress import progress_bar

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


Plan = dict[int, list[tuple[tuple[int, int, int, int], str, int]]]  # image id -> (crop box, class, row)


def _plan(notes: list[dict], names: dict[int, str], sizes: dict, scale: float) -> tuple[Plan, dict[str, int]]:
    """``({image id: [(box, class, row)]}, {class: crops})``: every annotation with a non-empty
    crop (by the image sizes the file lists), each class's rows in annotation order, the images in
    the order of their first annotation."""
    counts = dict.fromkeys(names.values(), 0)
    plan: Plan = {}
    for note in notes:
        name = names[note["category_id"]]
        box = crop_box(note["bbox"], *sizes[note["image_id"]], scale)
        if box[2] > box[0] and box[3] > box[1]:
            plan.setdefault(note["image_id"], []).append((box, name, counts[name]))
            counts[name] += 1
    return plan, counts


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


def _write(tmps: list[Path], chosen: dict, plan: Plan, counts: dict, sizes: dict, folder: Path, size: int) -> None:
    """Crop every planned annotation into its class's row of the split files ``tmps`` (HDF5 of
    val, of test), one image in memory at a time, then record each file's content hash."""
    with ExitStack() as stack:
        handles = [stack.enter_context(h5py.File(stack.enter_context(open(t, "wb+")), "w")) for t in tmps]
        sets = {
            c: f.create_dataset(f"datasets/{c}", (counts[c], size, size, 3), np.uint8)
            for f, classes in zip(handles, chosen.values())
            for c in classes
        }
        with progress_bar(total=sum(counts[c] for c in sets), desc=NAME, unit="img") as bar:
            for image_id, crops in plan.items():
                crops = [crop for crop in crops if crop[1] in sets]
                if not crops:
                    continue
                image = _image(folder / f"{image_id:012d}.jpg", sizes[image_id])
                for box, name, row in crops:
                    sets[name][row] = fit_image(image.crop(box), size)
                bar.update(len(crops))
        for f in handles:
            f.attrs[HASH_ATTR] = content_sha256(f)


def build_md_mscoco(
    root: Path,
    source: str | Path,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
    box_scale: float = 1.2,
) -> list[Path]:
    """Build the MSCOCO val and test splits (module docstring). ``strict``: the 80 categories with
    Meta-Dataset's counts; otherwise the categories present must belong to a split (tiny test
    sources). Every check runs before the first image is read; nothing is replaced unless both
    splits succeed."""
    if image_size < 1:
        raise UserError(f"--image-size must be a positive number of pixels, got {image_size}")
    if not box_scale >= 1.0:
        raise UserError(f"--box-scale must be >= 1 (the box is enlarged, never shrunk), got {box_scale}")
    outputs = [root / NAME / f"{s}_{x}" for s in SPLITS for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, NAME)
    source = resolve_source(source, FIX)
    names, notes, sizes = _annotations(source)
    chosen = _chosen(names, source, strict)
    plan, counts = _plan(notes, names, sizes, box_scale)
    if strict:
        check_spec_counts(NAME, "mscoco", counts)
    kept = {c for classes in chosen.values() for c in classes}
    folder = source / "train2017"
    needed = [i for i, crops in plan.items() if any(name in kept for _, name, _ in crops)]
    absent = next((i for i in needed if not (folder / f"{i:012d}.jpg").is_file()), None)
    if absent is not None:
        raise UserError(f"{source}: image train2017/{absent:012d}.jpg is annotated but missing; {FIX}")
    total = sum(counts[c] for c in kept)
    with atomic_files(outputs, size=estimate_size(2, len(kept), total * image_size**2 * 3)) as tmps:
        _write(tmps[0::2], chosen, plan, counts, sizes, folder, image_size)
        for tmp, classes in zip(tmps[1::2], chosen.values()):
            write_json(tmp, classes)
        stamp_build(dict(zip(outputs, tmps)))
    return outputs
