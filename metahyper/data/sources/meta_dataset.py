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
``traffic_sign``, ``quickdraw``, ...). Two sources have no split file: Omniglot's splits are
alphabets (the specification's ``superclasses_per_split``: the first 25 alphabets train, the next 5
valid, the last 20 test), and ILSVRC-2012's are the leaves of each split's WordNet subgraph
(``split_subgraphs``), their image counts in ``ilsvrc_2012_num_leaf_images.json``.

A builder lists its release's images per class first, checks
the classes and their image counts against the specification (:func:`check_spec_counts`), and only
then decodes and writes them (:func:`build_md_source`): ``<root>/<dataset>/{split}_data.hdf5``
(``datasets/<class>``, uint8 (n, S, S, 3)) and ``{split}_labels.json`` (the split file's class
order), for each split that has classes; Meta-Dataset's ``valid`` is metahyper's ``val``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from metahyper.data.layouts import read_split_file
from metahyper.data.sources.common import tar_members
from metahyper.data.sources.folder import MAX_IMAGE_SIZE
from metahyper.data.storage import check_image_size, fit_image
from metahyper.data.writing import (
    check_memory,
    check_writable,
    estimate_size,
    stamp_build,
    write_chunked_hdf5,
    write_rows_hdf5,
)
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

SPECS = "meta-dataset/dataset_specs"
SPEC_SPLITS = ("TRAIN", "VALID", "TEST")  # the specification's names of MD_SPLITS


class Member(NamedTuple):
    """An image inside an archive: ``name`` (``archive:member``, for messages) and ``read``, which
    returns its bytes."""

    name: str
    read: Callable[[], bytes]

    def __str__(self) -> str:
        return self.name


Box = tuple[int, int, int, int]  # (left, upper, right, lower), PIL's crop box
ImageFile = tuple[Path | Member, Box | None]  # an image of a class, and the box it is cropped to (or None)


def _spec(source: str) -> dict:
    spec = read_split_file(f"{SPECS}/{source}_dataset_spec.json")
    if not isinstance(spec, dict) or not isinstance(spec.get("class_names"), dict):
        raise UserError(f"Meta-Dataset specification of {source} lacks class_names; {FIX}")
    return spec


def _class_ids(spec: dict, source: str) -> list[str]:
    """The specification's class names in class-id order."""
    try:
        return [str(spec["class_names"][i]) for i in sorted(spec["class_names"], key=int)]
    except (TypeError, ValueError):
        raise UserError(f"Meta-Dataset specification of {source} has a non-integer class id; {FIX}") from None


def _omniglot_splits() -> list[list[str]]:
    """Omniglot's characters of each split: its alphabets in id order, ``superclasses_per_split`` of
    them per split, each alphabet's ``classes_per_superclass`` characters in class-id order."""
    spec = _spec("omniglot")
    names = _class_ids(spec, "omniglot")
    try:
        sizes = [int(spec["classes_per_superclass"][k]) for k in sorted(spec["classes_per_superclass"], key=int)]
        per_split = [int(spec["superclasses_per_split"][s]) for s in SPEC_SPLITS]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"Meta-Dataset specification of omniglot lacks its alphabets per split; {FIX}") from None
    ends = np.cumsum([0, *sizes])
    bounds = np.cumsum([0, *per_split])
    return [names[ends[bounds[i]] : ends[bounds[i + 1]]] for i in range(len(SPEC_SPLITS))]


def _ilsvrc_splits() -> list[list[str]]:
    """ILSVRC-2012's leaves of each split's WordNet subgraph, in class-id order."""
    spec = _spec("ilsvrc_2012")
    names = _class_ids(spec, "ilsvrc_2012")
    try:
        leaves = [{n["wn_id"] for n in spec["split_subgraphs"][s] if not n["children_ids"]} for s in SPEC_SPLITS]
    except (KeyError, TypeError):
        raise UserError(f"Meta-Dataset specification of ilsvrc_2012 lacks its split subgraphs; {FIX}") from None
    return [[c for c in names if c in split] for split in leaves]


_DERIVED_SPLITS = {"omniglot": _omniglot_splits, "ilsvrc_2012": _ilsvrc_splits}  # sources without a split file


def md_splits(source: str) -> dict[str, list[str]]:
    """Meta-Dataset's ``train`` / ``valid`` / ``test`` class names of ``source``, in the file's
    order (an empty list for a split without classes; Omniglot and ILSVRC-2012 from their
    specifications, in class-id order); a one-line :class:`UserError` when the file is missing or
    malformed."""
    if source in _DERIVED_SPLITS:
        return dict(zip(MD_SPLITS, _DERIVED_SPLITS[source]()))
    data = read_split_file(f"meta-dataset/splits/{source}_splits.json")
    lists = [data.get(s, []) for s in MD_SPLITS] if isinstance(data, dict) else None
    if lists is None or any(not isinstance(x, list) or not all(isinstance(c, str) for c in x) for x in lists):
        raise UserError(f"Meta-Dataset split file of {source} is not {{train|valid|test: [class, ...]}}; {FIX}")
    return dict(zip(MD_SPLITS, lists))


def spec_counts(source: str) -> dict[str, int]:
    """``{class name: images}`` of ``source`` as Meta-Dataset's dataset specification records them,
    in class-id order (for ``ilsvrc_2012``: its 1,000 leaves, counted in its
    ``num_leaf_images`` file)."""
    if source == "ilsvrc_2012":
        leaves = read_split_file(f"{SPECS}/ilsvrc_2012_num_leaf_images.json")
        return {c: int(leaves[c]) for c in _class_ids(_spec(source), source) if c in leaves}
    spec = read_split_file(f"{SPECS}/{source}_dataset_spec.json")
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


def release_folder(source: Path, marker: str, top: str, fix: str, archive: str | None = None) -> Path:
    """The release's top folder: ``source`` itself when it holds ``marker`` (a relative path), else
    ``source/top`` when that does. With ``archive`` (the release archive's file name) it may also be
    the archive, read in place: ``source`` when it is a file, else ``source/archive`` when no folder
    holds ``marker``. A one-line :class:`UserError` ending in ``fix`` otherwise."""
    if archive is not None and source.is_file():
        return source
    for folder in (source, source / top):
        if (folder / marker).exists():
            return folder
    if archive is not None and (source / archive).is_file():
        return source / archive
    also = f" nor {archive}" if archive is not None else ""
    raise UserError(f"{source} holds neither {marker} nor {top}/{marker}{also}; {fix}")


def folder_files(folder: Path, skip: Sequence[str] = ()) -> list[Path]:
    """The files of ``folder`` in sorted order, as Meta-Dataset's conversion lists a class folder
    (subfolders, hidden files and the names in ``skip`` left out)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in skip)


def load_image(path: Path, size: int, box: Box | None = None) -> np.ndarray:
    """One image file (or archive :class:`Member`) as uint8 (size, size, 3): cropped to ``box``
    when given (as Meta-Dataset's conversion crops with PIL: a box reaching past the image's edge
    is filled with black), then converted to RGB and resized to a square with LANCZOS (:func:`fit_image`); a one-line
    :class:`UserError` naming the file when it cannot be read, declares too many pixels, or the box
    is empty or starts outside it."""
    what, fix = f"image {path}", "replace it from the release"
    try:
        with Image.open(io.BytesIO(path.read()) if isinstance(path, Member) else path) as image:
            check_image_size(*image.size, what)
            width, height = image.size
            if box is not None and not (0 <= box[0] < min(box[2], width) and 0 <= box[1] < min(box[3], height)):
                raise UserError(f"{what}: box {box} is empty or outside its {width}x{height} pixels; {fix}")
            image.load()
            return fit_image(image if box is None else image.crop(box), size)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise UserError(f"{what} cannot be decoded ({type(err).__name__}: {err}); {fix}") from None


Items = Sequence  # a class's images as its source lists them: files, archive members, memory-mapped rows
Reader = Callable[[Items, int], np.ndarray]  # (some items of a class, S) -> uint8 (k, S, S[, 3]) images
Rows = Callable[[Mapping[str, Items], int], Iterator[tuple[str, int, np.ndarray]]]  # -> (class, row, image)


def tar_rows(archive: Path, fix: str) -> Rows:
    """The :data:`Rows` of a release read in place from the tar ``archive`` (any compression): the
    items are ``(member path, box)`` pairs (paths as :func:`~metahyper.data.sources.common.tar_listing`
    gives them), each read in one streamed pass in the archive's order and decoded as
    :func:`load_image` decodes a file, so the cache holds the same bytes as one built from the
    extracted folder; memory holds one member and one image."""

    def rows(classes: Mapping[str, Items], size: int) -> Iterator[tuple[str, int, np.ndarray]]:
        where = {path: (name, row, box) for name, items in classes.items() for row, (path, box) in enumerate(items)}
        for path, payload in tar_members(archive, where, fix):
            name, row, box = where[path]
            yield name, row, load_image(Member(f"{archive}:{path}", lambda payload=payload: payload), size, box)

    return rows


def _chosen(dataset: str, source: str, classes: Mapping[str, Items], strict: bool, files: bool) -> dict[str, list[str]]:
    """``{metahyper split: class names}`` of the splits that have classes; ``strict``: every class
    and image count of the specification (:func:`check_spec_counts`), else every class listed in
    Meta-Dataset's split file (tiny test sources). ``files``: the items are :data:`ImageFile`
    pairs, each of which must exist."""
    if not classes:
        raise UserError(f"{dataset}: the source holds no class of Meta-Dataset's {source} split file")
    splits = md_splits(source)
    if strict:
        check_spec_counts(dataset, source, {c: len(items) for c, items in classes.items()})
    groups = {"/".join(c.split("/")[:i]) for c in classes for i in range(1, c.count("/") + 1)}
    nested = [c for c in classes if c in groups or {"", "."} & set(c.split("/"))]
    if nested:  # a '/' in a name makes HDF5 groups (traffic signs' "km/h"): no name may be another's group
        raise UserError(f"{dataset}: class name {nested[0]!r} cannot be an HDF5 path; rename the class")
    known = {c for names in splits.values() for c in names}
    stray = [c for c in classes if c not in known]
    if stray:
        raise UserError(f"{dataset}: class {stray[0]!r} is in no split of Meta-Dataset's {source} split file")
    empty = [c for c, items in classes.items() if not len(items)]
    if empty:
        raise UserError(f"{dataset}: class {empty[0]!r} has no image; pass the complete release")
    listed = (path for items in classes.values() for path, _ in items if isinstance(path, Path)) if files else ()
    missing = next((path for path in listed if not path.is_file()), None)
    if missing is not None:
        raise UserError(f"{dataset}: image {missing} is missing; pass the complete release")
    chosen = {SPLIT_NAMES[s]: [c for c in names if c in classes] for s, names in splits.items()}
    return {split: names for split, names in chosen.items() if names}


def read_files(items: Sequence[ImageFile], size: int) -> np.ndarray:
    """The default :data:`Reader`: :func:`load_image` of each ``(file, box)``."""
    return np.stack([load_image(path, size, box) for path, box in items])


def _chunks(items: Items, read: Reader, size: int, chunk: int) -> Iterator[np.ndarray]:
    for start in range(0, len(items), chunk):
        yield read(items[start : start + chunk], size)


def _write(tmps: list[Path], chosen: dict, classes: dict, shape: tuple, read, rows, chunk: int, bar) -> None:
    """The HDF5 file of each split of ``chosen``, one way of :func:`build_md_source`'s three."""
    shapes = [{f"datasets/{c}": (len(classes[c]), *shape) for c in names} for names in chosen.values()]
    if rows is not None:
        keyed = ((f"datasets/{c}", row, image) for c, row, image in rows(classes, shape[0]))
        write_rows_hdf5(tmps, shapes, keyed, bar)
        return
    for tmp, names, keys in zip(tmps, chosen.values(), shapes):
        streams = (_chunks(classes[c], read or read_files, shape[0], chunk) for c in names)
        write_chunked_hdf5(tmp, ((k, s, x) for (k, s), x in zip(keys.items(), streams)), bar)


def md_outputs(root: Path, dataset: str, source: str) -> list[Path]:
    """The cache files of ``dataset``: ``{split}_data.hdf5`` and ``{split}_labels.json`` of each
    split that has classes in Meta-Dataset's split file of ``source``."""
    splits = [SPLIT_NAMES[s] for s, names in md_splits(source).items() if names]
    return [root / dataset / f"{split}_{x}" for split in splits for x in ("data.hdf5", "labels.json")]


def build_md_source(
    root: Path,
    dataset: str,
    source: str,
    classes: Mapping[str, Items] | Callable[[], Mapping[str, Items]],
    image_size: int,
    force: bool,
    strict: bool = True,
    *,
    read: Reader | None = None,
    rows: Rows | None = None,
    channels: int = 3,
    chunk: int = 256,
    max_per_class: int | None = None,
) -> list[Path]:
    """Write the cache of ``dataset`` (Meta-Dataset source ``source``); returns the files written.

    ``classes``: ``{class name: items}``, a class's images in the order they are stored, or a
    function giving it, called after the output paths are checked (an existing cache needs
    ``force``), so that it may read the source's annotations or headers. Then the classes and
    counts (:func:`_chosen`; with ``max_per_class`` the counts checked are the source's and the
    first N items are stored), the memory and the disk space are checked before any image is decoded. Images are uint8
    (S, S, 3), or (S, S) with ``channels=1``, written one way of three:

    * default: items are :data:`ImageFile` pairs (each must exist), read by :func:`read_files`
      ``chunk`` at a time, class after class;
    * ``read``: any items (memory-mapped rows, ...), ``read(items[i:i + chunk], S)`` class after
      class (:func:`~metahyper.data.writing.write_chunked_hdf5`): memory holds one chunk;
    * ``rows``: ``rows(classes, S)`` yields ``(class, row, image)`` in the source's own order, every
      row of the stored classes once (an archive read in one pass, an image decoded once for all
      its crops; :func:`~metahyper.data.writing.write_rows_hdf5`): memory holds one image.

    Every file replaces the old one together at the end, so a failed build leaves an existing
    cache as it was."""
    if not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise UserError(f"--image-size {image_size} is outside 1..{MAX_IMAGE_SIZE}; pick a size in that range")
    if max_per_class is not None and max_per_class < 1:
        raise UserError(f"--max-per-class must be >= 1, got {max_per_class}")
    check_writable(md_outputs(root, dataset, source), force, dataset)
    listed = classes() if callable(classes) else classes
    chosen = _chosen(dataset, source, listed, strict, files=read is None and rows is None)
    outputs = [root / dataset / f"{split}_{x}" for split in chosen for x in ("data.hdf5", "labels.json")]
    classes = {c: listed[c][:max_per_class] for names in chosen.values() for c in names}
    shape = (image_size, image_size) if channels == 1 else (image_size, image_size, channels)
    image = int(np.prod(shape))
    held = 1 if rows is not None else min(chunk, max(map(len, classes.values())))
    check_memory((held + 8) * image, f"{dataset} at {image_size} px", "use a smaller --image-size")
    total = sum(map(len, classes.values()))
    size = estimate_size(len(chosen), len(classes), total * image)
    with atomic_files(outputs, size=size) as tmps, progress_bar(total=total, desc=dataset, unit="img") as bar:
        _write(tmps[0::2], chosen, classes, shape, read, rows, chunk, bar)
        for tmp, names in zip(tmps[1::2], chosen.values()):
            write_json(tmp, names)
        stamp_build(dict(zip(outputs, tmps)))
    return outputs
