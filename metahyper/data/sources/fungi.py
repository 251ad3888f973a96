"""Meta-Dataset's Fungi source (``md-fungi``): the FGVCx Fungi 2018 images with Meta-Dataset's
994 / 200 / 200 class split.

Source (``metahyper prepare md-fungi --source DIR``): the folder where the challenge's
``fungi_train_val.tgz`` (``images/<species>/<file>.JPG``) and ``train_val_annotations.tgz``
(``train.json``, ``val.json``) were extracted. The annotations are COCO-style: ``images``
(``id``, ``file_name`` relative to DIR), ``annotations`` (``image_id``, ``category_id``) and
``categories`` (``id``, ``name``). As Meta-Dataset's conversion does, train and val are merged:
every image (ids unique over both files) has exactly one annotation, and class ``NNNN.<name>``
(the category id in four digits) holds its images in the order of ``train.json`` then ``val.json``.

The annotations are checked before any image is read: classes against Meta-Dataset's split file,
counts against its specification (``strict``), and every listed image must exist. Each image is
decoded with PIL, converted to RGB and resized to ``image_size`` square (LANCZOS, the aspect ratio
not kept, as Meta-Dataset resizes), then written ``chunk`` images at a time, so memory holds one
chunk whatever the class size. Writes ``md-fungi/{train,val,test}_data.hdf5`` (``datasets/<class>``,
uint8 (n, S, S, 3)) and ``{split}_labels.json`` (the classes in Meta-Dataset's order).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from metahyper.data.layouts import SPLITS
from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.folder import load_image
from metahyper.data.sources.meta_dataset import MD_SPLITS, build_md_source, md_splits
from metahyper.errors import UserError
from metahyper.io import read_json

NAME = "md-fungi"
ANNOTATIONS = ("train.json", "val.json")
FIX = "pass the folder of the FGVCx Fungi 2018 train.json, val.json and images/ (fungi_train_val.tgz extracted)"
_COCO = {"images": list, "annotations": list, "categories": list}


def _records(source: Path, name: str, key: str, fields: tuple[str, ...]) -> list[dict]:
    """The ``key`` list of annotation file ``name``, each entry an object holding ``fields``."""
    where = f"{source / name}"
    data = read_json(source / name, "Fungi annotation file", FIX, expect=dict, fields=_COCO)
    rows = data[key]
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(f not in row for f in fields):
            raise UserError(f"{where}: {key}[{i}] lacks one of {', '.join(fields)}; {FIX}")
    return rows


def _class_files(source: Path) -> dict[str, list[Path]]:
    """``{NNNN.<name>: [image paths]}`` from train.json and val.json merged, as Meta-Dataset merges them."""
    images = [r for name in ANNOTATIONS for r in _records(source, name, "images", ("id", "file_name"))]
    notes = [r for name in ANNOTATIONS for r in _records(source, name, "annotations", ("image_id", "category_id"))]
    cats = {c["id"]: c for name in ANNOTATIONS for c in _records(source, name, "categories", ("id", "name"))}
    by_id: dict[object, dict] = {}
    for image in images:
        if by_id.setdefault(image["id"], image) is not image:
            raise UserError(f"{source}: image id {image['id']} is listed twice in {' / '.join(ANNOTATIONS)}; {FIX}")
    label: dict[object, str] = {}
    for note in notes:
        category = cats.get(note["category_id"])
        if note["image_id"] not in by_id or category is None or not isinstance(category["id"], int):
            raise UserError(
                f"{source}: annotation of image {note['image_id']} names no listed image or category; {FIX}"
            )
        if note["image_id"] in label:
            raise UserError(f"{source}: image {note['image_id']} is annotated twice; {FIX}")
        label[note["image_id"]] = f"{category['id']:04d}.{category['name']}"
    classes: dict[str, list[Path]] = {}
    for image in images:
        if image["id"] not in label:
            raise UserError(f"{source}: image {image['file_name']} has no annotation; {FIX}")
        relative = PurePosixPath(str(image["file_name"]))
        if relative.is_absolute() or ".." in relative.parts:
            raise UserError(f"{source}: image file name {relative} points outside the source folder; {FIX}")
        classes.setdefault(label[image["id"]], []).append(source / relative)
    return classes


def _listing(source: str | Path, strict: bool) -> dict[str, list[Path]]:
    """``{class: image paths}`` of the annotations (:func:`_class_files`): every class of a split
    (``strict``: the split file's, else at least one per split), every listed image present."""
    source = resolve_source(source, FIX)
    classes = _class_files(source)
    wanted = md_splits("fungi")
    listed = {c for names in wanted.values() for c in names}
    stray = sorted(set(classes) - listed)
    if stray:
        raise UserError(f"{source}: class {stray[0]!r} is in no Meta-Dataset Fungi split; {FIX}")
    empty = [split for split, md in zip(SPLITS, MD_SPLITS) if not any(c in classes or strict for c in wanted[md])]
    if empty:
        raise UserError(f"{source} has no image of a Fungi {empty[0]} class; {FIX}")
    absent = next((p for paths in classes.values() for p in paths if not p.is_file()), None)
    if absent is not None:
        raise UserError(f"{source}: image {absent} is listed in the annotations but missing; {FIX}")
    return classes


def _images(paths: list[Path], image_size: int) -> np.ndarray:
    return np.stack([load_image(p, image_size) for p in paths])


def build_md_fungi(
    root: Path,
    source: str | Path,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
    chunk: int = 256,
) -> list[Path]:
    """Build the three Fungi splits (module docstring) with
    :func:`~metahyper.data.sources.meta_dataset.build_md_source`. ``strict``: the 1,394 classes with
    Meta-Dataset's counts; otherwise the classes present must belong to a split (tiny test
    sources). Nothing is replaced unless every split succeeds."""
    listing = partial(_listing, source, strict)
    return build_md_source(root, NAME, "fungi", listing, image_size, force, strict, read=_images, chunk=chunk)
