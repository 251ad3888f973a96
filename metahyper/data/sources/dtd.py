"""Describable Textures Dataset (Cimpoi et al. 2014) with Meta-Dataset's 33 / 7 / 7 class split
(``md-dtd``).

Source (``metahyper prepare md-dtd --source PATH``): the extracted ``dtd-r1.0.1.tar.gz``, i.e. the
``dtd`` folder (or the folder holding it) with ``images/<class>/<class>_NNNN.jpg``: 47 classes of
120 images. Each class folder is read as Meta-Dataset's conversion reads it: its files in sorted
order, hidden files (the leftover ``waffled/.directory``) and subfolders left out. Each image is
resized to ``image_size`` square (PIL LANCZOS, aspect ratio not kept, as Meta-Dataset resizes).
"""

from __future__ import annotations

from pathlib import Path

from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import build_md_source, folder_files, release_folder

NAME, SOURCE = "md-dtd", "dtd"
URL = "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"
MD5 = "fff73e5086ae6bdbea199a49dfb8a4c1"  # as torchvision.datasets.DTD checks it
FIX = f"extract dtd-r1.0.1.tar.gz ({URL}) and pass its dtd folder"


def list_classes(top: Path) -> dict[str, list[tuple[Path, None]]]:
    """``{class: [(image, None), ...]}`` of the release's top folder ``top`` (``dtd``)."""
    folders = sorted(p for p in (top / "images").iterdir() if p.is_dir() and not p.name.startswith("."))
    return {folder.name: [(path, None) for path in folder_files(folder)] for folder in folders}


def build_md_dtd(
    root: Path, source: str | Path | None = None, force: bool = False, strict: bool = True, image_size: int = 84
) -> list[Path]:
    """Build ``md-dtd`` (:func:`~metahyper.data.sources.meta_dataset.build_md_source`). ``strict``:
    the classes and image counts of Meta-Dataset's specification; otherwise any classes of its
    split file (tiny test sources)."""
    top = release_folder(resolve_source(source, FIX), "images", "dtd", FIX)
    return build_md_source(root, NAME, SOURCE, lambda: list_classes(top), image_size, force, strict)
