"""Meta-Dataset (Triantafillou et al., ICLR 2020): its own class splits and dataset specifications,
and what its sources' builders share.

Meta-Dataset's files ship unchanged under ``splits/meta-dataset/`` (Apache-2.0, ``LICENSE`` beside
them; :func:`metahyper.data.layouts.splits_dir`):

* ``splits/<source>_splits.json``: ``{"train": [...], "valid": [...], "test": [...]}`` class names
  (:func:`md_splits`);
* ``dataset_specs/<source>_dataset_spec.json``: ``class_names`` and ``images_per_class``, both
  ``{class id: ...}``, of every class its conversion wrote (:func:`spec_counts`;
  :func:`check_spec_counts` checks counts against it, :func:`check_cache_counts` a built cache).

``source`` is Meta-Dataset's name of a source (``aircraft``, ``dtd``, ``vgg_flower``,
``traffic_sign``, ``quickdraw``, ...). A builder lists its release's images per class first, checks
the classes and their image counts against the specification (:func:`check_spec_counts`), and only
then decodes and writes them (:func:`build_md_source`): ``<root>/<dataset>/{split}_data.hdf5``
(``datasets/<class>``, uint8 (n, S, S, 3)) and ``{split}_labels.json`` (the split file's class
order), for each split that has classes; Meta-Dataset's ``valid`` is metahyper's ``val``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from metahyper.data.layouts import read_split_file
from metahyper.data.sources.folder import MAX_IMAGE_SIZE
from metahyper.data.storage import check_image_size, fit_image
from metahyper.data.writing import check_memory, check_writable, estimate_size, stamp_build, write_classes_hdf5
from metahyper.errors import UserError
from metahyper.io import atomic_files, write_json
from metahyper.progress import progress_bar

MD_SPLITS = ("train", "valid", "test")  # Meta-Dataset's split names, in its class-id order
SPLIT_NAMES = {"train": "train", "valid": "val", "test": "test"}  # Meta-Dataset's -> metahyper's
FIX = "reinstall metahyper or restore datasets/splits/meta-dataset/ from git"
# Meta-Dataset maps every source's pixels to [-1, 1] (x / 127.5 - 1): mean 0.5, std 0.5 per channel
MD_STATS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# Meta-Dataset's eight training sources (its "all sources" setting), the datasets of `--train md-all`
TRAINING_SOURCES = (
    "md-ilsvrc",
    "md-omniglot",
    "md-aircraft",
    "md-cub",
    "md-dtd",
    "md-quickdraw",
    "md-fungi",
    "md-vgg-flower",
)

Box = tuple[int, int, int, int]  # (left, upper, right, lower), PIL's crop box
ImageFile = tuple[Path, Box | None]  # an image of a class, and the box it is cropped to (or None)


def md_splits(source: str) -> dict[str, list[str]]:
    """Meta-Dataset's ``train`` / ``valid`` / ``test`` class names of ``source``, in the file's
    order (an empty list for a split without classes); a one-line :class:`UserError` when the file
    is missing or malformed."""
    data = read_split_file(f"meta-dataset/splits/{source}_splits.json")
    lists = [data.get(s, []) for s in MD_SPLITS] if isinstance(data, dict) else None
    if lists is None or any(not isinstance(x, list) or not all(isinstance(c, str) for c in x) for x in lists):
        raise UserError(f"Meta-Dataset split file of {source} is not {{train|valid|test: [class, ...]}}; {FIX}")
    return dict(zip(MD_SPLITS, lists))


def spec_counts(source: str) -> dict[str, int]:
    """``{class name: images}`` of ``source`` as Meta-Dataset's dataset specification records them,
    in class-id order."""
    spec = read_split_file(f"meta-dataset/dataset_specs/{source}_dataset_spec.json")
    names = spec.get("class_names") if isinstance(spec, dict) else None
    counts = spec.get("images_per_class") if isinstance(spec, dict) else None
    if not isinstance(names, dict) or not isinstance(counts, dict) or set(names) != set(counts):
        raise UserError(f"Meta-Dataset specification of {source} lacks class_names / images_per_class; {FIX}")
    try:
        return {str(names[i]): int(counts[i]) for i in sorted(names, key=int)}
    except (TypeError, ValueError):
        raise UserError(f"Meta-Dataset specification of {source} has a non-integer class id or count; {FIX}") from None


def check_spec_counts(dataset: str, source: str, counts: dict[str, int]) -> None:
    """``counts`` (``{class name: images}`` of a cache of ``dataset`` built from Meta-Dataset source
    ``source``, or about to be written) must hold exactly the specification's classes, each with its
    image count; otherwise a one-line :class:`UserError` naming the first class that differs
    (missing, with another count, or not in the specification)."""
    expected = spec_counts(source)
    fix = f"the {source} source is incomplete or not the official release; pass the complete release"
    for name, count in expected.items():
        if name not in counts:
            raise UserError(f"{dataset}: class {name!r} of Meta-Dataset's {source} specification is missing; {fix}")
        if counts[name] != count:
            raise UserError(
                f"{dataset}: class {name!r} has {counts[name]} images where Meta-Dataset's {source} specification "
                f"has {count}; {fix}"
            )
    extra = [name for name in counts if name not in expected]
    if extra:
        raise UserError(f"{dataset}: class {extra[0]!r} is not in Meta-Dataset's {source} specification; {fix}")


def check_cache_counts(dataset: str, source: str, root: str | Path | None = None) -> None:
    """:func:`check_spec_counts` on the built cache of ``dataset`` under ``root`` (default: the
    cache root): the classes and images per class of all its splits, read from what the HDF5
    files declare (no pixel is read)."""
    from metahyper.data.cache import open_split  # they import the registry, which imports this module
    from metahyper.data.registry import layout_for

    counts: dict[str, int] = {}
    for split in layout_for(dataset, root).splits:
        data = open_split(dataset, split, root=root)
        counts.update((name, data.images_per_class(c)) for c, name in enumerate(data.classes))
        data.close()
    check_spec_counts(dataset, source, counts)


def release_folder(source: Path, marker: str, top: str, fix: str) -> Path:
    """The release's top folder: ``source`` itself when it holds ``marker`` (a relative path), else
    ``source/top`` when that does; a one-line :class:`UserError` ending in ``fix`` otherwise."""
    for folder in (source, source / top):
        if (folder / marker).exists():
            return folder
    raise UserError(f"{source} holds neither {marker} nor {top}/{marker}; {fix}")


def folder_files(folder: Path, skip: Sequence[str] = ()) -> list[Path]:
    """The files of ``folder`` in sorted order, as Meta-Dataset's conversion lists a class folder
    (subfolders, hidden files and the names in ``skip`` left out)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in skip)


def load_image(path: Path, size: int, box: Box | None = None) -> np.ndarray:
    """One image file as uint8 (size, size, 3): cropped to ``box`` when given (as Meta-Dataset's
    conversion crops with PIL: a box reaching past the image's edge is filled with black), then
    converted to RGB and resized to a square with LANCZOS (:func:`fit_image`); a one-line
    :class:`UserError` naming the file when it cannot be read, declares too many pixels, or the box
    is empty or starts outside it."""
    what, fix = f"image {path}", "replace it from the release"
    try:
        with Image.open(path) as image:
            check_image_size(*image.size, what)
            width, height = image.size
            if box is not None and not (0 <= box[0] < min(box[2], width) and 0 <= box[1] < min(box[3], height)):
                raise UserError(f"{what}: box {box} is empty or outside its {width}x{height} pixels; {fix}")
            image.load()
            return fit_image(image if box is None else image.crop(box), size)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise UserError(f"{what} cannot be decoded ({type(err).__name__}: {err}); {fix}") from None


def _chosen(
    dataset: str, source: str, classes: Mapping[str, Sequence[ImageFile]], strict: bool
) -> dict[str, list[str]]:
    """``{metahyper split: class names}`` of the splits that have classes; ``strict``: every class
    and image count of the specification (:func:`check_spec_counts`), else every class listed in
    Meta-Dataset's split file (tiny test sources)."""
    if not classes:
        raise UserError(f"{dataset}: the source holds no class of Meta-Dataset's {source} split file")
    splits = md_splits(source)
    if strict:
        check_spec_counts(dataset, source, {c: len(files) for c, files in classes.items()})
    groups = {"/".join(c.split("/")[:i]) for c in classes for i in range(1, c.count("/") + 1)}
    nested = [c for c in classes if c in groups or {"", "."} & set(c.split("/"))]
    if nested:  # a '/' in a name makes HDF5 groups (traffic signs' "km/h"): no name may be another's group
        raise UserError(f"{dataset}: class name {nested[0]!r} cannot be an HDF5 path; rename the class")
    known = {c for names in splits.values() for c in names}
    stray = [c for c in classes if c not in known]
    if stray:
        raise UserError(f"{dataset}: class {stray[0]!r} is in no split of Meta-Dataset's {source} split file")
    empty = [c for c, files in classes.items() if not files]
    if empty:
        raise UserError(f"{dataset}: class {empty[0]!r} has no image; pass the complete release")
    missing = next((path for files in classes.values() for path, _ in files if not path.is_file()), None)
    if missing is not None:
        raise UserError(f"{dataset}: image {missing} is missing; pass the complete release")
    chosen = {SPLIT_NAMES[s]: [c for c in names if c in classes] for s, names in splits.items()}
    return {split: names for split, names in chosen.items() if names}


def _class_images(
    names: list[str], classes: Mapping[str, Sequence[ImageFile]], size: int, bar
) -> Iterator[tuple[str, np.ndarray]]:
    """``(datasets/<class>, uint8 (n, S, S, 3))`` one class at a time, in ``names`` order."""
    for name in names:
        images = np.empty((len(classes[name]), size, size, 3), dtype=np.uint8)
        for j, (path, box) in enumerate(classes[name]):
            images[j] = load_image(path, size, box)
            bar.update(1)
        yield f"datasets/{name}", images


def build_md_source(
    root: Path,
    dataset: str,
    source: str,
    classes: Mapping[str, Sequence[ImageFile]],
    image_size: int,
    force: bool,
    strict: bool = True,
) -> list[Path]:
    """Write the cache of ``dataset`` (a Meta-Dataset source, ``source``) from ``classes``
    (``{class name: [(image file, crop box or None), ...]}``, images in the order they are stored);
    returns the files written. The image size, the classes and counts (:func:`_chosen`), an existing
    cache (without ``force``), the memory of one class and the disk space are checked before any
    image is read; one class is in memory at a time, and every file replaces the old one together
    at the end, so a failed build leaves an existing cache as it was."""
    if not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise UserError(f"--image-size {image_size} is outside 1..{MAX_IMAGE_SIZE}; pick a size in that range")
    chosen = _chosen(dataset, source, classes, strict)
    outputs = [root / dataset / f"{split}_{x}" for split in chosen for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, dataset)
    image = image_size * image_size * 3
    largest = max((c for names in chosen.values() for c in names), key=lambda c: len(classes[c]))
    check_memory((len(classes[largest]) + 8) * image, f"{dataset} at {image_size} px", "use a smaller --image-size")
    total = sum(len(classes[c]) for names in chosen.values() for c in names)
    size = estimate_size(len(chosen), sum(map(len, chosen.values())), total * image)
    with atomic_files(outputs, size=size) as tmps, progress_bar(total=total, desc=dataset, unit="img") as bar:
        for i, names in enumerate(chosen.values()):
            write_classes_hdf5(tmps[2 * i], _class_images(names, classes, image_size, bar))
            write_json(tmps[2 * i + 1], names)
        stamp_build(dict(zip(outputs, tmps)))
    return outputs
