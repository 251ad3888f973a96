"""Describable Textures Dataset (Cimpoi et al. 2014) with Meta-Dataset's 33 / 7 / 7 class split
(``md-dtd``).

Source (``metahyper prepare md-dtd --source PATH`` or ``--download``): the release archive
``dtd-r1.0.1.tar.gz`` (read in place, never extracted), a folder holding it, or the extracted
``dtd`` folder (or the folder holding that) with ``images/<class>/<class>_NNNN.jpg``: 47 classes
of 120 images. Each class folder is read as Meta-Dataset's conversion reads it: its files in sorted
order, hidden files (the leftover ``waffled/.directory``) and subfolders left out; the archive's
``dtd/images/<class>/`` members by the same rules, so both give the same cache. Each image is
resized to ``image_size`` square (PIL LANCZOS, aspect ratio not kept, as Meta-Dataset resizes).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path, PurePosixPath

from metahyper.data.sources.common import download_file, resolve_source, tar_listing
from metahyper.data.sources.meta_dataset import build_md_source, folder_files, release_folder, tar_rows
from metahyper.errors import UserError

NAME, SOURCE = "md-dtd", "dtd"
ARCHIVE = "dtd-r1.0.1.tar.gz"
URL = f"https://www.robots.ox.ac.uk/~vgg/data/dtd/download/{ARCHIVE}"
MD5 = "fff73e5086ae6bdbea199a49dfb8a4c1"  # as torchvision.datasets.DTD checks it
FIX = f"pass {ARCHIVE} ({URL}) or its extracted dtd folder, or use --download"
IMAGES = PurePosixPath("dtd", "images")  # the archive's image folder


def list_classes(top: Path) -> dict[str, list[tuple[Path, None]]]:
    """``{class: [(image, None), ...]}`` of the release's top folder ``top`` (``dtd``)."""
    folders = sorted(p for p in (top / "images").iterdir() if p.is_dir() and not p.name.startswith("."))
    return {folder.name: [(path, None) for path in folder_files(folder)] for folder in folders}


def archive_classes(archive: Path) -> dict[str, list[tuple[PurePosixPath, None]]]:
    """``{class: [(member path, None), ...]}`` of the release archive, from its headers: the regular
    files ``dtd/images/<class>/<image>`` in sorted order, hidden classes and files and anything in
    a class's subfolders left out (as :func:`list_classes`); a one-line :class:`UserError` when the
    archive holds no such member."""
    files = tar_listing(archive, "dtd", FIX, lambda path: path.parts[:2] == IMAGES.parts and len(path.parts) > 3)
    classes: dict[str, list[tuple[PurePosixPath, None]]] = {}
    for path in sorted(files):
        name = path.parts[2]
        if not name.startswith("."):
            images = classes.setdefault(name, [])
            if len(path.parts) == 4 and not path.name.startswith("."):
                images.append((path, None))
    if not classes:
        raise UserError(f"{archive} holds no {IMAGES}/<class>/<image>; is it {ARCHIVE}? {FIX}")
    return classes


def download_archive(root: Path) -> Path:
    """``dtd-r1.0.1.tar.gz`` in ``<root>/downloads/dtd/``, downloaded with torchvision (md5-checked; a
    good copy already there is kept); returns it."""
    fallback = f"download {ARCHIVE} by hand and pass --source FILE"
    return download_file(URL, root / "downloads" / "dtd", ARCHIVE, MD5, fallback)


def build_md_dtd(
    root: Path,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
) -> list[Path]:
    """Build ``md-dtd`` (:func:`~metahyper.data.sources.meta_dataset.build_md_source`): from the
    extracted folder image file by image file, from the archive in one streamed pass
    (:func:`~metahyper.data.sources.meta_dataset.tar_rows`) after its headers are listed and
    checked. ``strict``: the classes and image counts of Meta-Dataset's specification; otherwise any
    classes of its split file (tiny test sources)."""
    source = resolve_source(source, FIX, (lambda: download_archive(root)) if download else None)
    top = release_folder(source, "images", "dtd", FIX, archive=ARCHIVE)
    if top.is_file():
        listing = partial(archive_classes, top)
        return build_md_source(root, NAME, SOURCE, listing, image_size, force, strict, rows=tar_rows(top, FIX))
    return build_md_source(root, NAME, SOURCE, lambda: list_classes(top), image_size, force, strict)
