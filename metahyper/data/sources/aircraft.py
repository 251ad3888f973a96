"""FGVC-Aircraft (Maji et al. 2013) with Meta-Dataset's 70 / 15 / 15 split of its 100 variants
(``md-aircraft``).

Source (``metahyper prepare md-aircraft --source PATH``): the extracted
``fgvc-aircraft-2013b.tar.gz``, i.e. the ``fgvc-aircraft-2013b`` folder (or its ``data`` folder, or
the folder holding it) with ``data/images/<id>.jpg`` (10,000 images, 100 per variant),
``data/images_box.txt`` (``<id> <xmin> <ymin> <xmax> <ymax>`` lines) and
``data/images_variant_{trainval,test}.txt`` (``<id> <variant>`` lines, variants with spaces). As
Meta-Dataset's conversion does, the images of both files are pooled, a variant's images are taken
in sorted id order, and each is cropped to its bounding box (which also drops the 20-pixel
copyright banner at the bottom) with PIL's ``crop((xmin, ymin, xmax, ymax))``, then resized to
``image_size`` square (PIL LANCZOS, aspect ratio not kept). Variants are named as in the release
(``F/A-18``: its ``/`` makes an HDF5 group, which the reader follows).
"""

from __future__ import annotations

from pathlib import Path

from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import Box, build_md_source
from metahyper.errors import UserError

NAME, SOURCE = "md-aircraft", "aircraft"
URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
FIX = f"extract fgvc-aircraft-2013b.tar.gz ({URL}) and pass its fgvc-aircraft-2013b folder"
TOP = "fgvc-aircraft-2013b"
VARIANT_FILES = ("images_variant_trainval.txt", "images_variant_test.txt")


def _rows(path: Path, fields: int) -> list[list[str]]:
    """The lines of annotation file ``path`` split on their first ``fields - 1`` spaces."""
    if not path.is_file():
        raise UserError(f"{path} is missing; {FIX}")
    rows = [line.split(" ", fields - 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = next((i for i, row in enumerate(rows) if len(row) != fields), None)
    if bad is not None:
        raise UserError(f"{path}, line {bad + 1}: expected {fields} space-separated fields; {FIX}")
    return rows


def _boxes(path: Path) -> dict[str, Box]:
    """``{image id: (xmin, ymin, xmax, ymax)}`` of ``images_box.txt``."""
    boxes = {}
    for row in _rows(path, 5):
        try:
            boxes[row[0]] = tuple(int(v) for v in row[1:])
        except ValueError:
            raise UserError(f"{path}: box of image {row[0]} is not four integers; {FIX}") from None
    return boxes


def list_classes(data: Path) -> dict[str, list[tuple[Path, Box]]]:
    """``{variant: [(image, box), ...]}`` of the release's ``data`` folder."""
    variants = {image: variant for name in VARIANT_FILES for image, variant in _rows(data / name, 2)}
    boxes = _boxes(data / "images_box.txt")
    classes: dict[str, list[tuple[Path, Box]]] = {}
    for image in sorted(variants):
        if image not in boxes:
            raise UserError(f"{data / 'images_box.txt'} has no box for image {image}; {FIX}")
        classes.setdefault(variants[image], []).append((data / "images" / f"{image}.jpg", boxes[image]))
    return dict(sorted(classes.items()))


def build_md_aircraft(
    root: Path, source: str | Path | None = None, force: bool = False, strict: bool = True, image_size: int = 84
) -> list[Path]:
    """Build ``md-aircraft``. ``strict``: the 100 variants of 100 images of Meta-Dataset's
    specification; otherwise any variants of its split file (tiny test sources)."""
    source = resolve_source(source, FIX)
    data = next((d for d in (source, source / "data", source / TOP / "data") if (d / "images_box.txt").is_file()), None)
    if data is None:
        raise UserError(f"{source} holds neither {TOP}/data/images_box.txt nor data/images_box.txt; {FIX}")
    return build_md_source(root, NAME, SOURCE, lambda: list_classes(data), image_size, force, strict)
