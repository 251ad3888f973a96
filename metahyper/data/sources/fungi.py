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

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from metahyper.data.layouts import SPLITS
from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.folder import load_image
from metahyper.data.sources.meta_dataset import MD_SPLITS, check_spec_counts, md_splits
from metahyper.data.writing import check_writable, estimate_size, stamp_build, write_chunked_hdf5
from metahyper.errors import UserError
from metahyper.io import atomic_files, read_json, write_json
from metahyper.progress import progress_bar

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


def _chosen(classes: dict[str, list[Path]], source: Path, strict: bool) -> dict[str, list[str]]:
    """The classes of each cache split (val: Meta-Dataset's ``valid``): all of the split file
    (``strict``), else those annotated, at least one per split; a class of no split is an error."""
    wanted = md_splits("fungi")
    listed = {c for names in wanted.values() for c in names}
    stray = sorted(set(classes) - listed)
    if stray:
        raise UserError(f"{source}: class {stray[0]!r} is in no Meta-Dataset Fungi split; {FIX}")
    chosen = {split: [c for c in wanted[md] if c in classes or strict] for split, md in zip(SPLITS, MD_SPLITS)}
    empty = [split for split, names in chosen.items() if not names]
    if empty:
        raise UserError(f"{source} has no image of a Fungi {empty[0]} class; {FIX}")
    return chosen


def _images(paths: list[Path], image_size: int, chunk: int) -> Iterator[np.ndarray]:
    for start in range(0, len(paths), chunk):
        yield np.stack([load_image(p, image_size) for p in paths[start : start + chunk]])


def build_md_fungi(
    root: Path,
    source: str | Path,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
    chunk: int = 256,
) -> list[Path]:
    """Build the three Fungi splits (module docstring). ``strict``: the 1,394 classes with
    Meta-Dataset's counts; otherwise the classes present must belong to a split (tiny test
    sources). Nothing is replaced unless every split succeeds."""
    if image_size < 1:
        raise UserError(f"--image-size must be a positive number of pixels, got {image_size}")
    outputs = [root / NAME / f"{s}_{x}" for s in SPLITS for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, NAME)
    source = resolve_source(source, FIX)
    classes = _class_files(source)
    chosen = _chosen(classes, source, strict)
    if strict:
        check_spec_counts(NAME, "fungi", {c: len(paths) for c, paths in classes.items()})
    absent = next((p for paths in classes.values() for p in paths if not p.is_file()), None)
    if absent is not None:
        raise UserError(f"{source}: image {absent} is listed in the annotations but missing; {FIX}")
    total = sum(len(paths) for paths in classes.values())
    with atomic_files(outputs, size=estimate_size(3, len(classes), total * image_size**2 * 3)) as tmps:
        for i, (split, names) in enumerate(chosen.items()):
            items = (
                (f"datasets/{c}", (len(classes[c]), image_size, image_size, 3), _images(classes[c], image_size, chunk))
                for c in names
            )
            with progress_bar(total=sum(len(classes[c]) for c in names), desc=f"{NAME} {split}", unit="img") as bar:
                write_chunked_hdf5(tmps[2 * i], items, bar)
            write_json(tmps[2 * i + 1], names)
        stamp_build(dict(zip(outputs, tmps)))
    return outputs
