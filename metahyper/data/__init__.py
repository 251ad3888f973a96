"""Datasets: HDF5 caches in torchmeta's layout, episode sampler, classification view.

Public API::

    default_root() -> Path                      # $METAHYPER_DATA, <checkout>/datasets/data, ~/.metahyper/data
    open_split(name, split, root=None, in_memory=False) -> SplitData
        # name: any key of LAYOUTS (fc100 cifar-fs miniimagenet tieredimagenet cub omniglot cifar10 ...),
        # or a user dataset built by prepare("folder", source=DIR, name=NAME) (its manifest.json)
    SplitData: .name .split .classes .num_classes .images_per_class(c) .image_size (H, W)
               .read(c, indices) -> uint8 (n, H, W, 3)  .read_many(classes, indices)  .load_into_memory()
    EpisodeSampler(data, ways, shots, queries, seed=0, image_size=None, normalization=None,
                   transform=None, length=10**9); .episode(i) / [i] -> Episode
    Episode(support_x, support_y, query_x, query_y, classes); .to(device)
    meta_batches(sampler, batch_size, start=0, num_batches=None, num_workers=0, pin_memory=False,
                 rank=0, world_size=1) -> DataLoader of list[Episode]
    ClassificationData(data, part="all"|"train"|"val", val_fraction=0.0, seed=0, augment=False,
                       image_size=None, normalization=None); cifar_standard(name, split, root=None)
    normalization_for(name) -> (mean, std); to_tensor(uint8 NHWC, mean, std, size) -> float NCHW
    list_caches(root=None) -> list[CacheInfo]; prepare(dataset, root=None, source=None, download=False,
                                                      force=False, **options)   # one BUILDERS entry each
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metahyper.data.cache import CacheInfo, SplitData, list_caches, open_split
from metahyper.data.classification import ClassificationData, cifar_standard
from metahyper.data.episodes import Episode, EpisodeSampler, episode_rng, meta_batches
from metahyper.data.layouts import LAYOUTS, default_root, known_datasets, layout_for
from metahyper.data.transforms import normalization_for, random_crop_flip, resize, to_tensor
from metahyper.errors import UserError


@dataclass(frozen=True)
class Builder:
    """How ``metahyper prepare NAME`` builds a cache: ``function`` (``"module:function"`` under
    :mod:`metahyper.data.sources`, imported when used: some sources import heavy libraries) is called
    as ``function(root, force=..., **options)``, with ``source=`` when it takes a source and
    ``download=`` when it can download; the options it accepts are its other keyword parameters."""

    function: str
    source: str  # what --source takes; "" when the dataset takes none
    download: bool = False  # --download fetches the official archive

    def resolve(self) -> Callable[..., list[Path]]:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(f"metahyper.data.sources.{module}"), name)

    def options(self) -> list[str]:
        """The builder's keyword options besides root, source, download and force."""
        params = inspect.signature(self.resolve()).parameters
        return [p for p in list(params)[1:] if p not in ("source", "download", "force")]


BUILDERS: dict[str, Builder] = {
    "fc100": Builder("cifar:build_fc100", "cifar-100-python.tar.gz or its folder", download=True),
    "cifar-fs": Builder("cifar:build_cifar_fs", "cifar-100-python.tar.gz or its folder", download=True),
    "cifar10": Builder("cifar:build_cifar10", "cifar-10-python.tar.gz or its folder", download=True),
    "cifar100": Builder("cifar:build_cifar100", "cifar-100-python.tar.gz or its folder", download=True),
    "miniimagenet": Builder(
        "miniimagenet:build_miniimagenet",
        "mini-imagenet.tar.gz, the mini-imagenet-cache-*.pkl folder, or an image folder with the Ravi & Larochelle CSVs",
    ),
    "omniglot": Builder(
        "omniglot:build_omniglot",
        "the folder of images_background.zip and images_evaluation.zip (or of their "
        "extracted folders), or one of the zips",
        download=True,
    ),
    "tieredimagenet": Builder(
        "tieredimagenet:build_tieredimagenet",
        "tiered-imagenet.tar or the folder of its *_images_png.pkl and *_labels.pkl",
    ),
    "cub": Builder("cub:build_cub", "CUB_200_2011.tgz or its extracted folder", download=True),
    "glyphs": Builder("glyphs:build_glyphs", ""),
    "folder": Builder("folder:build_folder", "a folder with one subfolder of images per class"),
}
PREPARABLE = tuple(BUILDERS)


def prepare(
    dataset: str,
    root: str | Path | None = None,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    **options,
) -> list[Path]:
    """Build the cache of ``dataset`` (``metahyper prepare``) with its :data:`BUILDERS` entry;
    returns the files written. Options the builder does not take are a :class:`UserError`. Bad
    input, a missing or broken source, too little disk or memory: a one-line :class:`UserError`,
    raised before the expensive work where it can be known then; an existing cache is replaced as
    a whole or not at all."""
    builder = BUILDERS.get(dataset)
    if builder is None:
        raise UserError(f"unknown dataset {dataset!r} to prepare; use one of {', '.join(PREPARABLE)}")
    unknown = sorted(set(options) - set(builder.options()))
    if unknown:
        flags = ", ".join("--" + o.replace("_", "-") for o in unknown)
        raise UserError(f"{flags} does not apply to {dataset}; it takes {', '.join(builder.options()) or 'no options'}")
    root = Path(root).expanduser() if root is not None else default_root()
    if root.exists() and not root.is_dir():
        raise UserError(f"cache root {root} is a file, not a folder; pass a folder as --root")
    if download and source is not None:
        raise UserError("pass either --download or --source, not both")
    if not builder.source and (download or source is not None):
        raise UserError(f"{dataset} is built offline; it takes no --source or --download")
    if builder.source and source is None and not (download and builder.download):
        how = " or --download" if builder.download else f" ({dataset} cannot be downloaded automatically)"
        raise UserError(f"pass --source with {builder.source}{how}")
    if builder.source:
        options["source"] = source
    if builder.download:
        options["download"] = download
    return builder.resolve()(root, force=force, **options)


__all__ = [
    "BUILDERS",
    "LAYOUTS",
    "PREPARABLE",
    "Builder",
    "CacheInfo",
    "ClassificationData",
    "Episode",
    "EpisodeSampler",
    "SplitData",
    "cifar_standard",
    "default_root",
    "episode_rng",
    "known_datasets",
    "layout_for",
    "list_caches",
    "meta_batches",
    "normalization_for",
    "open_split",
    "prepare",
    "random_crop_flip",
    "resize",
    "to_tensor",
]
