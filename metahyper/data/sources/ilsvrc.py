"""ILSVRC-2012 (Russakovsky et al. 2015) with Meta-Dataset's split (``md-ilsvrc``): the 712 / 158 /
130 leaves of the WordNet subgraphs of its specification, counted in its
``ilsvrc_2012_num_leaf_images.json``.

Source (``metahyper prepare md-ilsvrc --source PATH``): the extracted training set of
``ILSVRC2012_img_train.tar``, i.e. the ``train`` folder (or the folder holding it) with
``<wnid>/<wnid>_<n>.JPEG``: 1,000 classes, 1,281,167 images (each class's own ``<wnid>.tar``
extracted into its folder). Read in place, class by class: one class's images are in memory at a
time. As Meta-Dataset's conversion, the 403 training images that duplicate images of CUB-200-2011,
Caltech-101 or Caltech-256 are left out (its ``ImageNet_*_duplicates.txt`` lists, shipped in
``splits/meta-dataset/duplicates/``), leaving 1,280,764; each class's other files are read in
sorted order and resized to ``image_size`` square (PIL LANCZOS, aspect ratio not kept).
"""

from __future__ import annotations

from pathlib import Path

from metahyper.data.layouts import splits_dir
from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import build_md_source, folder_files
from metahyper.errors import UserError

NAME, SOURCE = "md-ilsvrc", "ilsvrc_2012"
DUPLICATES = ("CUBirds", "Caltech101", "Caltech256")  # meta-dataset/duplicates/ImageNet_<name>_duplicates.txt
FIX = "extract ILSVRC2012_img_train.tar and each class's <wnid>.tar in it, and pass the train folder"


def duplicates() -> dict[str, set[str]]:
    """``{wnid: {file name, ...}}`` of the training images Meta-Dataset leaves out (the
    ``<wnid>/<file>`` column of its duplicates lists)."""
    skipped: dict[str, set[str]] = {}
    for name in DUPLICATES:
        path = splits_dir() / "meta-dataset" / "duplicates" / f"ImageNet_{name}_duplicates.txt"
        if not path.is_file():
            raise UserError(f"{path} is missing; reinstall metahyper or restore datasets/splits/ from git")
        for line in path.read_text().splitlines():
            entry = line.split("#", 1)[0].split()
            if entry:
                wnid, _, file = entry[0].partition("/")
                skipped.setdefault(wnid, set()).add(file)
    return skipped


def list_classes(train: Path) -> dict[str, list[tuple[Path, None]]]:
    """``{wnid: [(image, None), ...]}`` of the training folder ``train``: each class folder's files
    in sorted order, Meta-Dataset's duplicates and hidden files left out."""
    folders = sorted(p for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders and any(train.glob("n*.tar")):
        raise UserError(f"{train} holds the classes' .tar files, not their folders; {FIX}")
    skipped = duplicates()
    return {f.name: [(p, None) for p in folder_files(f, tuple(skipped.get(f.name, ())))] for f in folders}


def build_md_ilsvrc(
    root: Path, source: str | Path | None = None, force: bool = False, strict: bool = True, image_size: int = 84
) -> list[Path]:
    """Build ``md-ilsvrc`` (:func:`~metahyper.data.sources.meta_dataset.build_md_source`): 712 / 158
    / 130 classes named by WordNet id, in Meta-Dataset's class-id order. ``strict``: the 1,000
    classes and the image counts of its specification; otherwise any of its classes (tiny test
    sources)."""
    path = resolve_source(source, FIX)
    train = path / "train" if (path / "train").is_dir() else path
    if not train.is_dir():
        raise UserError(f"{path} is not a folder; {FIX}")
    return build_md_source(root, NAME, SOURCE, list_classes(train), image_size, force, strict)
