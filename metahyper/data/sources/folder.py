"""A user dataset from any folder of class subfolders of images (``metahyper prepare folder``).

Source: ``DIR/<class>/<image>`` with the image extensions torchvision's ``ImageFolder`` accepts
(``IMG_EXTENSIONS``: jpg, jpeg, png, ppm, bmp, pgm, tif, tiff, webp; any case). Hidden entries
and other files are ignored. Classes go to the train / val / test splits either

* by a split file (``splits=``): a JSON file ``{"train": [...], "val": [...], "test": [...]}``, or
  a folder holding ``train.txt``, ``val.txt``, ``test.txt`` with one class (subfolder name) per
  line (blank lines and lines starting with ``#`` are skipped). A split that is absent (key or
  file) or empty is not built; classes of ``DIR`` that no split names are left out; or
* by seeded ratios (``split_ratios``, default 0.64 / 0.16 / 0.2 of the classes, MiniImageNet's
  64 / 16 / 20): the sorted class names are shuffled with ``numpy.random.default_rng(seed)`` and
  cut by the largest-remainder rule; a split with ratio 0 is not built.

Every image is decoded with PIL (a decompression bomb beyond ``PIL.Image.MAX_IMAGE_PIXELS`` is
refused), converted to RGB and resized to ``image_size`` x ``image_size`` with LANCZOS, without
keeping the aspect ratio (as MiniImageNet's images were made). A class needs at least
:data:`MIN_IMAGES` images (one support and one query); an episode needs shots + queries images of
each of its classes, which ``eval`` and ``meta-train`` check. The build streams one class at a
time into ``<root>/<name>/{split}_data.hdf5`` (``datasets/<class>`` uint8 (n, S, S, 3)) and
``{split}_labels.json`` (sorted class names), measures the per-channel mean and std of the train
split (of all built splits when there is no train split), and registers ``name`` with
``manifest.json`` (:mod:`metahyper.data.manifest`). All files replace the old ones together at
the end, so a failed build leaves an existing cache untouched.
"""

from __future__ import annotations

import math
import shlex
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from metahyper.data.layouts import SPLITS
from metahyper.data.manifest import MANIFEST, MIN_STD, NAME_PATTERN, Manifest
from metahyper.data.storage import fit_image
from metahyper.data.writing import check_memory, check_writable, estimate_size, stamp_build, write_classes_hdf5
from metahyper.errors import UserError
from metahyper.io import atomic_files, read_json, write_json
from metahyper.progress import progress_bar

MIN_IMAGES = 2
MAX_IMAGE_SIZE = 1024  # --image-size: 4.5x ImageNet models' 224, 12x MiniImageNet's 84
DEFAULT_RATIOS = (0.64, 0.16, 0.2)
RESERVED = ("imagenet",)  # `pretrain --dataset imagenet` reads an ImageNet folder (metahyper.data.imagenet)


def check_name(name: str | None) -> str:
    """A valid user dataset name: letters, digits, ``_ . -``; no built-in dataset's name or folder."""
    if not name:
        raise UserError("prepare folder needs --name NAME, the name the dataset is used by (e.g. --dataset NAME)")
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"dataset name {name!r} is not allowed; use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit)"
        )
    from metahyper.data.registry import LAYOUTS  # the registry imports this module's builder

    taken = {*LAYOUTS, *(layout.folder for layout in LAYOUTS.values()), *RESERVED}
    if name in taken:
        raise UserError(f"dataset name {name!r} is taken by a built-in dataset; choose another --name")
    return name


def parse_ratios(ratios: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.64,0.16,0.2"`` (or three numbers) -> train/val/test fractions; >= 0, summing to 1."""
    try:
        values = tuple(float(v) for v in (ratios.split(",") if isinstance(ratios, str) else ratios))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values):
        raise UserError(
            f"--split-ratios must be three fractions train,val,test >= 0, e.g. 0.64,0.16,0.2; got {ratios!r}"
        )
    if abs(sum(values) - 1) > 1e-6:
        raise UserError(
            f"--split-ratios {','.join(map(str, values))} sum to {sum(values):g}, not 1; e.g. 0.64,0.16,0.2"
        )
    return values


def ratio_splits(classes: Sequence[str], ratios: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Seeded class split by ratios (largest remainder); every split with a ratio > 0 gets >= 1 class."""
    order = [classes[i] for i in np.random.default_rng(seed).permutation(len(classes))]
    exact = [r * len(classes) for r in ratios]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(3), key=lambda i: counts[i] - exact[i])[: len(classes) - sum(counts)]:
        counts[i] += 1
    for split, ratio, count in zip(SPLITS, ratios, counts):
        if ratio > 0 and count == 0:
            raise UserError(
                f"--split-ratios give the {split} split none of the {len(classes)} classes; "
                f"raise its ratio, set it to 0, or add classes"
            )
    bounds = np.cumsum([0, *counts])
    return {s: sorted(order[bounds[i] : bounds[i + 1]]) for i, s in enumerate(SPLITS) if counts[i]}


def read_splits(path: str | Path) -> dict[str, list[str]]:
    """A split file: JSON ``{"train": [...], "val": [...], "test": [...]}`` or a folder of
    ``{train,val,test}.txt`` (see the module docstring). Splits with no class are dropped."""
    path = Path(path).expanduser()
    fix = 'give a JSON file {"train": [...], "val": [...], "test": [...]} or a folder with train.txt, val.txt, test.txt'
    if path.is_dir():
        lists = {}
        for split in SPLITS:
            if (path / f"{split}.txt").is_file():
                lines = (line.strip() for line in (path / f"{split}.txt").read_text().splitlines())
                lists[split] = [line for line in lines if line and not line.startswith("#")]
        if not lists:
            raise UserError(f"--splits {path} holds none of train.txt, val.txt, test.txt; {fix}")
    elif path.is_file():
        lists = read_json(path, "--splits", fix)
        if (
            not isinstance(lists, dict)
            or not set(lists) <= set(SPLITS)
            or not all(isinstance(v, list) and all(isinstance(c, str) for c in v) for v in lists.values())
        ):
            raise UserError(f"--splits {path} must map some of train, val, test to lists of class names; {fix}")
    else:
        raise UserError(f"--splits {path} does not exist; {fix}")
    seen: dict[str, str] = {}
    for split in SPLITS:
        for name in lists.get(split, []):
            if name in seen:
                where = f"twice in {split}" if seen[name] == split else f"in both {seen[name]} and {split}"
                raise UserError(f"--splits {path}: class {name!r} is listed {where}; list each class in one split once")
            seen[name] = split
    if not seen:
        raise UserError(f"--splits {path} lists no classes; {fix}")
    return {s: list(lists[s]) for s in SPLITS if lists.get(s)}


def scan_source(source: Path) -> dict[str, list[Path]]:
    """``{class: sorted image paths}`` of every (non-hidden) subfolder of ``source``."""
    if not source.is_dir():
        what = "does not exist" if not source.exists() else "is not a folder"
        raise UserError(f"--source {source} {what}; pass a folder with one subfolder of images per class")
    from torchvision.datasets.folder import IMG_EXTENSIONS  # torchvision is slow to import

    extensions = tuple(IMG_EXTENSIONS)
    classes = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[folder.name] = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(extensions)
        )
    if not classes:
        raise UserError(
            f"--source {source} has no class subfolders; put each class's images in a subfolder DIR/<class>/"
        )
    return classes


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (size, size, 3) RGB; a one-line :class:`UserError` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale >= size
                return fit_image(image, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UserError(
            f"image {path} has more pixels than PIL.Image.MAX_IMAGE_PIXELS allows ({err}); shrink or remove it"
        ) from None
    except (OSError, ValueError, SyntaxError) as err:  # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise UserError(f"image {path} cannot be read ({type(err).__name__}: {err}); replace or remove it") from None


def _command(source: Path, name: str, splits: str | Path | None, ratios, seed: int, image_size: int) -> str:
    how = (
        f"--splits {shlex.quote(str(splits))}"
        if splits is not None
        else f"--split-ratios {','.join(map(str, ratios))} --seed {seed}"
    )
    return f"metahyper prepare folder --source {shlex.quote(str(source))} --name {name} {how} --image-size {image_size}"


def _check_chosen(chosen: dict[str, list[str]], found: dict[str, list[Path]], source: Path) -> None:
    """Every class a split names has a folder in ``source`` with at least :data:`MIN_IMAGES` images."""
    for split, classes in chosen.items():
        missing = [c for c in classes if c not in found]
        if missing:
            raise UserError(
                f"--splits names {len(missing)} {split} classes with no folder in {source} "
                f"(e.g. {', '.join(missing[:3])}); fix the split file or add the folders"
            )
        few = [(c, len(found[c])) for c in classes if len(found[c]) < MIN_IMAGES]
        if few:
            raise UserError(
                f"class {few[0][0]} ({split}) has {few[0][1]} images (and {len(few) - 1} more classes under "
                f"{MIN_IMAGES}); each class needs at least {MIN_IMAGES}: add images or leave the class out"
            )


def _check_memory(chosen: dict[str, list[str]], found: dict[str, list[Path]], image_size: int) -> None:
    """The build holds one class at a time (uint8 (n, S, S, 3)) and resizes one image (float32
    buffers of S x S x 3, twice): that must fit the memory available, checked before any image
    is read."""
    largest = max((c for classes in chosen.values() for c in classes), key=lambda c: len(found[c]))
    image = image_size * image_size * 3
    check_memory(
        len(found[largest]) * image + 8 * image,
        f"prepare folder at {image_size} px (class {largest}: {len(found[largest])} images)",
        "use a smaller --image-size",
    )


class _ChannelStats:
    """Per-channel mean and std of uint8 RGB images, from exact integer sums of the 0-255 values
    and of their squares."""

    def __init__(self) -> None:
        self.total = np.zeros(3, dtype=np.uint64)
        self.squares = np.zeros(3, dtype=np.uint64)
        self.pixels = 0

    def add(self, images: np.ndarray) -> None:
        x = images.reshape(-1, 3)
        self.total += x.sum(0, dtype=np.uint64)
        self.squares += np.square(x, dtype=np.uint32).sum(0, dtype=np.uint64)
        self.pixels += len(x)

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` in [0, 1], rounded to 6 digits; std at least :data:`MIN_STD` (what a
        manifest may hold: a channel that barely varies is not blown up when normalised)."""
        mean = self.total / (255.0 * self.pixels)
        std = np.sqrt(np.maximum(self.squares / (255.0**2 * self.pixels) - mean**2, 0.0))
        return tuple(round(float(v), 6) for v in mean), tuple(round(max(float(v), MIN_STD), 6) for v in std)


def _class_images(
    classes: list[str], found: dict[str, list[Path]], image_size: int, stats: _ChannelStats | None, bar
) -> Iterator[tuple[str, np.ndarray]]:
    """``(datasets/<class>, uint8 (n, S, S, 3))`` one class at a time; ``stats`` (when given)
    takes in every image."""
    for c in sorted(classes):
        images = np.empty((len(found[c]), image_size, image_size, 3), dtype=np.uint8)
        for j, image in enumerate(found[c]):
            images[j] = load_image(image, image_size)
            bar.update(1)
        if stats is not None:
            stats.add(images)
        yield f"datasets/{c}", images


def _write_split_data(
    path: Path,
    what: str,
    classes: list[str],
    found: dict[str, list[Path]],
    image_size: int,
    stats: _ChannelStats | None,
    progress: bool,
) -> None:
    """Stream one split into the HDF5 file ``path`` (``datasets/<class>``, with its content hash),
    one class in memory at a time; ``stats`` (when given) takes in every image."""
    total = sum(len(found[c]) for c in classes)
    with progress_bar(total=total, desc=what, unit="img", disable=not progress) as bar:
        write_classes_hdf5(path, _class_images(classes, found, image_size, stats, bar))


def build_folder(
    root: Path,
    source: str | Path,
    force: bool = False,
    name: str | None = None,
    splits: str | Path | None = None,
    split_ratios: str | Sequence[float] | None = None,
    seed: int | None = None,
    image_size: int = 84,
    progress: bool = True,
) -> list[Path]:
    """Build user dataset ``name`` from ``source`` (see the module docstring); returns the files
    written. Every check on the arguments, the split and the folder runs before any image is read."""
    name = check_name(name)
    if not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise UserError(f"--image-size {image_size} is outside 1..{MAX_IMAGE_SIZE}; pick a size in that range")
    if splits is not None and (split_ratios is not None or seed is not None):
        raise UserError(f"pass either --splits FILE or --split-ratios{'/--seed' if seed is not None else ''}, not both")
    seed = 0 if seed is None else seed
    ratios = parse_ratios(split_ratios) if split_ratios is not None else DEFAULT_RATIOS
    source = Path(source).expanduser()
    found = scan_source(source)
    chosen = read_splits(splits) if splits is not None else ratio_splits(sorted(found), ratios, seed)
    _check_chosen(chosen, found, source)
    folder = root / name
    outputs = [folder / f"{s}_{x}" for s in chosen for x in ("data.hdf5", "labels.json")] + [folder / MANIFEST]
    check_writable(outputs, force, name)
    _check_memory(chosen, found, image_size)
    stats_split = "train" if "train" in chosen else None  # None: the statistics of every split
    stats = _ChannelStats()
    images_total = sum(len(found[c]) for classes in chosen.values() for c in classes)
    size = estimate_size(len(chosen), images_total // MIN_IMAGES, images_total * image_size**2 * 3)
    with atomic_files(outputs, size=size) as tmps:  # the free space is checked before the first image
        for i, (split, classes) in enumerate(chosen.items()):
            counted = stats if stats_split in (None, split) else None
            _write_split_data(tmps[2 * i], f"{name} {split}", classes, found, image_size, counted, progress)
            write_json(tmps[2 * i + 1], sorted(classes))
        mean, std = stats.mean_std()
        manifest = Manifest(
            name=name,
            splits=tuple(chosen),
            image_size=image_size,
            mean=mean,
            std=std,
            statistics_of=stats_split or "+".join(chosen),
            prepare=_command(source, name, splits, ratios, seed, image_size),
            source=str(source),
            classes={s: len(c) for s, c in chosen.items()},
        )
        write_json(tmps[-1], manifest.to_dict())
        stamp_build(dict(zip(outputs, tmps)))  # every split is checked against this build
    return outputs
