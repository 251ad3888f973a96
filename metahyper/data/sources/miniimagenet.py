"""MiniImageNet cache (Vinyals et al. 2016, Ravi & Larochelle 2017 split) in torchmeta's layout.

Accepted sources (``metahyper prepare miniimagenet --source PATH``):

a. ``mini-imagenet.tar.gz`` (the pickles at its top) or a folder with
   ``mini-imagenet-cache-{train,val,test}.pkl``: dicts with ``image_data`` uint8 (N, 84, 84, 3) and
   ``class_dict`` {wnid: row indices};
b. learn2learn's ``mini-imagenet-cache-{train,validation,test}.pkl`` (same dict format);
c. a folder with the Ravi & Larochelle CSVs ``{train,val,test}.csv`` (``filename,label`` rows) and the
   images they name (in ``images/``, the folder itself, or ``<wnid>/``), resized to 84x84 with PIL
   LANCZOS as the original MAML ``proc_images.py`` did.

Writes ``miniimagenet/{split}_data.hdf5`` (``datasets/<wnid>``, (600, 84, 84, 3) uint8) and
``miniimagenet/{split}_labels.json`` (sorted wnids). Class membership is checked against the shipped
lists ``datasets/splits/miniimagenet/{split}.txt`` (64 / 16 / 20 classes).
"""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from metahyper.data.layouts import SPLITS, read_split_file
from metahyper.data.sources.common import (
    check_read_sizes,
    load_pickle,
    outside_layout,
    resolve_source,
    tar_files,
    validate_classes,
)
from metahyper.data.storage import MAX_IMAGE_PIXELS, to_8bit
from metahyper.data.writing import check_writable, estimate_size, write_splits
from metahyper.errors import UserError
from metahyper.io import check_free_space, read_csv
from metahyper.progress import progress_bar

IMAGE_SIZE = 84
PER_CLASS = 600
PICKLE_BYTES = 100 * PER_CLASS * IMAGE_SIZE * IMAGE_SIZE * 3  # the images of the three cache pickles
MAX_SOURCE_PIXELS = MAX_IMAGE_PIXELS  # per source image; ImageNet's largest are about 20 MP
_BROKEN_ARCHIVE = (tarfile.TarError, EOFError, zlib.error, OSError)  # what a cut or damaged .tar.gz raises
PICKLE_NAMES = {
    "torchmeta": {s: f"mini-imagenet-cache-{s}.pkl" for s in SPLITS},
    "learn2learn": {
        "train": "mini-imagenet-cache-train.pkl",
        "val": "mini-imagenet-cache-validation.pkl",
        "test": "mini-imagenet-cache-test.pkl",
    },
}


def split_classes(split: str) -> list[str]:
    """The shipped Ravi & Larochelle wnids of ``split``."""
    return read_split_file(f"miniimagenet/{split}.txt")


def _parse_cache_pickle(obj: object, what: str) -> dict[str, np.ndarray]:
    """Validate a ``{'image_data', 'class_dict'}`` pickle and group its images by wnid."""
    if not isinstance(obj, dict) or "image_data" not in obj or "class_dict" not in obj:
        raise UserError(f"{what} is not a MiniImageNet cache pickle (expected a dict with image_data and class_dict)")
    images, class_dict = obj["image_data"], obj["class_dict"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(
            f"{what}: image_data is {getattr(images, 'shape', type(images).__name__)} "
            f"{getattr(images, 'dtype', '')}, expected uint8 (N, 84, 84, 3)"
        )
    if not isinstance(class_dict, dict):
        raise UserError(f"{what}: class_dict is a {type(class_dict).__name__}, expected a dict wnid -> indices")
    out = {}
    for wnid, rows in class_dict.items():
        rows = np.asarray(rows)
        if (
            not isinstance(wnid, str)
            or rows.ndim != 1
            or rows.dtype.kind not in "iu"
            or (rows.size and (rows.min() < 0 or rows.max() >= len(images)))
        ):
            raise UserError(f"{what}: class_dict entry {wnid!r} is not a wnid with valid row indices")
        out[wnid] = images[rows]
    return out


def _find_pickles(source: Path) -> dict[str, object] | None:
    """Per split, a path or tar member holding its cache pickle; None when there are none. In a
    tar, the pickles lie at its top and nothing lies deeper; their sizes (from the headers) are
    checked before any is read."""
    if source.is_file():
        fix = "pass mini-imagenet.tar.gz, the folder of the pickles, or a folder of images with the Ravi CSVs"
        try:
            tar = tarfile.open(source, "r:*")
            members = tar_files(tar, source, fix)
        except _BROKEN_ARCHIVE as err:
            raise UserError(
                f"{source} is truncated or not a readable mini-imagenet.tar.gz ({err}); re-download it"
            ) from None
        for path in members:
            if len(path.parts) != 1:
                raise outside_layout(source, path, "mini-imagenet-cache-<split>.pkl at the top", fix)
        for names in PICKLE_NAMES.values():
            if all(PurePosixPath(n) in members for n in names.values()):
                found = {s: members[PurePosixPath(n)] for s, n in names.items()}
                check_read_sizes(source, {m.name: m.size for m in found.values()}, 3 * PICKLE_BYTES // 2, fix)
                return {s: (tar, m) for s, m in found.items()}
        raise UserError(f"{source} holds no mini-imagenet-cache-{{train,val,test}}.pkl files; {fix}")
    for names in PICKLE_NAMES.values():
        if all((source / n).is_file() for n in names.values()):
            return {s: source / n for s, n in names.items()}
    return None


def _load_pickle_split(where: object, split: str) -> dict[str, np.ndarray]:
    if isinstance(where, tuple):
        tar, member = where
        what = f"{tar.name}:{member.name}"
        try:
            payload = tar.extractfile(member).read()
        except _BROKEN_ARCHIVE as err:
            raise UserError(
                f"{tar.name} is truncated or corrupt ({type(err).__name__}: {err}); re-download it"
            ) from None
        obj = load_pickle(io.BytesIO(payload), what, encoding="latin1")
    else:
        what = str(where)
        with open(where, "rb") as f:
            obj = load_pickle(f, what, encoding="latin1")
    return _parse_cache_pickle(obj, what)


def _read_csv(path: Path) -> dict[str, list[str]]:
    """Ravi & Larochelle CSV -> {wnid: [filename, ...]} in file order."""
    by_class: dict[str, list[str]] = {}
    fix = "give the Ravi & Larochelle split CSVs (a 'filename,label' header, then one image per row)"
    for row in read_csv(path, "split CSV", fix, columns=("filename", "label")):
        if None in row or None in row.values() or len(row) != 2:
            raise UserError(f"{path}: bad row {list(row.values())!r}; expected filename,label")
        by_class.setdefault(row["label"].strip(), []).append(row["filename"].strip())
    return by_class


def _load_image(path: Path) -> np.ndarray:
    """One source image as uint8 (84, 84, 3); its size is read from the header and checked
    before the pixels are decoded (a decompression bomb is refused, not allocated)."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_SOURCE_PIXELS:
                raise UserError(
                    f"image {path} is {im.width}x{im.height} pixels, more than the {MAX_SOURCE_PIXELS:,} "
                    "allowed for a source image; replace or remove it"
                )
            im = to_8bit(im).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, Image.DecompressionBombError, ValueError) as err:
        raise UserError(f"image {path} cannot be read ({type(err).__name__}: {err}); replace or remove it") from None


def _load_image_folder_split(source: Path, split: str) -> dict[str, np.ndarray]:
    csv_path = source / f"{split}.csv"
    by_class = _read_csv(csv_path)
    out = {}
    total = sum(map(len, by_class.values()))
    with progress_bar(total=total, desc=f"miniimagenet {split}", unit="img") as bar:
        for wnid, files in by_class.items():
            arrays = []
            for name in files:
                for path in (source / "images" / name, source / name, source / wnid / name):
                    if path.is_file():
                        break
                else:
                    raise UserError(
                        f"image {name} listed in {csv_path} not found in {source}/images, {source} or {source}/{wnid}; "
                        "pass the folder that holds the images named in the CSVs"
                    )
                arrays.append(_load_image(path))
                bar.update(1)
            out[wnid] = np.stack(arrays)
    return out


def build_miniimagenet(root: Path, source: str | Path, force: bool = False, strict: bool = True) -> list[Path]:
    """Build the three MiniImageNet splits. ``strict``: exactly the shipped classes, 600 images each;
    otherwise classes must be a subset of the shipped split's (tiny test sources)."""
    outputs = [root / "miniimagenet" / f"{s}_{x}" for s in SPLITS for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, "miniimagenet")
    check_free_space(
        root,
        estimate_size(3, 100, 100 * PER_CLASS * IMAGE_SIZE * IMAGE_SIZE * 3) if strict else 0,
        "the miniimagenet cache",
    )
    source = resolve_source(
        source, "pass mini-imagenet.tar.gz, the pickles' folder or an image folder with the Ravi CSVs"
    )
    pickles = _find_pickles(source)
    if pickles is None and not all((source / f"{s}.csv").is_file() for s in SPLITS):
        raise UserError(
            f"source folder {source} has neither mini-imagenet-cache-{{train,val,test}}.pkl "
            "(or learn2learn's ...-validation.pkl) nor the Ravi & Larochelle CSVs train.csv, val.csv, test.csv; "
            "put the CSVs next to the images (see datasets/splits/README.md)"
        )
    splits = {}
    for split in progress_bar(SPLITS, desc="miniimagenet", unit="split", disable=pickles is None):
        classes = _load_pickle_split(pickles[split], split) if pickles else _load_image_folder_split(source, split)
        expected = split_classes(split)
        extra = sorted(set(classes) - set(expected))
        if not strict and extra:
            raise UserError(
                f"MiniImageNet {split} source {source}: {len(extra)} classes not in the Ravi & Larochelle "
                f"{split} split (e.g. {', '.join(extra[:3])}); use the standard split files"
            )
        validate_classes(
            f"MiniImageNet {split} source {source}",
            classes,
            expected if strict else None,
            PER_CLASS if strict else None,
            (IMAGE_SIZE, IMAGE_SIZE),
            "use the standard 64/16/20-class, 600-image release",
        )
        splits[split] = classes
    write_splits(root, {("miniimagenet", split): (classes, sorted(classes)) for split, classes in splits.items()})
    return outputs
