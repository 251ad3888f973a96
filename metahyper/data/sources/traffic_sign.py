"""German Traffic Sign Recognition Benchmark (Stallkamp et al. 2011), Meta-Dataset's Traffic Signs
(``md-traffic-sign``): the final training set's 43 classes, all in the test split.

Source (``metahyper prepare md-traffic-sign --source PATH``): the extracted
``GTSRB_Final_Training_Images.zip``, i.e. the ``GTSRB`` folder (or the folder holding it) with
``Final_Training/Images/<NNNNN>/`` for class ``NNNNN`` (00000 to 00042): the ``.ppm`` images of
that class and its ``GT-<NNNNN>.csv`` annotations, which are skipped; the whole image is kept (no
crop to the annotated region), as Meta-Dataset's conversion reads it (files in sorted order). Class
``NN`` is named ``NN.<sign>`` as in Meta-Dataset's split file (``00.Speed limit (20km/h)``). Each
image is resized to ``image_size`` square (PIL LANCZOS, aspect ratio not kept).
"""

from __future__ import annotations

from pathlib import Path

from metahyper.data.sources.common import resolve_source
from metahyper.data.sources.meta_dataset import build_md_source, folder_files, md_splits, release_folder

NAME, SOURCE = "md-traffic-sign", "traffic_sign"
URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/GTSRB_Final_Training_Images.zip"
FIX = f"extract GTSRB_Final_Training_Images.zip ({URL}) and pass its GTSRB folder"


def list_classes(top: Path) -> dict[str, list[tuple[Path, None]]]:
    """``{class: [(image, None), ...]}`` of the classes whose folder the release ``top`` holds."""
    classes = {}
    for name in md_splits(SOURCE)["test"]:
        number = int(name.split(".", 1)[0])
        folder = top / "Final_Training" / "Images" / f"{number:05d}"
        if folder.is_dir():
            classes[name] = [(path, None) for path in folder_files(folder, skip=(f"GT-{number:05d}.csv",))]
    return classes


def build_md_traffic_sign(
    root: Path, source: str | Path | None = None, force: bool = False, strict: bool = True, image_size: int = 84
) -> list[Path]:
    """Build ``md-traffic-sign`` (test split only). ``strict``: the 43 classes and the image counts
    of Meta-Dataset's specification; otherwise the class folders present (tiny test sources)."""
    top = release_folder(resolve_source(source, FIX), "Final_Training/Images", "GTSRB", FIX)
    return build_md_source(root, NAME, SOURCE, lambda: list_classes(top), image_size, force, strict)
