"""CUB-200-2011 cache (Wah et al. 2011) with the 100 / 50 / 50 class split of Chen et al. 2019.

Source (``metahyper prepare cub --source PATH`` or ``--download``): the official
``CUB_200_2011.tgz``, its extracted ``CUB_200_2011/`` folder, or a folder holding either. The
archive holds ``CUB_200_2011/images/<NNN.Name>/<name>.jpg`` (11,788 JPEGs of 200 classes, 41 to
60 per class), ``images.txt`` (``<id> <class>/<name>.jpg``) and ``classes.txt`` (``<id> <class>``).
The tgz's headers are read and checked first (layout, member sizes), then its members in one
more pass (no extraction); every image ``images.txt`` lists must be there, so a truncated archive
is an error.

The split is torchmeta's (``assets/cub/{split}.json``, Chen et al.'s rule: the i-th class in
sorted order goes to train when i is even, val when i % 4 == 1, test when i % 4 == 3), shipped as
``datasets/splits/cub/{split}.txt``. Each image is fitted to ``image_size`` (default 84) as Chen
et al.'s evaluation transform does: resized to a square of ``1.15 * image_size`` and center-cropped
(:func:`metahyper.data.storage.fit_image`); torchmeta's CUB cache instead keeps the original JPEG
bytes, and the reader fits those the same way, so both caches give the same pixels. Writes
``cub/{split}_data.hdf5`` (``datasets/<NNN.Name>``, uint8 (n, S, S, 3), images in file-name order
as torchmeta) and ``cub/{split}_labels.json``.

``md-cub`` (:func:`build_md_cub`) reads the extracted release into Meta-Dataset's split.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from metahyper.data.layouts import SPLITS, read_split_file
from metahyper.data.sources.common import (
    BROKEN_ARCHIVE,
    MAX_FILE_BYTES,
    broken_archive,
    check_read_sizes,
    download_file,
    outside_layout,
    resolve_source,
    tar_files,
    validate_classes,
)
from metahyper.data.sources.meta_dataset import build_md_source, release_folder
from metahyper.data.storage import fit_image
from metahyper.data.writing import check_memory, check_writable, estimate_size, write_splits
from metahyper.errors import UserError
from metahyper.io import check_free_space
from metahyper.progress import progress_bar

ARCHIVE = "CUB_200_2011.tgz"
URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
MD5 = "97eceeb196236b17998738112f37df78"
CROP = 1.15  # Chen et al. 2019: Resize([int(1.15 * S)] * 2), then CenterCrop(S)
IMAGES = 11788
FIX = "pass the official CUB_200_2011.tgz (or its extracted CUB_200_2011 folder), or use --download"


def split_classes(split: str) -> list[str]:
    """Chen et al.'s CUB classes of ``split`` (``NNN.Name`` folder names)."""
    return read_split_file(f"cub/{split}.txt")


def download_archive(root: Path) -> Path:
    """Download the official tgz from CaltechDATA with torchvision (md5-checked); returns it."""
    return download_file(URL, root / "downloads", ARCHIVE, MD5, f"download {ARCHIVE} by hand and pass --source FILE")


def _fit(payload: bytes, size: int, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            return fit_image(image, size, CROP)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise UserError(f"{what} cannot be decoded ({type(err).__name__}: {err}); {FIX}") from None


class _Reader:
    """Collects the fitted images, images.txt and classes.txt from the tgz or a folder."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: dict[str, dict[str, np.ndarray]] = {}  # class -> file name -> image
        self.texts: dict[str, str] = {}

    def add(self, relative: PurePosixPath, payload: bytes, what: str) -> None:
        """One file at ``relative`` (a path under ``CUB_200_2011/``)."""
        parts = relative.parts
        if parts and parts[0] == "images" and len(parts) == 3 and parts[2].lower().endswith(".jpg"):
            self.images.setdefault(parts[1], {})[parts[2]] = _fit(payload, self.size, what)
        elif relative.as_posix() in ("images.txt", "classes.txt"):
            self.texts[relative.as_posix()] = payload.decode("utf-8", errors="replace")

    def from_tar(self, path: Path) -> None:
        """Every member under ``CUB_200_2011/`` that the cache uses; the headers are checked first
        (layout: ``CUB_200_2011/...`` and top-level files such as ``attributes.txt``; sizes)."""
        try:
            with tarfile.open(path, "r:*") as tar:
                files = tar_files(tar, path, FIX)
                used = {}
                for name, member in files.items():
                    if len(name.parts) > 1 and name.parts[0] != "CUB_200_2011":
                        raise outside_layout(path, name, "CUB_200_2011/... and top-level files", FIX)
                    relative = PurePosixPath(*name.parts[1:])
                    if relative.parts[:1] == ("images",) or relative.as_posix() in ("images.txt", "classes.txt"):
                        used[relative] = member
                largest = max(used.values(), key=lambda m: m.size, default=None)
                if largest is not None:
                    check_read_sizes(path, {largest.name: largest.size}, MAX_FILE_BYTES, FIX)
                with progress_bar(desc="cub", unit="img", total=IMAGES) as bar:
                    for relative, member in used.items():  # archive order: one more pass, no seeking back
                        self.add(relative, tar.extractfile(member).read(), f"{path}:{member.name}")
                        bar.update(relative.parts[0] == "images")
        except BROKEN_ARCHIVE as err:
            raise broken_archive(path, err, FIX) from None

    def from_folder(self, folder: Path) -> None:
        files = sorted(folder.glob("images/*/*")) + [folder / "images.txt", folder / "classes.txt"]
        for path in progress_bar(files, desc="cub", unit="img"):
            if path.is_file():
                self.add(PurePosixPath(path.relative_to(folder).as_posix()), path.read_bytes(), str(path))


def _listed(text: str, what: str) -> list[str]:
    """Second column of images.txt / classes.txt (``<id> <value>`` lines)."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if any(len(row) != 2 for row in rows):
        raise UserError(f"{what} is not '<id> <name>' lines; {FIX}")
    return [row[1] for row in rows]


def _read_source(source: Path, image_size: int) -> _Reader:
    """Every image and text file of the release at ``source``: the archive, its extracted folder,
    or a folder holding either."""
    reader = _Reader(image_size)
    if source.is_file():
        reader.from_tar(source)
    elif (source / "CUB_200_2011" / "images").is_dir():
        reader.from_folder(source / "CUB_200_2011")
    elif (source / "images").is_dir():
        reader.from_folder(source)
    elif (source / ARCHIVE).is_file():
        reader.from_tar(source / ARCHIVE)
    else:
        raise UserError(f"{source} holds neither {ARCHIVE} nor CUB_200_2011/images/; {FIX}")
    return reader


def _check_listing(reader: _Reader, source: Path, strict: bool) -> None:
    """images.txt and classes.txt are there and agree with the images read; ``strict``: the
    release's 200 classes and 11,788 images."""
    for name in ("images.txt", "classes.txt"):
        if name not in reader.texts:
            raise UserError(f"{source} has no CUB_200_2011/{name}; {FIX}")
    listed = _listed(reader.texts["images.txt"], f"{source}: images.txt")
    missing = [p for p in listed if PurePosixPath(p).name not in reader.images.get(PurePosixPath(p).parent.name, {})]
    if missing:
        raise UserError(
            f"{source}: {len(missing)} images listed in images.txt are missing (e.g. {missing[0]}); "
            f"the archive is truncated or incomplete; {FIX}"
        )
    class_list = _listed(reader.texts["classes.txt"], f"{source}: classes.txt")
    if strict and (len(class_list) != 200 or len(listed) != IMAGES):
        raise UserError(
            f"{source}: {len(class_list)} classes and {len(listed)} images instead of 200 and {IMAGES}; {FIX}"
        )
    for cls in reader.images:
        if cls not in class_list:
            raise UserError(f"{source}: image folder {cls} is not in classes.txt; {FIX}")


def _split(reader: _Reader, source: Path, image_size: int, strict: bool) -> dict[str, dict[str, np.ndarray]]:
    """The images of each split, checked (:func:`validate_classes`); every class in one split."""
    splits = {}
    for split in SPLITS:
        expected = split_classes(split)
        got = {c: np.stack([imgs[n] for n in sorted(imgs)]) for c, imgs in reader.images.items() if c in expected}
        validate_classes(
            f"CUB {split} source {source}", got, expected if strict else None, None, (image_size, image_size), FIX
        )
        if not got:
            raise UserError(f"CUB source {source} has no class of the {split} split; {FIX}")
        splits[split] = got
    stray = sorted(set(reader.images) - {c for got in splits.values() for c in got})
    if stray:
        raise UserError(f"CUB source {source}: classes {', '.join(stray[:3])} are in no split; {FIX}")
    return splits


def build_cub(
    root: Path,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
) -> list[Path]:
    """Build the three CUB splits. ``strict``: the 200 classes and 11,788 images of the release;
    otherwise the classes present must belong to their split (tiny test sources)."""
    if image_size < 1:
        raise UserError(f"--image-size must be a positive number of pixels, got {image_size}")
    outputs = [root / "cub" / f"{s}_{x}" for s in SPLITS for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, "cub")
    check_memory(IMAGES * image_size**2 * 3, f"cub at {image_size} px", "use a smaller --image-size")
    check_free_space(root, estimate_size(3, 200, IMAGES * image_size**2 * 3), "the cub cache")
    source = resolve_source(source, FIX, (lambda: download_archive(root)) if download else None)
    reader = _read_source(source, image_size)
    _check_listing(reader, source, strict)
    splits = _split(reader, source, image_size, strict)
    write_splits(root, {("cub", split): (classes, sorted(classes)) for split, classes in splits.items()})  # all or none
    return outputs


MD_NAME, MD_SOURCE = "md-cub", "cu_birds"
MD_FIX = f"extract {ARCHIVE} ({URL}) and pass its CUB_200_2011 folder"


def md_classes(top: Path) -> dict[str, list[tuple[Path, None]]]:
    """``{NNN.Name: [(image, None), ...]}``: the images ``images.txt`` of the extracted release's
    folder ``top`` lists, each class's in file-name order."""
    listed = _listed((top / "images.txt").read_text(encoding="utf-8", errors="replace"), f"{top}/images.txt")
    classes: dict[str, list[tuple[Path, None]]] = {}
    for relative in sorted(listed):
        parts = PurePosixPath(relative).parts
        if len(parts) != 2:
            raise UserError(f"{top}/images.txt lists {relative!r}, not <class>/<image>; {MD_FIX}")
        classes.setdefault(parts[0], []).append((top / "images" / parts[0] / parts[1], None))
    return classes


def build_md_cub(
    root: Path, source: str | Path | None = None, force: bool = False, strict: bool = True, image_size: int = 84
) -> list[Path]:
    """Build ``md-cub``: CUB-200-2011 with Meta-Dataset's 140 / 30 / 30 split, whole images resized
    to ``image_size`` square (no crop, aspect ratio not kept, as Meta-Dataset;
    :func:`~metahyper.data.sources.meta_dataset.build_md_source`). ``strict``: the specification's
    200 classes and 11,788 images; otherwise any classes of its split file (tiny test sources)."""
    top = release_folder(resolve_source(source, MD_FIX), "images.txt", "CUB_200_2011", MD_FIX)
    return build_md_source(root, MD_NAME, MD_SOURCE, md_classes(top), image_size, force, strict)
