"""The datasets metahyper knows: one :class:`DatasetSpec` per ``metahyper prepare NAME``, registered
once in :data:`DATASETS` with :func:`register`.

Everything else about a registered dataset follows from its spec: where its caches live
(:data:`LAYOUTS`, :func:`layout_for`), its normalization (:func:`normalization_for`), what
``--dataset`` accepts (:func:`known_datasets`), :func:`prepare` and the options of
``metahyper prepare`` (the CLI generates them from the specs, typed by the builders' signatures).

Adding a dataset takes one file and one line:

1. ``metahyper/data/sources/<name>.py`` with a builder ``build_<name>(root: Path, source=..., download=...,
   force: bool = False, **options) -> list[Path]`` (``source`` only when it reads one, ``download``
   only when it can fetch it) that writes the caches with :func:`metahyper.data.writing.write_splits`
   and returns the files written;
2. one ``register(DatasetSpec("<name>", build_<name>, normalization=(mean, std), ...))`` line at the
   end of this module (with the builder's import). ``metahyper prepare <name>``, its options,
   ``open_split``, ``metahyper datasets`` and every ``--dataset`` check follow from it
   (``docs/datasets.md``, "Adding a dataset").

User datasets (``metahyper prepare folder --name NAME``) are not registered here: the
``manifest.json`` their build writes under the data root registers them (:mod:`metahyper.data.manifest`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from metahyper.data.layouts import SPLITS, Layout, default_root, user_layout
from metahyper.data.manifest import NAME_PATTERN, find_manifests, read_manifest
from metahyper.data.sources.aircraft import build_md_aircraft
from metahyper.data.sources.cifar import build_cifar10, build_cifar100, build_cifar_fs, build_fc100
from metahyper.data.sources.cub import build_cub, build_md_cub
from metahyper.data.sources.dtd import build_md_dtd
from metahyper.data.sources.folder import build_folder
from metahyper.data.sources.fungi import build_md_fungi
from metahyper.data.sources.glyphs import DOMAINS as GLYPH_DOMAINS
from metahyper.data.sources.glyphs import build_glyphs
from metahyper.data.sources.ilsvrc import build_md_ilsvrc
from metahyper.data.sources.meta_dataset import MD_STATS
from metahyper.data.sources.miniimagenet import build_miniimagenet
from metahyper.data.sources.mscoco import SPLITS as MSCOCO_SPLITS
from metahyper.data.sources.mscoco import build_md_mscoco
from metahyper.data.sources.omniglot import build_md_omniglot, build_omniglot
from metahyper.data.sources.quickdraw import build_md_quickdraw
from metahyper.data.sources.tieredimagenet import build_tieredimagenet
from metahyper.data.sources.traffic_sign import build_md_traffic_sign
from metahyper.data.sources.vgg_flower import build_md_vgg_flower
from metahyper.errors import UserError

Normalization = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std), RGB in [0, 1]

_FIXED = ("root", "source", "download", "force")  # the builder parameters prepare() passes itself


@dataclass(frozen=True)
class Option:
    """A builder keyword that ``metahyper prepare`` offers as ``--keyword-with-dashes``; its type
    and default come from the builder's signature. ``minimum``: smaller values are refused (one
    line) before the build."""

    help: str
    minimum: float | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset, as ``metahyper prepare NAME`` builds it.

    ``build(root, [source=...], [download=...], force=..., **options)`` writes the caches and
    returns the files written; it is passed ``source`` when ``source`` is set (what ``--source``
    takes) and ``download`` when ``download`` is True (``--download`` fetches the official
    archive). ``normalization`` is the per-channel (mean, std) of the training images.
    ``layouts``: the datasets the build writes (``open_split`` names); None: one per-split layout
    named ``name`` in ``<root>/<name>/``. A layout's ``prepare`` command and normalization are filled
    in from the spec. ``options``: the builder keywords offered on the command line (any keyword of
    the builder is accepted from Python).
    """

    name: str
    build: Callable[..., list[Path]]
    normalization: Normalization | None = None
    source: str = ""  # what --source takes; "" when the dataset is built offline
    download: bool = False
    layouts: tuple[Layout, ...] | None = None
    options: Mapping[str, Option] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layouts = (Layout(self.name),) if self.layouts is None else self.layouts
        if layouts and self.normalization is None:
            raise ValueError(f"dataset {self.name}: a spec with layouts needs its normalization (mean, std)")
        filled = tuple(replace(layout, prepare=self.command(), normalization=self.normalization) for layout in layouts)
        object.__setattr__(self, "layouts", filled)
        unknown = sorted(set(self.options) - set(self.keywords()))
        if unknown:
            raise ValueError(f"dataset {self.name}: options {unknown} are not keyword parameters of its builder")

    def command(self) -> str:
        """The ``metahyper prepare`` command that builds the dataset (``--source PATH`` or
        ``--download`` when it needs one)."""
        how = " --download" if self.download else " --source PATH" if self.source else ""
        return f"metahyper prepare {self.name}{how}"

    def keywords(self) -> dict[str, inspect.Parameter]:
        """The builder's keyword options: its parameters besides root, source, download and force."""
        params = list(inspect.signature(self.build).parameters.values())[1:]
        return {p.name: p for p in params if p.name not in _FIXED}

    def option_type(self, keyword: str) -> type:
        """The type of builder keyword ``keyword`` from its annotation: ``bool``, ``int``, ``float``,
        ``Path`` (a path-like union) or ``str`` (anything else; the builder parses it)."""
        hint = typing.get_type_hints(self.build)[keyword]
        kinds = [k for k in typing.get_args(hint) or (hint,) if k is not type(None)]
        for kind in (bool, int, float):
            if kinds == [kind]:
                return kind
        return Path if Path in kinds else str


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASETS` (returned, so a module can keep it). Its name and its
    layouts' names must be new, and an option another dataset also offers must have the same type."""
    taken = set(DATASETS) | set(LAYOUTS)
    clash = sorted({spec.name, *(layout.name for layout in spec.layouts)} & taken)
    if clash:
        raise ValueError(f"dataset {spec.name}: {', '.join(clash)} is already registered")
    for keyword in spec.options:
        for other in DATASETS.values():
            if keyword in other.options and other.option_type(keyword) is not spec.option_type(keyword):
                raise ValueError(
                    f"dataset {spec.name}: option {keyword} is of type {spec.option_type(keyword).__name__}, "
                    f"but of type {other.option_type(keyword).__name__} for {other.name}"
                )
    DATASETS[spec.name] = spec
    return spec


class _Layouts(Mapping[str, Layout]):
    """Every registered dataset's layouts by name: a view of :data:`DATASETS`, always current."""

    def _all(self) -> dict[str, Layout]:
        return {layout.name: layout for spec in DATASETS.values() for layout in spec.layouts}

    def __getitem__(self, name: str) -> Layout:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


LAYOUTS: Mapping[str, Layout] = _Layouts()


def known_datasets(root: str | Path | None = None) -> list[str]:
    """Registered dataset names, then the user datasets registered under ``root``."""
    root = Path(root) if root is not None else default_root()
    return [*LAYOUTS, *(n for n in find_manifests(root) if n not in LAYOUTS)]


def layout_for(name: str, root: str | Path | None = None) -> Layout:
    """The :class:`Layout` of a registered dataset, or of a user dataset registered under ``root``
    (default :func:`default_root`); else a one-line :class:`UserError` listing the known names."""
    if name in LAYOUTS:
        return LAYOUTS[name]
    root = Path(root) if root is not None else default_root()
    manifest = read_manifest(root, name) if NAME_PATTERN.fullmatch(name) else None
    if manifest is None:
        raise UserError(
            f"unknown dataset {name!r}; known datasets: {', '.join(known_datasets(root))} (under {root}; "
            "a folder of class subfolders becomes one with `metahyper prepare folder --source DIR --name NAME`)"
        )
    return user_layout(manifest)


def normalization_for(name: str) -> Normalization:
    """``(mean, std)`` per RGB channel of registered dataset ``name``."""
    if name not in LAYOUTS:
        raise UserError(f"no normalization statistics for dataset {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[name].normalization


def _check_options(spec: DatasetSpec, options: dict) -> None:
    """Options the builder does not take, or below an option's minimum: a one-line UserError."""
    keywords = spec.keywords()
    unknown = sorted(set(options) - set(keywords))
    if unknown:
        flags = ", ".join("--" + o.replace("_", "-") for o in unknown)
        raise UserError(f"{flags} does not apply to {spec.name}; it takes {', '.join(keywords) or 'no options'}")
    for keyword, value in options.items():
        minimum = spec.options[keyword].minimum if keyword in spec.options else None
        if minimum is not None and value is not None and value < minimum:
            raise UserError(f"--{keyword.replace('_', '-')} must be >= {minimum:g}, got {value}")


def _check_source(spec: DatasetSpec, source: str | Path | None, download: bool) -> None:
    """``--source``/``--download`` as the dataset takes them, else a one-line UserError."""
    if download and source is not None:
        raise UserError("pass either --download or --source, not both")
    if not spec.source and (download or source is not None):
        raise UserError(f"{spec.name} is built offline; it takes no --source or --download")
    if spec.source and source is None and not (download and spec.download):
        how = " or --download" if spec.download else f" ({spec.name} cannot be downloaded automatically)"
        raise UserError(f"pass --source with {spec.source}{how}")


def prepare(
    dataset: str,
    root: str | Path | None = None,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    **options,
) -> list[Path]:
    """Build the cache of ``dataset`` (``metahyper prepare``) with its :class:`DatasetSpec`'s builder;
    returns the files written. ``options``: the builder's keyword parameters. Bad input, a missing
    or broken source, too little disk or memory: a one-line :class:`UserError`, raised before the
    expensive work where it can be known then; an existing cache is replaced as a whole or not at all."""
    spec = DATASETS.get(dataset)
    if spec is None:
        raise UserError(f"unknown dataset {dataset!r} to prepare; use one of {', '.join(DATASETS)}")
    _check_options(spec, options)
    root = Path(root).expanduser() if root is not None else default_root()
    if root.exists() and not root.is_dir():
        raise UserError(f"cache root {root} is a file, not a folder; pass a folder as --root")
    _check_source(spec, source, download)
    if spec.source:
        options["source"] = source
    if spec.download:
        options["download"] = download
    return spec.build(root, force=force, **options)


# --------------------------------------------------------------------------------------------------
# The built-in datasets: one register() line each.

# Channel statistics of each dataset's training images (RGB, in [0, 1]).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
# 120.40/255, 115.59/255, 104.54/255 and 70.68/255, 68.28/255, 72.55/255 (MetaOptNet, FEAT); MetaOptNet's
# tieredImageNet loader uses the MiniImageNet statistics too (both are ImageNet subsets)
MINIIMAGENET_STATS = ((0.4721, 0.4533, 0.4100), (0.2772, 0.2677, 0.2845))
# Chen et al. 2019 (CloserLookFewShot TransformLoader): the ImageNet statistics, for CUB too
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# pixels in [0, 1], strokes 1: MAML's and torchmeta's Omniglot pipelines do not normalise
UNNORMALIZED = ((0.0,) * 3, (1.0,) * 3)
# white glyphs on black, measured on the default build
GLYPHS_STATS = ((0.1625,) * 3, (0.3443,) * 3)

IMAGE_SIZE = Option("image side in pixels", minimum=1)
CIFAR100 = dict(normalization=CIFAR100_STATS, source="cifar-100-python.tar.gz or its folder", download=True)
TWO_SPLITS = ("train", "test")

register(
    DatasetSpec("fc100", build_fc100, **CIFAR100, layouts=(Layout("fc100", "cifar100", labels_subfolder="fc100"),))
)
register(
    DatasetSpec(
        "cifar-fs", build_cifar_fs, **CIFAR100, layouts=(Layout("cifar-fs", "cifar100", labels_subfolder="cifar-fs"),)
    )
)
register(
    DatasetSpec(
        "miniimagenet",
        build_miniimagenet,
        MINIIMAGENET_STATS,
        source="mini-imagenet.tar.gz, the mini-imagenet-cache-*.pkl folder, "
        "or an image folder with the Ravi & Larochelle CSVs",
    )
)
register(
    DatasetSpec(
        "omniglot",
        build_omniglot,
        UNNORMALIZED,
        source="the folder of images_background.zip and images_evaluation.zip (or of their extracted folders), "
        "or one of the zips",
        download=True,
        layouts=(Layout("omniglot", labels_subfolder="", labels_name="vinyals_{split}_labels.json"),),
        options={
            "image_size": IMAGE_SIZE,
            "rotations": Option("add each character rotated by 90, 180, 270 degrees as new classes"),
        },
    )
)
register(
    DatasetSpec(
        "tieredimagenet",
        build_tieredimagenet,
        MINIIMAGENET_STATS,
        source="tiered-imagenet.tar or the folder of its *_images_png.pkl and *_labels.pkl",
        layouts=(Layout("tieredimagenet", decode_size=84),),
        options={"encoded": Option("store the release's PNG bytes (torchmeta's form) instead of decoded arrays")},
    )
)
register(
    DatasetSpec(
        "cub",
        build_cub,
        IMAGENET_STATS,
        source="CUB_200_2011.tgz or its extracted folder",
        download=True,
        layouts=(Layout("cub", decode_size=84, decode_crop=1.15),),
        options={"image_size": IMAGE_SIZE},
    )
)
register(DatasetSpec("cifar100", build_cifar100, **CIFAR100, layouts=(Layout("cifar100", splits=TWO_SPLITS),)))
register(
    DatasetSpec(
        "cifar10",
        build_cifar10,
        CIFAR10_STATS,
        source="cifar-10-python.tar.gz or its folder",
        download=True,
        layouts=(Layout("cifar10", splits=TWO_SPLITS),),
    )
)
register(
    DatasetSpec(
        "glyphs",
        build_glyphs,
        GLYPHS_STATS,
        layouts=tuple(Layout(domain) for domain in GLYPH_DOMAINS),
        options={
            "image_size": IMAGE_SIZE,
            "max_memory": Option("memory the build may use, in GB (default: what is available)"),
        },
    )
)
register(
    DatasetSpec(
        "folder",  # user datasets: the manifest each build writes registers its --name (layout_for)
        build_folder,
        source="a folder with one subfolder of images per class",
        layouts=(),
        options={
            "name": Option("the name the dataset is used by (--dataset NAME)"),
            "splits": Option(
                "class split, a JSON file {train: [...], val: [...], test: [...]} "
                "or a folder of train.txt, val.txt, test.txt"
            ),
            "split_ratios": Option("train,val,test fractions of the classes (default 0.64,0.16,0.2)"),
            "seed": Option("seed of the --split-ratios split (default 0)"),
            "image_size": IMAGE_SIZE,
        },
    )
)
# Meta-Dataset's sources (docs/meta-dataset.md): its class splits, checked against its specification
for _name, _build, _source, _splits, _download in (
    ("md-aircraft", build_md_aircraft, "the extracted fgvc-aircraft-2013b folder", SPLITS, False),
    ("md-dtd", build_md_dtd, "dtd-r1.0.1.tar.gz, a folder holding it, or the extracted dtd folder", SPLITS, True),
    (
        "md-vgg-flower",
        build_md_vgg_flower,
        "the folder of imagelabels.mat and 102flowers.tgz (or its extracted jpg/)",
        SPLITS,
        True,
    ),
    ("md-traffic-sign", build_md_traffic_sign, "the extracted GTSRB folder (final training set)", ("test",), False),
    ("md-cub", build_md_cub, "the extracted CUB_200_2011 folder", SPLITS, False),
    ("md-ilsvrc", build_md_ilsvrc, "the extracted ILSVRC-2012 train folder (train/<wnid>/*.JPEG)", SPLITS, False),
):
    register(
        DatasetSpec(
            _name,
            _build,
            MD_STATS,
            source=_source,
            download=_download,
            layouts=(Layout(_name, splits=_splits),),
            options={"image_size": IMAGE_SIZE},
        )
    )
register(
    DatasetSpec(
        "md-omniglot",
        build_md_omniglot,
        MD_STATS,
        source="the folder of images_background.zip and images_evaluation.zip (or of their extracted folders)",
        download=True,
        options={"image_size": IMAGE_SIZE},
    )
)
register(
    DatasetSpec(
        "md-quickdraw",
        build_md_quickdraw,
        MD_STATS,
        source="the folder of QuickDraw's 345 numpy_bitmap <class>.npy files",
        options={
            "image_size": IMAGE_SIZE,
            "max_per_class": Option("keep the first N drawings of each class (default: all)", minimum=1),
        },
    )
)
register(
    DatasetSpec(
        "md-fungi",
        build_md_fungi,
        MD_STATS,
        source="the folder of the FGVCx Fungi 2018 train.json, val.json and images/",
        options={"image_size": IMAGE_SIZE},
    )
)
register(
    DatasetSpec(
        "md-mscoco",
        build_md_mscoco,
        MD_STATS,
        source="the folder of COCO 2017 train2017/ and annotations/instances_train2017.json",
        layouts=(Layout("md-mscoco", splits=MSCOCO_SPLITS),),
        options={
            "image_size": IMAGE_SIZE,
            "box_scale": Option("enlarge each object's box by this factor about its centre", minimum=1.0),
        },
    )
)
